fn main() -> std::process::ExitCode {
    deploykit::cli::main::<deploykit::cmd::measure_latency::Args>()
}
