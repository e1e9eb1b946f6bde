//! The shared runner every binary's `main` calls: parse → load config → init tracing → run on
//! tokio → render the report → exit code. SIGINT/SIGTERM cancel the tool's token; the tool
//! cleans up (cancels its test orders, releases locks) and the runner exits 130/143.

use crate::config::{Config, EnvName, Environment, Format, LogFormat, parse_duration};
use crate::env_vars::EnvVars;
use crate::error::{Error, Result, Signal};
use crate::output::Output;
use crate::redact::redact;
use crate::report::Report;
use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How long a tool may take to clean up after a signal before the runner gives up on it.
const CLEANUP_GRACE: Duration = Duration::from_secs(20);

/// Flags every binary shares (flattened into each tool's `Args`).
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// Environment to act on.
    #[arg(short = 'e', long, global = true, env = EnvVars::ENVIRONMENT, value_enum, default_value_t = EnvName::Local)]
    pub environment: EnvName,

    /// Config file describing every environment.
    #[arg(long, global = true, env = EnvVars::CONFIG, value_name = "FILE", default_value = crate::config::DEFAULT_PATH)]
    pub config: PathBuf,

    /// Result format on stdout [default: the file's [defaults], else human].
    #[arg(long, global = true, env = EnvVars::FORMAT, value_enum)]
    pub format: Option<Format>,

    /// Also write a JUnit XML report here (for Jenkins' junit step).
    #[arg(long, global = true, env = EnvVars::JUNIT, value_name = "FILE")]
    pub junit: Option<PathBuf>,

    /// Also write an HTML page of the result here (the tool's charts where it has them).
    #[arg(long, global = true, env = EnvVars::HTML, value_name = "FILE")]
    pub html: Option<PathBuf>,

    /// Timeout for each check or network call (e.g. 500ms, 10s) [default: the file's, else 10s].
    #[arg(long, global = true, env = EnvVars::TIMEOUT, value_parser = parse_duration, allow_hyphen_values = true, value_name = "DURATION")]
    pub timeout: Option<Duration>,

    /// More log detail on stderr (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Less log detail on stderr (-q warnings only, -qq errors only).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub quiet: u8,

    /// Log format on stderr.
    #[arg(long, global = true, env = EnvVars::LOG_FORMAT, value_enum)]
    pub log_format: Option<LogFormat>,
}

/// `--dry-run`, flattened only into tools that change something.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct DryRunArgs {
    /// Print what would be done (exact commands and calls) without doing it.
    #[arg(long, global = true, env = EnvVars::DRY_RUN)]
    pub dry_run: bool,
}

/// Everything a tool's `run` gets: its environment's config, the resolved timeout and the
/// cancellation token that SIGINT/SIGTERM trigger.
pub struct Context {
    pub tool: &'static str,
    pub env_name: EnvName,
    pub config: Config,
    pub timeout: Duration,
    pub format: Format,
    pub cancel: CancellationToken,
    pub started: Instant,
}

impl Context {
    pub fn env(&self) -> Result<&Environment> {
        self.config.environment(self.env_name)
    }

    /// A fresh report for this tool and environment.
    pub fn report(&self) -> Report {
        Report::new(self.tool, self.env_name.as_str())
    }
}

/// A binary of deploy-tools.
pub trait Tool: clap::Parser + Send + 'static {
    const NAME: &'static str;
    fn common(&self) -> &CommonArgs;
    fn run(self, ctx: Context) -> impl Future<Output = Result<Report>> + Send;
    /// Whether this run changes the environment (not a dry run, not a read): its outcome is
    /// pushed as a deployment metric (crate::deploy_metrics).
    fn changes(&self) -> bool {
        false
    }
    /// What an environment-changing run does, as its pushed `action` label (rollbacks are
    /// counted and alerted on by it) [default: the tool's name].
    fn action(&self) -> &'static str {
        Self::NAME
    }
}

/// The whole life of a binary; `bins/<name>/main.rs` calls only this.
pub fn main<T: Tool>() -> ExitCode {
    let args = match T::try_parse() {
        Ok(a) => a,
        Err(e) => {
            // Help and version go to stdout with 0; usage errors to stderr with 2 (and, asked
            // for JSON, a JSON error document on stdout like every other failure).
            let _ = e.print();
            if !e.use_stderr() {
                return ExitCode::from(crate::exit::OK);
            }
            if json_requested() {
                let message = e.to_string();
                let first = message.lines().next().unwrap_or_default();
                let doc = serde_json::json!({
                    "tool": T::NAME,
                    "outcome": "error",
                    "exit_code": crate::exit::USAGE,
                    "error": {
                        "message": redact(first.trim_start_matches("error: ")),
                        "hint": Error::Usage(String::new()).hint(),
                    },
                });
                Output::stdio().result(&format!(
                    "{}\n",
                    serde_json::to_string_pretty(&doc).expect("json")
                ));
            }
            return ExitCode::from(crate::exit::USAGE);
        }
    };
    ExitCode::from(run_parsed(args))
}

