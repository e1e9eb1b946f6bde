//! Typed errors: every failure a tool can hit maps to exactly one exit code.

use crate::exit;
use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad invocation that clap could not catch (e.g. conflicting values known only later).
    #[error("{0}")]
    Usage(String),

    /// The config file is missing, malformed or has a bad value. `location` is
    /// `file:line:column` where known.
    #[error("{location}: {message}")]
    Config { location: String, message: String },

    /// A dependency did not answer: service, database, HAProxy, Prometheus. `detail` is what
    /// an operator reads; `source`, when kept, is the typed failure behind it.
    #[error("cannot reach {what}: {detail}")]
    Unreachable {
        what: String,
        detail: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },

    /// Another run holds the lock, or the current state forbids the action.
    #[error("{0}")]
    Conflict(String),

    /// Not enough data to judge.
    #[error("{0}")]
    Inconclusive(String),

    /// Local I/O the tool needs (report files, journal).
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// SIGINT / SIGTERM arrived; cleanup has run.
    #[error("interrupted by {0}")]
    Interrupted(Signal),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Int,
    Term,
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Signal::Int => "SIGINT",
            Signal::Term => "SIGTERM",
        })
    }
}

impl Error {
    pub fn config(location: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            location: location.into(),
            message: message.into(),
        }
    }

    pub fn unreachable(what: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        Error::Unreachable {
            what: what.into(),
            detail: detail.to_string(),
            source: None,
        }
    }

    /// Unreachable, keeping the typed failure as the source (its chain goes to `causes`).
    pub fn unreachable_from(
        what: impl Into<String>,
        detail: impl std::fmt::Display,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Unreachable {
            what: what.into(),
            detail: detail.to_string(),
            source: Some(Box::new(source)),
        }
    }

    /// The chain of causes below this error, outermost first, each redacted.
    pub fn causes(&self) -> Vec<String> {
        let mut out = vec![];
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            out.push(crate::redact::redact(&c.to_string()));
            cause = c.source();
        }
        out
    }

    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// The documented exit code (docs/exit-codes.md).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => exit::USAGE,
            Error::Config { .. } => exit::CONFIG,
            Error::Unreachable { .. } => exit::UNREACHABLE,
            Error::Conflict(_) => exit::CONFLICT,
            Error::Inconclusive(_) => exit::INCONCLUSIVE,
            // A report or journal we cannot write is the operator's environment, like config.
            Error::Io { .. } => exit::CONFIG,
            Error::Interrupted(Signal::Int) => exit::SIGINT,
            Error::Interrupted(Signal::Term) => exit::SIGTERM,
        }
    }

    /// What to do next, printed after the error line.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            Error::Usage(_) => Some("run with --help for the accepted flags"),
            Error::Config { .. } => {
                Some("fix the file or value named above (config fields: docs/configuration.md)")
            }
            Error::Unreachable { .. } => {
                Some("check that the service is up and the address in the config is right")
            }
            Error::Conflict(_) => {
                Some("wait for the other run to finish, or check the current state")
            }
            Error::Inconclusive(_) => {
                Some("a human must judge: collect more data or widen the window")
            }
            Error::Io { .. } => Some("check the path exists and is writable"),
            Error::Interrupted(_) => None,
        }
    }
}
