//! The one output path (cargo's `Shell`, smaller): results on stdout, the error line and hint
//! on stderr, colour and terminal detection decided here once, and a reader that goes away
//! (`| head -n1`) ends the output quietly instead of panicking. Built over buffers, a tool's
//! whole output can be checked in-process.

use crate::env_vars::EnvVars;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// Whether stdout and stderr are terminals, read once per process.
#[derive(Debug, Clone, Copy)]
pub struct Terminal {
    pub stdout: bool,
    pub stderr: bool,
}

pub fn terminal() -> Terminal {
    static T: std::sync::OnceLock<Terminal> = std::sync::OnceLock::new();
    *T.get_or_init(|| Terminal {
        stdout: std::io::IsTerminal::is_terminal(&std::io::stdout()),
        stderr: std::io::IsTerminal::is_terminal(&std::io::stderr()),
    })
}

/// Whether results get ANSI colour: `DEPLOYKIT_COLOR=always|never`, else not under `NO_COLOR`
/// and only on a terminal.
pub fn use_color() -> bool {
    match std::env::var(EnvVars::COLOR).as_deref() {
        Ok("always") => true,
        Ok("never") => false,
        _ => std::env::var_os(EnvVars::NO_COLOR).is_none() && terminal().stdout,
    }
}

enum Sink {
    Stdout,
    Stderr,
    Buffer(Arc<Mutex<Vec<u8>>>),
}

impl Sink {
    fn write(&self, text: &str) {
        let r = match self {
            Sink::Stdout => {
                let mut o = std::io::stdout().lock();
                o.write_all(text.as_bytes()).and_then(|_| o.flush())
            }
            Sink::Stderr => std::io::stderr().write_all(text.as_bytes()),
            Sink::Buffer(b) => {
                b.lock().expect("buffer").extend_from_slice(text.as_bytes());
                Ok(())
            }
        };
        // A closed pipe means nobody reads any more: nothing left to tell them.
        if let Err(e) = r
            && e.kind() != std::io::ErrorKind::BrokenPipe
        {
            let _ = writeln!(std::io::stderr(), "cannot write output: {e}");
        }
    }
}

/// Bytes a test reads back from [`Output::buffers`].
pub type Captured = Arc<Mutex<Vec<u8>>>;

pub struct Output {
    out: Sink,
    err: Sink,
    pub color: bool,
}

impl Output {
    /// The process's stdout and stderr.
    pub fn stdio() -> Output {
        Output {
            out: Sink::Stdout,
            err: Sink::Stderr,
            color: use_color(),
        }
    }

    /// Output captured in memory (stdout, stderr), without colour.
    pub fn buffers() -> (Output, Captured, Captured) {
        let (o, e) = (Arc::default(), Arc::default());
        (
            Output {
                out: Sink::Buffer(Arc::clone(&o)),
                err: Sink::Buffer(Arc::clone(&e)),
                color: false,
            },
            o,
            e,
        )
    }

    /// A result (report, JSON document) on stdout.
    pub fn result(&self, text: &str) {
        self.out.write(text);
    }

    /// A line for the operator on stderr, redacted.
    pub fn message(&self, line: &str) {
        self.err
            .write(&format!("{}\n", crate::redact::redact(line)));
    }
}
