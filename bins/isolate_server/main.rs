fn main() -> std::process::ExitCode {
    deploykit::cli::main::<deploykit::cmd::isolate_server::Args>()
}
