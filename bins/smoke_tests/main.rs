fn main() -> std::process::ExitCode {
    deploykit::cli::main::<deploykit::cmd::smoke_tests::Args>()
}
