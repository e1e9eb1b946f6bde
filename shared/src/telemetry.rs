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

/// `verbosity`: 0 = info (progress lines for Jenkins), 1 = debug, 2+ = trace, -1 = warn,
/// -2 or less = error. `DEPLOYKIT_LOG` overrides with full filter directives.
pub fn init(verbosity: i8, format: LogFormat) {
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
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
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
