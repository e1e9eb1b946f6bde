//! Child processes with a deadline: a hung tool is killed, never waited on forever.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("`{0}` not found on PATH")]
    NotFound(String),
    #[error("`{program}` timed out after {}s", timeout.as_secs_f64())]
    Timeout { program: String, timeout: Duration },
    #[error("`{program}` could not start: {detail}")]
    Spawn { program: String, detail: String },
}

#[derive(Debug, Clone)]
pub struct Output {
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// stdout and stderr together (tools print versions to either).
    pub fn combined(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Run `program args` in `cwd` with a deadline; the child is killed if the deadline passes.
pub async fn run(
    program: &str,
    args: &[&str],
    cwd: Option<&Path>,
    timeout: Duration,
) -> Result<Output, ProcError> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    let child = cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ProcError::NotFound(program.to_owned()),
        _ => ProcError::Spawn {
            program: program.to_owned(),
            detail: e.to_string(),
        },
    })?;
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(out)) => Ok(Output {
            success: out.status.success(),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }),
        Ok(Err(e)) => Err(ProcError::Spawn {
            program: program.to_owned(),
            detail: e.to_string(),
        }),
        // Dropping the future drops the child, and kill_on_drop kills it.
        Err(_) => Err(ProcError::Timeout {
            program: program.to_owned(),
            timeout,
        }),
    }
}

/// Is `program` an executable on PATH (or a path that exists)?
pub fn which(program: &str) -> Option<std::path::PathBuf> {
    if program.contains('/') {
        let p = Path::new(program);
        return p.is_file().then(|| p.to_owned());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
