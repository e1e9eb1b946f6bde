fn main() -> std::process::ExitCode {
    deploykit::cli::main::<deploykit::cmd::generate_deployment_report::Args>()
}
