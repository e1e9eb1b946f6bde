fn main() -> std::process::ExitCode {
    deploykit::cli::main::<deploykit::cmd::show_config::Args>()
}
