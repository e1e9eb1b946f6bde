fn main() -> std::process::ExitCode {
    deploykit::cli::main::<deploykit::cmd::emergency_rollback::Args>()
}
