fn main() -> std::process::ExitCode {
    deploykit::cli::main::<deploykit::cmd::strategy_rollout::Args>()
}
