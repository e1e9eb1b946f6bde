fn main() -> std::process::ExitCode {
    deploykit::cli::main::<deploykit::cmd::db_migrate::Args>()
}
