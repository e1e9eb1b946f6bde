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
        sources(self)
            .map(|c| crate::redact::redact(&c.to_string()))
            .collect()
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
            Error::Io { .. } => exit::IO,
            Error::Interrupted(Signal::Int) => exit::SIGINT,
            Error::Interrupted(Signal::Term) => exit::SIGTERM,
        }
    }

    /// What to do next, printed after the error line: every failure says one, fitted to what
    /// failed (the dependency, the I/O error's kind, the signal).
    pub fn hint(&self) -> String {
        match self {
            Error::Usage(_) => "run with --help for the accepted flags".into(),
            Error::Config { .. } => {
                "fix the file or value named above (config fields: docs/configuration.md)".into()
            }
            Error::Unreachable { what, .. } => unreachable_hint(what).into(),
            // A lock held by another run is waited out; any other conflict is a state that
            // forbids the action, and the line above says which.
            Error::Conflict(m) if m.contains("lock") || m.contains("held by") => {
                "wait for the other run to finish (`cutover status` names it)".into()
            }
            Error::Conflict(_) => {
                "the state above forbids this: do what the line says, `cutover status` shows the environment"
                    .into()
            }
            Error::Inconclusive(_) => {
                "a human must judge: collect more data or widen the window".into()
            }
            Error::Io { path, source, .. } => {
                let dir = path
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(std::path::Path::new("."))
                    .display();
                match source.kind() {
                    std::io::ErrorKind::NotFound => {
                        format!("create {dir} or pass a path that exists")
                    }
                    std::io::ErrorKind::PermissionDenied => {
                        format!("give this user access to {dir}, or pass a path it may write")
                    }
                    std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
                        format!("free space on the disk holding {dir}")
                    }
                    _ => format!("check {} and the disk holding it", path.display()),
                }
            }
            Error::Interrupted(_) => "the cleanup ran; check the state (`cutover status`), then \
                 re-run, or `--resume` a cutover or rollout"
                .into(),
        }
    }
}

/// What to do about a dependency that did not answer, by what it is.
fn unreachable_hint(what: &str) -> &'static str {
    let w = what.to_ascii_lowercase();
    if w.contains("postgres") || w.contains("database") || w.contains("journal") {
        "check the database is up (pg_isready) and the URL its variable holds"
    } else if w.contains("haproxy") || w.contains("load balancer") || w.contains("runtime api") {
        "check HAProxy runs and its runtime API address (stats socket) in the config"
    } else if w.contains("prometheus") {
        "check Prometheus is up and `prometheus_url` in the config"
    } else if w.contains("webhook") {
        "check the webhook URL's variable and that this host may reach it"
    } else {
        "check that the service is up and the address in the config is right"
    }
}

/// Declares a typed failure that carries its message. The type says what failed, so the caller
/// (not the text) decides what it means: a failed step, a refused file, an exit code.
#[macro_export]
macro_rules! failure {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
        #[error("{0}")]
        pub struct $name(pub String);

        impl From<String> for $name {
            fn from(s: String) -> Self {
                $name(s)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(s.to_string())
            }
        }

        impl From<$name> for String {
            fn from(e: $name) -> String {
                e.0
            }
        }
    };
}

/// The causes below `e`, outermost first (not `e` itself): the one walk of a source chain.
pub fn sources<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(e.source(), |c| c.source())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One of every variant (the match below stops compiling when a variant is added without
    /// one): each has a hint, and an exit code the table documents.
    #[test]
    fn every_error_variant_has_a_hint_and_a_documented_code() {
        let io = |k| {
            Error::io(
                "write report",
                "/nonexistent/dir/r.xml",
                std::io::Error::from(k),
            )
        };
        let all = [
            Error::Usage("x".into()),
            Error::config("f:1:1", "x"),
            Error::unreachable("PostgreSQL", "refused"),
            Error::unreachable("HAProxy runtime API 127.0.0.1:1", "refused"),
            Error::unreachable("Prometheus", "refused"),
            Error::unreachable("http://svc", "refused"),
            Error::Conflict("x".into()),
            Error::Conflict("the environment lock of local is held by cutover".into()),
            Error::Inconclusive("x".into()),
            io(std::io::ErrorKind::NotFound),
            io(std::io::ErrorKind::PermissionDenied),
            io(std::io::ErrorKind::Other),
            Error::Interrupted(Signal::Int),
            Error::Interrupted(Signal::Term),
        ];
        let mut hints = std::collections::BTreeSet::new();
        for e in &all {
            match e {
                Error::Usage(_)
                | Error::Config { .. }
                | Error::Unreachable { .. }
                | Error::Conflict(_)
                | Error::Inconclusive(_)
                | Error::Io { .. }
                | Error::Interrupted(_) => {}
            }
            let h = e.hint();
            assert!(h.len() > 10, "{e:?} has no hint");
            hints.insert(h);
            assert!(
                crate::exit::TABLE
                    .iter()
                    .any(|(c, _, _)| *c == e.exit_code()),
                "{e:?}"
            );
        }
        // Hints fit the failure: the database, HAProxy, Prometheus, a service and each I/O kind
        // get their own.
        assert!(hints.len() >= 10, "{hints:#?}");
        assert!(
            io(std::io::ErrorKind::NotFound)
                .hint()
                .contains("/nonexistent/dir")
        );
        assert_eq!(io(std::io::ErrorKind::Other).exit_code(), crate::exit::IO);
    }
}
