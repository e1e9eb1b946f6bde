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

/// The binary Debian's `pg_wrapper` would run for `program` (psql, pg_dump, …), when that is
/// unambiguous: one installed PostgreSQL version has it and no PGCLUSTER selects another.
/// Running it directly skips the wrapper's Perl start-up (~24 ms of CPU per `psql --version`).
pub fn resolve_pg_wrapper(program: &Path, lib_root: &Path) -> Option<std::path::PathBuf> {
    let target = std::fs::canonicalize(program).ok()?;
    if target.file_name()? != "pg_wrapper"
        || std::env::var_os(crate::env_vars::EnvVars::PGCLUSTER).is_some()
    {
        return None;
    }
    let name = program.file_name()?;
    let found: Vec<std::path::PathBuf> = std::fs::read_dir(lib_root)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin").join(name))
        .filter(|p| is_executable(p))
        .collect();
    match found.as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    }
}

/// Is `program` an executable on PATH (or a path that exists)?
pub fn which(program: &str) -> Option<std::path::PathBuf> {
    if program.contains('/') {
        let p = Path::new(program);
        return p.is_file().then(|| p.to_owned());
    }
    let path = std::env::var_os(crate::env_vars::EnvVars::PATH)?;
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

#[cfg(test)]
mod tests {
    use super::resolve_pg_wrapper;
    use std::os::unix::fs::PermissionsExt;

    fn exe(p: &std::path::Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn pg_wrapper_resolves_only_when_unambiguous() {
        let d = tempfile::tempdir().unwrap();
        let wrapper = d.path().join("share/pg_wrapper");
        exe(&wrapper);
        let bin = d.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink(&wrapper, bin.join("psql")).unwrap();
        let lib = d.path().join("lib");
        exe(&lib.join("15/bin/psql"));
        assert_eq!(
            resolve_pg_wrapper(&bin.join("psql"), &lib),
            Some(lib.join("15/bin/psql"))
        );
        // Two versions: the wrapper's choice depends on cluster config; leave it to the wrapper.
        exe(&lib.join("16/bin/psql"));
        assert_eq!(resolve_pg_wrapper(&bin.join("psql"), &lib), None);
        // Not a wrapper: nothing to resolve.
        exe(&bin.join("jq"));
        assert_eq!(resolve_pg_wrapper(&bin.join("jq"), &lib), None);
    }
}
