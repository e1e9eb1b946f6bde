fn main() -> std::process::ExitCode {
    deploykit::cli::main::<deploykit::cmd::compare_metrics::Args>()
}
