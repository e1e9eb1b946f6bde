fn main() -> std::process::ExitCode {
    deploykit::cli::main::<deploykit::cmd::notify::Args>()
}