/// The causes a person needs below the error line: not one the message already spells out
/// (with or without a severity prefix such as `ERROR: `), nor a bare label that only announces
/// the next cause (hyper's "client error (Connect)"). JSON keeps the whole chain.
fn shown_causes<'a>(message: &str, causes: &'a [String]) -> Vec<&'a str> {
    causes
        .iter()
        .enumerate()
        .filter(|(i, c)| {
            let core = c
                .split_once(": ")
                .filter(|(p, _)| p.chars().all(|ch| ch.is_ascii_uppercase()))
                .map_or(c.as_str(), |(_, r)| r);
            let bare_label = !c.contains(':') && *i + 1 < causes.len();
            !message.contains(core) && !bare_label
        })
        .map(|(_, c)| c.as_str())
        .collect()
}

/// Whether the command line (or DEPLOYKIT_FORMAT) asks for JSON, read without clap: used only
/// when clap itself refused the command line.
fn json_requested() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2)
        .any(|w| w[0] == "--format" && w[1] == "json")
        || args.iter().any(|a| a == "--format=json")
        || std::env::var(EnvVars::FORMAT).as_deref() == Ok("json")
}

/// Run already-parsed args and return the exit code (used by `main` and by tests).
pub fn run_parsed<T: Tool>(args: T) -> u8 {
    run_with_output(args, &Output::stdio())
}

/// Run already-parsed args writing to `out` (stdio, or buffers in a test).
pub fn run_with_output<T: Tool>(args: T, out: &Output) -> u8 {
    let common = args.common().clone();
    let started = Instant::now();
    let config = match Config::load(&common.config) {
        Ok(c) => c,
        Err(e) => {
            crate::telemetry::init(
                T::NAME,
                verbosity(&common),
                common.log_format.unwrap_or_default(),
            );
            return fail::<T>(out, &common, common.format.unwrap_or_default(), &e);
        }
    };
    register_secrets(&config);
    let format = common.format.or(config.defaults.format).unwrap_or_default();
    let log_format = common
        .log_format
        .or(config.defaults.log_format)
        .unwrap_or_default();
    crate::telemetry::init(T::NAME, verbosity(&common), log_format);
    let timeout = common
        .timeout
        .or(config.defaults.timeout.map(|d| d.0))
        .or_else(|| {
            config
                .environments
                .get(&common.environment)
                .map(|e| e.timeouts.request.0)
        })
        .unwrap_or(Duration::from_secs(10));

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            return fail::<T>(
                out,
                &common,
                format,
                &Error::io("start runtime", "tokio", e),
            );
        }
    };
    let cancel = CancellationToken::new();
    let push_to = args
        .changes()
        .then(|| config.environments.get(&common.environment))
        .flatten()
        .and_then(|e| e.pushgateway.clone());
    let action = args.action();
    let ctx = Context {
        tool: T::NAME,
        env_name: common.environment,
        config,
        timeout,
        format,
        cancel: cancel.clone(),
        started,
    };
    let result = runtime.block_on(async {
        let mut result = run_with_signals(args.run(ctx), cancel).await;
        if let Some(base) = push_to {
            push_outcome::<T>(&base.to_string(), &common, action, started, &mut result).await;
        }
        result
    });
    // Don't wait for stray blocking tasks (a hung child read): every wait is bounded already.
    runtime.shutdown_timeout(Duration::from_millis(200));
    match result {
        Ok(mut report) => {
            report.finish(started.elapsed());
            if let Err(e) = emit(out, &common, format, &report) {
                return fail::<T>(out, &common, format, &e);
            }
            report.exit_code()
        }
        Err(e) => fail::<T>(out, &common, format, &e),
    }
}

/// The run's outcome to the Pushgateway; a failure is a warning (log and report), never the
/// run's result.
async fn push_outcome<T: Tool>(
    base: &str,
    common: &CommonArgs,
    action: &str,
    started: Instant,
    result: &mut Result<Report>,
) {
    let environment = common.environment.as_str();
    if let Ok(r) = result {
        for s in r.states().to_vec() {
            if let Err(why) = crate::deploy_metrics::push_state(base, environment, &s).await {
                tracing::warn!("{} state not pushed to {base}: {why}", s.kind);
                r.note(format!(
                    "warning: {} state not pushed to {base} ({why}); the run itself is unaffected",
                    s.kind
                ));
            }
        }
    }
    let outcome = crate::deploy_metrics::Outcome {
        tool: T::NAME.to_string(),
        action: action.to_string(),
        environment: common.environment.as_str().to_string(),
        deployment_id: crate::deploy_metrics::deployment_id(),
        duration: started.elapsed(),
        exit_code: match result {
            Ok(r) => r.exit_code(),
            Err(e) => e.exit_code(),
        },
        finished_unix: chrono::Utc::now().timestamp_millis() as f64 / 1000.0,
    };
    match crate::deploy_metrics::push(base, &outcome).await {
        Ok(()) => tracing::debug!(
            "deployment metrics pushed to {base} (deployment {})",
            outcome.deployment_id
        ),
        Err(why) => {
            tracing::warn!("deployment metrics not pushed to {base}: {why}");
            if let Ok(r) = result {
                r.note(format!(
                    "warning: deployment metrics not pushed to {base} ({why}); the run itself is unaffected"
                ));
            }
        }
    }
}

