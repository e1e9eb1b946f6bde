fn main() -> std::process::ExitCode {
    deploykit::cli::main::<deploykit::cmd::maintenance_mode::Args>()
}
