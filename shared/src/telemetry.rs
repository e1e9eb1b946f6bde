//! Logs go to stderr through `tracing`, redacted on the way out, as text or JSON lines.

use crate::config::LogFormat;
use crate::env_vars::EnvVars;
use std::io::Write;
use std::time::{Duration, Instant};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// stderr, with every write passed through [`crate::redact::redact`]. The fmt layer formats a
/// whole event and writes it at once, so a secret is never split across two writes.
#[derive(Clone, Copy, Default)]
pub struct RedactingStderr;

pub struct RedactingWriter;

impl Write for RedactingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr().write_all(crate::redact::redact(&text).as_bytes())?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for RedactingStderr {
    type Writer = RedactingWriter;
    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter
    }
}

static JSON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// Whether logs are JSON lines (then the runner's last error line is one too).
pub fn json() -> bool {
    JSON.get().copied().unwrap_or(false)
}

/// A log line in the JSON shape of [`JsonLines`], for a line written outside `tracing` (the
/// runner's final error, printed after the runtime is gone).
pub fn json_line(tool: &str, level: &str, fields: serde_json::Value) -> String {
    serde_json::json!({
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "level": level,
        "tool": tool,
        "deployment_id": crate::deploy_metrics::deployment_id(),
        "fields": fields,
    })
    .to_string()
}

/// One JSON object per log line, each carrying the tool and the deployment id (issue 23), so a
/// log search for `deployment_id: "v3.2.2+41"` finds every line of that deployment, whichever
/// binary wrote it: `{"timestamp","level","tool","deployment_id","fields":{"message",…}}`
/// (tracing-subscriber's own JSON shape, which has no place for fixed fields, plus the two).
struct JsonLines {
    tool: &'static str,
}

/// Collects an event's fields as JSON values.
struct JsonFields<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl tracing::field::Visit for JsonFields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
}

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for JsonLines
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let mut fields = serde_json::Map::new();
        event.record(&mut JsonFields(&mut fields));
        let line = json_line(self.tool, event.metadata().level().as_str(), fields.into());
        writeln!(writer, "{line}")
    }
}

/// `verbosity`: 0 = info (progress lines for Jenkins), 1 = debug, 2+ = trace, -1 = warn,
/// -2 or less = error. `DEPLOYKIT_LOG` overrides with full filter directives.
pub fn init(tool: &'static str, verbosity: i8, format: LogFormat) {
    let _ = JSON.set(format == LogFormat::Json);
    let level = match verbosity {
        i8::MIN..=-2 => "error",
        -1 => "warn",
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = std::env::var(EnvVars::LOG)
        .ok()
        .and_then(|d| EnvFilter::try_new(d).ok())
        .unwrap_or_else(|| EnvFilter::new(format!("warn,deploykit={level},trading_sim={level}")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(RedactingStderr)
        .with_target(false);
    // try_init: tests may initialise twice in one process.
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(crate::output::terminal().stderr)
            .try_init(),
        LogFormat::Json => builder
            .with_ansi(false)
            .event_format(JsonLines { tool })
            .try_init(),
    };
}

/// Paces a long wait's progress lines: one per `period` at most, so Jenkins logs show a line per
/// step without a line per poll.
pub struct Every {
    period: Duration,
    last: Instant,
}

impl Every {
    pub fn new(period: Duration) -> Every {
        Every {
            period,
            last: Instant::now(),
        }
    }

    /// True once `period` has passed since the start or the last true (which restarts it).
    pub fn due(&mut self) -> bool {
        let due = self.last.elapsed() >= self.period;
        if due {
            self.last = Instant::now();
        }
        due
    }
}

/// Progress of a long job with a known (or estimated) amount of work: a bar on a terminal
/// (indicatif, on stderr), a line every 5 s otherwise — what a Jenkins log can show.
pub struct Progress {
    label: String,
    bar: Option<indicatif::ProgressBar>,
    every: Every,
    started: Instant,
}

impl Progress {
    pub fn new(label: impl Into<String>, total: Option<u64>) -> Progress {
        use std::io::IsTerminal;
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(total.unwrap_or(0));
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{prefix} [{bar:30}] {human_pos}/{human_len} rows {per_sec} eta {eta} {msg}",
            ) {
                b.set_style(style.progress_chars("=> "));
            }
            b
        });
        let label = label.into();
        if let Some(b) = &bar {
            b.set_prefix(label.clone());
        }
        Progress {
            label,
            bar,
            every: Every::new(Duration::from_secs(5)),
            started: Instant::now(),
        }
    }

    /// `done` of `total` units so far; `note` says how the job is paced.
    pub fn set(&mut self, done: u64, total: Option<u64>, note: &str) {
        if let Some(b) = &self.bar {
            if let Some(t) = total {
                b.set_length(t.max(done));
            }
            b.set_position(done);
            b.set_message(note.to_string());
            return;
        }
        if !self.every.due() {
            return;
        }
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = done as f64 / secs;
        let (of, eta) = match total {
            Some(t) if t > 0 => {
                let left = t.saturating_sub(done) as f64;
                let eta = if rate > 0.0 {
                    format!(
                        "ETA {}",
                        humantime::format_duration(Duration::from_secs((left / rate) as u64))
                    )
                } else {
                    "ETA unknown".to_string()
                };
                (
                    format!("/{t} ({:.0}%)", 100.0 * done as f64 / t as f64),
                    eta,
                )
            }
            _ => (String::new(), "ETA unknown".to_string()),
        };
        tracing::info!(
            "{}: {done}{of} rows, {rate:.0} rows/s, {eta}; {note}",
            self.label
        );
    }

    pub fn finish(self) {
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
    }
}