/// Every secret the config names is registered for redaction before anything runs, so no
/// later message, log line or report can print it, whichever code path leaks it.
fn register_secrets(config: &Config) {
    for env in config.environments.values() {
        let vars = env
            .database
            .iter()
            .map(|d| d.url_env.as_str())
            .chain([
                env.admin_token_env.as_str(),
                env.notify_webhook_env.as_str(),
            ])
            .chain(env.pagerduty.iter().map(|p| p.routing_key_env.as_str()))
            .chain(
                env.notify_email
                    .iter()
                    .filter_map(|e| e.password_env.as_deref()),
            );
        for var in vars {
            if let Ok(v) = std::env::var(var) {
                crate::redact::register(&v);
            }
        }
    }
}

fn verbosity(c: &CommonArgs) -> i8 {
    c.verbose as i8 - c.quiet as i8
}

/// CPU-bound work (parsing, linting) off the runtime, so a signal is still heard while it runs;
/// on SIGINT/SIGTERM the work is abandoned (it changes nothing) and the tool returns at once.
pub async fn blocking<T: Send + 'static>(
    cancel: &CancellationToken,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    let work = tokio::task::spawn_blocking(f);
    tokio::select! {
        r = work => Ok(r.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))),
        _ = cancel.cancelled() => Err(Error::Interrupted(Signal::Int)),
    }
}

async fn run_with_signals<F>(fut: F, cancel: CancellationToken) -> Result<Report>
where
    F: Future<Output = Result<Report>>,
{
    tokio::pin!(fut);
    let signal = tokio::select! {
        r = &mut fut => return r,
        s = wait_signal() => s,
    };
    tracing::warn!("{signal} received: cleaning up before exit");
    cancel.cancel();
    // Let the tool run its cleanup; a second signal or the grace period ends the wait.
    tokio::select! {
        r = &mut fut => if let Err(e) = r { tracing::warn!("during cleanup: {e}") },
        _ = tokio::time::sleep(CLEANUP_GRACE) => tracing::error!("cleanup did not finish within {CLEANUP_GRACE:?}"),
        _ = wait_signal() => tracing::error!("second signal: exiting without finishing cleanup"),
    }
    Err(Error::Interrupted(signal))
}

async fn wait_signal() -> Signal {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = int.recv() => Signal::Int,
        _ = term.recv() => Signal::Term,
    }
}

pub use crate::output::use_color;

fn emit(out: &Output, common: &CommonArgs, format: Format, report: &Report) -> Result<()> {
    if let Some(path) = &common.junit {
        report.write_junit(path)?;
    }
    if let Some(path) = &common.html {
        std::fs::write(path, report.render_html())
            .map_err(|e| Error::io("write HTML page", path, e))?;
    }
    out.result(&match format {
        Format::Human => report.render_human(out.color),
        Format::Json => report.render_json(),
    });
    Ok(())
}

/// Report an error the same way for every tool: one line and a hint on stderr, a JSON error
/// document on stdout with `--format json`, a failing JUnit case with `--junit`.
fn fail<T: Tool>(out: &Output, common: &CommonArgs, format: Format, e: &Error) -> u8 {
    let code = e.exit_code();
    let message = redact(&e.to_string());
    let hint = redact(&e.hint());
    let causes = e.causes();
    if crate::telemetry::json() {
        // A JSON log stream stays parseable to its last line.
        out.message(&crate::telemetry::json_line(
            T::NAME,
            "ERROR",
            serde_json::json!({ "message": message, "hint": hint, "causes": causes, "exit_code": code }),
        ));
    } else {
        out.message(&format!("error: {message}"));
        for c in shown_causes(&message, &causes) {
            out.message(&format!("  caused by: {c}"));
        }
        out.message(&format!("hint: {hint}"));
    }
    if format == Format::Json {
        let doc = serde_json::json!({
            "tool": T::NAME,
            "environment": common.environment.as_str(),
            "deployment_id": crate::deploy_metrics::deployment_id(),
            "outcome": "error",
            "exit_code": code,
            "error": { "message": message, "hint": hint, "causes": causes },
        });
        out.result(&format!(
            "{}\n",
            serde_json::to_string_pretty(&doc).expect("json")
        ));
    }
    // Every file output still says why the tool could not run (JUnit for Jenkins, the page for
    // a person); only a path that itself failed is not retried.
    let mut r = Report::new(T::NAME, common.environment.as_str());
    r.push(
        crate::report::Check::fail("runner", format!("{} could not run", T::NAME), message)
            .hint(hint),
    );
    let failed_path = |path: &std::path::Path| matches!(e, Error::Io { path: p, .. } if p == path);
    if let Some(path) = &common.junit
        && !failed_path(path)
        && let Err(w) = r.write_junit(path)
    {
        out.message(&format!("error: {w}"));
    }
    if let Some(path) = &common.html
        && !failed_path(path)
        && let Err(w) = std::fs::write(path, r.render_html())
    {
        out.message(&format!("error: write HTML page {}: {w}", path.display()));
    }
    code
}
