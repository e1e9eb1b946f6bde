//! Every environment variable deploy-tools reads, declared once (wired into clap with `env =`).

pub struct EnvVars;

impl EnvVars {
    /// Environment to act on: local, dev, staging, production.
    pub const ENVIRONMENT: &'static str = "DEPLOYKIT_ENVIRONMENT";
    /// Path of the config file (default `config/deploy.toml`).
    pub const CONFIG: &'static str = "DEPLOYKIT_CONFIG";
    /// Output format: human or json.
    pub const FORMAT: &'static str = "DEPLOYKIT_FORMAT";
    /// Where to write the JUnit XML report.
    pub const JUNIT: &'static str = "DEPLOYKIT_JUNIT";
    /// Overall timeout (humantime: `30s`, `5m`).
    pub const TIMEOUT: &'static str = "DEPLOYKIT_TIMEOUT";
    /// Log format on stderr: text or json.
    pub const LOG_FORMAT: &'static str = "DEPLOYKIT_LOG_FORMAT";
    /// `tracing` filter directives, overriding -v/-q (e.g. `deploykit=debug`).
    pub const LOG: &'static str = "DEPLOYKIT_LOG";
    /// Print what would be done without doing it.
    pub const DRY_RUN: &'static str = "DEPLOYKIT_DRY_RUN";
    /// Default name of the variable that holds the admin bearer token.
    pub const ADMIN_TOKEN: &'static str = "DEPLOYKIT_ADMIN_TOKEN";
    /// Default name of the variable that holds the notification webhook URL (a secret).
    pub const NOTIFY_WEBHOOK: &'static str = "DEPLOYKIT_NOTIFY_WEBHOOK";
    /// Forces colour on (`always`) or off (`never`) regardless of the terminal.
    pub const COLOR: &'static str = "DEPLOYKIT_COLOR";
    /// Any value turns colour off (https://no-color.org), unless DEPLOYKIT_COLOR says otherwise.
    pub const NO_COLOR: &'static str = "NO_COLOR";
    /// Fault injection for tests: a cutover SIGKILLs itself after this step's action, before
    /// journaling it done.
    pub const FAULT_KILL_AFTER: &'static str = "DEPLOYKIT_FAULT_KILL_AFTER";

    /// `(name, meaning)` rows for the docs.
    pub const ALL: &'static [(&'static str, &'static str)] = &[
        (Self::ENVIRONMENT, "environment to act on (-e)"),
        (Self::CONFIG, "config file (--config)"),
        (Self::FORMAT, "output format (--format)"),
        (Self::JUNIT, "JUnit XML report path (--junit)"),
        (Self::TIMEOUT, "overall timeout (--timeout)"),
        (Self::LOG_FORMAT, "log format on stderr (--log-format)"),
        (Self::LOG, "tracing filter directives, overriding -v/-q"),
        (Self::DRY_RUN, "print the plan without acting (--dry-run)"),
        (Self::ADMIN_TOKEN, "default admin bearer-token variable"),
        (
            Self::NOTIFY_WEBHOOK,
            "default notification webhook URL variable (notify)",
        ),
        (Self::COLOR, "always|never|auto colour on stdout"),
        (
            Self::NO_COLOR,
            "any value: no colour unless DEPLOYKIT_COLOR=always",
        ),
        (
            Self::FAULT_KILL_AFTER,
            "tests only: cutover kills itself (-9) after this step's action",
        ),
    ];
}
