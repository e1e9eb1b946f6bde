fn main() -> std::process::ExitCode {
    deploykit::cli::main::<deploykit::cmd::validate_config::Args>()
}
