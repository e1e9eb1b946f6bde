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
    /// Where to write the HTML page of the result.
    pub const HTML: &'static str = "DEPLOYKIT_HTML";
    /// Timeout for each check or network call (`500ms`, `10s`), like `--timeout`.
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
    /// Default name of the variable that holds the PagerDuty routing key (a secret).
    pub const PAGERDUTY_ROUTING_KEY: &'static str = "DEPLOYKIT_PAGERDUTY_ROUTING_KEY";
    /// Forces colour on (`always`) or off (`never`) regardless of the terminal.
    pub const COLOR: &'static str = "DEPLOYKIT_COLOR";
    /// Any value turns colour off (https://no-color.org), unless DEPLOYKIT_COLOR says otherwise.
    pub const NO_COLOR: &'static str = "NO_COLOR";
    /// Default name of the variable holding staging refresh's hashing key (a secret).
    pub const ANONYMIZE_KEY: &'static str = "DEPLOYKIT_ANONYMIZE_KEY";
    /// Docker's daemon address; verify_env reads a `unix://` socket path from it.
    pub const DOCKER_HOST: &'static str = "DOCKER_HOST";
    /// The SSH agent's socket; verify_env counts the agent's identities when it is set.
    pub const SSH_AUTH_SOCK: &'static str = "SSH_AUTH_SOCK";
    /// The host's name when /proc cannot tell (names the environment lock's holder).
    pub const HOSTNAME: &'static str = "HOSTNAME";
    /// verify_env looks for SSH keys under it.
    pub const HOME: &'static str = "HOME";
    /// Where tools are looked up (verify_env's tool checks, pg_dump).
    pub const PATH: &'static str = "PATH";
    /// Debian's pg_wrapper picks a cluster by it; without it pg_dump resolves to the newest.
    pub const PGCLUSTER: &'static str = "PGCLUSTER";
    /// Jenkins multibranch: the branch (or tag) a build is for; verify_env's branch on a
    /// detached HEAD.
    pub const BRANCH_NAME: &'static str = "BRANCH_NAME";
    /// Jenkins' git plugin: the branch built (`origin/main`), when BRANCH_NAME is not set.
    pub const GIT_BRANCH: &'static str = "GIT_BRANCH";
    /// Jenkins multibranch: the tag a build is for (verify_env: the tag must be on the branch).
    pub const TAG_NAME: &'static str = "TAG_NAME";
    /// The CI build a cutover belongs to (Jenkins: `BUILD_TAG`), recorded in its run id so a
    /// failed build's rollback acts only on the switch that build made.
    pub const BUILD: &'static str = "DEPLOYKIT_BUILD";
    /// The pipeline run's deployment id (version + build, e.g. `v3.2.2+41`): the label of every
    /// pushed deployment metric.
    pub const DEPLOYMENT_ID: &'static str = "DEPLOYKIT_DEPLOYMENT_ID";
    /// Jenkins' git plugin: the commit built (cutover journals it with the run).
    pub const GIT_COMMIT: &'static str = "GIT_COMMIT";
    /// The deploy's change ticket (verify_env's policy reads the variable the config names,
    /// this one by default; cutover journals it with the run).
    pub const CHANGE_TICKET: &'static str = "CHANGE_TICKET";
    /// A reason to deploy outside the policy (a Jenkins parameter): cutover journals it.
    pub const OVERRIDE_POLICY: &'static str = "OVERRIDE_POLICY";
    /// db_migrate's directory of migration files (`--migrations`).
    pub const MIGRATIONS: &'static str = "DEPLOYKIT_MIGRATIONS";
    /// Fault injection for tests: a cutover SIGKILLs itself after this step's action, before
    /// journaling it done.
    pub const FAULT_KILL_AFTER: &'static str = "DEPLOYKIT_FAULT_KILL_AFTER";
    /// Fault injection for tests: db_migrate's online change fails after this step, so its
    /// abort path runs.
    pub const FAULT_FAIL_AFTER: &'static str = "DEPLOYKIT_FAULT_FAIL_AFTER";

    /// `(name, meaning)` rows for the docs.
    pub const ALL: &'static [(&'static str, &'static str)] = &[
        (Self::ENVIRONMENT, "environment to act on (-e)"),
        (Self::CONFIG, "config file (--config)"),
        (Self::FORMAT, "output format (--format)"),
        (Self::JUNIT, "JUnit XML report path (--junit)"),
        (Self::HTML, "HTML page path (--html)"),
        (
            Self::TIMEOUT,
            "timeout for each check or network call (--timeout)",
        ),
        (Self::LOG_FORMAT, "log format on stderr (--log-format)"),
        (Self::LOG, "tracing filter directives, overriding -v/-q"),
        (Self::DRY_RUN, "print the plan without acting (--dry-run)"),
        (Self::ADMIN_TOKEN, "default admin bearer-token variable"),
        (
            Self::NOTIFY_WEBHOOK,
            "default notification webhook URL variable (notify)",
        ),
        (
            Self::PAGERDUTY_ROUTING_KEY,
            "default PagerDuty routing key variable (notify, `pagerduty`)",
        ),
        (Self::COLOR, "always|never|auto colour on stdout"),
        (
            Self::NO_COLOR,
            "any value: no colour unless DEPLOYKIT_COLOR=always",
        ),
        (
            Self::ANONYMIZE_KEY,
            "default staging-refresh hashing-key variable (a secret)",
        ),
        (Self::DOCKER_HOST, "verify_env: a unix:// Docker socket"),
        (
            Self::SSH_AUTH_SOCK,
            "verify_env: the SSH agent to ask for identities",
        ),
        (
            Self::HOSTNAME,
            "host name when /proc cannot tell (lock holder)",
        ),
        (Self::HOME, "verify_env: where SSH keys are looked for"),
        (Self::PATH, "where tools (git, pg_dump, …) are found"),
        (
            Self::PGCLUSTER,
            "Debian pg_wrapper's cluster choice for pg_dump",
        ),
        (
            Self::BRANCH_NAME,
            "verify_env: the branch Jenkins built (detached HEAD)",
        ),
        (
            Self::GIT_BRANCH,
            "verify_env: origin/<branch> built, if no BRANCH_NAME",
        ),
        (
            Self::TAG_NAME,
            "verify_env: the tag Jenkins built (must be on the branch)",
        ),
        (
            Self::BUILD,
            "cutover, measure_latency: the CI build recorded (BUILD_TAG)",
        ),
        (Self::GIT_COMMIT, "cutover: the commit deployed, journaled"),
        (
            Self::CHANGE_TICKET,
            "change ticket: verify_env's policy, journaled by cutover",
        ),
        (
            Self::OVERRIDE_POLICY,
            "cutover: the policy override's reason, journaled",
        ),
        (
            Self::DEPLOYMENT_ID,
            "every tool: the deployment id (version + build) in its JSON logs, reports, JUnit, journal rows, notifications and pushed metrics",
        ),
        (
            Self::MIGRATIONS,
            "db_migrate: migrations directory (--migrations)",
        ),
        (
            Self::FAULT_KILL_AFTER,
            "tests only: cutover and db_migrate's online changes kill themselves (-9) after this step's action",
        ),
        (
            Self::FAULT_FAIL_AFTER,
            "tests only: db_migrate's online change fails after this step (its abort path runs)",
        ),
    ];
}
