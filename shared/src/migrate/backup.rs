//! `pg_dump -Fc` backups, verified with `pg_restore --list`, with size and SHA-256 recorded.
//! The password never reaches the command line (visible in `ps`): it goes through PGPASSWORD.

use crate::error::{Error, Result};
use crate::process;
use crate::redact::Secret;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Backup {
    pub path: PathBuf,
    pub bytes: u64,
    pub sha256: String,
    pub entries: usize,
}

/// Split a URL into (URL without password, password) so the password can travel by env.
pub(crate) fn split_password(url: &str) -> (String, Option<String>) {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let pw = u.password().map(|p| {
                url::form_urlencoded::parse(format!("p={p}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_else(|| p.to_string())
            });
            let _ = u.set_password(None);
            (u.to_string(), pw)
        }
        _ => (url.to_string(), None),
    }
}

/// `pg_dump` against `url`, the password by PGPASSWORD; stdin closed, stderr captured for the
/// error, killed if the wait for it is dropped. The caller adds its options and stdout.
pub(crate) fn pg_dump(url: &Secret) -> tokio::process::Command {
    let (bare, password) = split_password(url.expose());
    let mut cmd = tokio::process::Command::new("pg_dump");
    cmd.arg(format!("--dbname={bare}"))
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p);
    }
    cmd
}

pub async fn take(url: &Secret, dir: &Path, timeout: Duration) -> Result<Backup> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create backups directory", dir, e))?;
    let name = format!(
        "pre_deploy_{}.dump",
        chrono::Local::now().format("%Y%m%d_%H%M%S")
    );
    let path = dir.join(name);
    let mut cmd = pg_dump(url);
    cmd.args(["-Fc", "--no-owner", "-f"])
        .arg(&path)
        .stdout(std::process::Stdio::null());
    let child = cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::config(
            "pg_dump",
            "pg_dump not found; install it: apt-get install postgresql-client",
        ),
        _ => Error::io("run pg_dump", &path, e),
    })?;
    let out = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => return Err(Error::io("run pg_dump", &path, e)),
        Err(_) => {
            let _ = std::fs::remove_file(&path);
            return Err(Error::unreachable(
                "PostgreSQL (pg_dump)",
                format!("backup did not finish within {timeout:?}"),
            ));
        }
    };
    if !out.status.success() {
        let _ = std::fs::remove_file(&path);
        return Err(Error::unreachable(
            "PostgreSQL (pg_dump)",
            crate::redact::redact(String::from_utf8_lossy(&out.stderr).trim()),
        ));
    }
    verify(&path, timeout).await
}

/// A dump is good when `pg_restore --list` reads its table of contents.
pub async fn verify(path: &Path, timeout: Duration) -> Result<Backup> {
    let p = path.to_string_lossy().into_owned();
    let out = process::run("pg_restore", &["--list", &p], None, timeout)
        .await
        .map_err(|e| Error::config("pg_restore", e.to_string()))?;
    if !out.success {
        return Err(Error::Conflict(format!(
            "backup {} is not readable: {}",
            path.display(),
            out.stderr.trim()
        )));
    }
    let entries = out
        .stdout
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .count();
    let bytes = std::fs::read(path).map_err(|e| Error::io("read backup", path, e))?;
    Ok(Backup {
        path: path.to_owned(),
        bytes: bytes.len() as u64,
        sha256: super::sha256_hex(&bytes),
        entries,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn password_leaves_the_url() {
        let (u, p) = super::split_password("postgres://app:s%40cret@db:5432/x");
        assert_eq!(u, "postgres://app@db:5432/x");
        assert_eq!(p.as_deref(), Some("s@cret"));
    }
}
