fn main() -> std::process::ExitCode {
    deploykit::cli::main::<deploykit::cmd::verify_env::Args>()
}
