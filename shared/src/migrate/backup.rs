//! `pg_dump -Fc` backups, verified with `pg_restore --list`, with size and SHA-256 recorded.
//! No connection setting reaches the command line (visible in `ps`): all go by libpq variables.

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

/// The libpq environment that connects a child (pg_dump) to the database `conn` names, in any
/// form tokio-postgres reads (URL with the password in the userinfo or `?password=`, or
/// `host=… password=…` keywords). Nothing goes on the command line (visible in `ps`): the
/// password travels as PGPASSWORD, percent-decoded (a `+` stays a `+`).
pub(crate) fn libpq_env(conn: &str) -> Result<Vec<(&'static str, String)>> {
    use tokio_postgres::config::{Host, SslMode};
    let c: tokio_postgres::Config = conn.parse().map_err(|e| {
        Error::config(
            "database URL",
            format!("cannot parse the connection string: {e}"),
        )
    })?;
    let mut env = vec![];
    let hosts: Vec<String> = c
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    if !hosts.is_empty() {
        env.push(("PGHOST", hosts.join(",")));
    }
    let ports: Vec<String> = c.get_ports().iter().map(u16::to_string).collect();
    if !ports.is_empty() {
        env.push(("PGPORT", ports.join(",")));
    }
    if let Some(u) = c.get_user() {
        env.push(("PGUSER", u.to_string()));
    }
    if let Some(d) = c.get_dbname() {
        env.push(("PGDATABASE", d.to_string()));
    }
    if let Some(p) = c.get_password() {
        env.push(("PGPASSWORD", String::from_utf8_lossy(p).into_owned()));
    }
    if let Some(a) = c.get_application_name() {
        env.push(("PGAPPNAME", a.to_string()));
    }
    if let Some(o) = c.get_options() {
        env.push(("PGOPTIONS", o.to_string()));
    }
    if let Some(t) = c.get_connect_timeout() {
        env.push(("PGCONNECT_TIMEOUT", t.as_secs().max(1).to_string()));
    }
    env.push((
        "PGSSLMODE",
        match c.get_ssl_mode() {
            SslMode::Disable => "disable",
            SslMode::Require => "require",
            _ => "prefer",
        }
        .to_string(),
    ));
    Ok(env)
}

/// `pg_dump` against `url` with every connection setting in the environment (none in argv);
/// stdin closed, stderr captured for the error, killed if the wait for it is dropped. The
/// caller adds its options and stdout.
pub(crate) fn pg_dump(url: &Secret) -> Result<tokio::process::Command> {
    let mut cmd = tokio::process::Command::new("pg_dump");
    cmd.kill_on_drop(true)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    // A PGPASSWORD or PGSERVICE from the caller's environment must not mix with ours.
    for k in [
        "PGPASSWORD",
        "PGSERVICE",
        "PGPASSFILE",
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
    ] {
        cmd.env_remove(k);
    }
    cmd.envs(libpq_env(url.expose())?);
    Ok(cmd)
}

pub async fn take(url: &Secret, dir: &Path, timeout: Duration) -> Result<Backup> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create backups directory", dir, e))?;
    let name = format!(
        "pre_deploy_{}.dump",
        chrono::Local::now().format("%Y%m%d_%H%M%S")
    );
    let path = dir.join(name);
    let mut cmd = pg_dump(url)?;
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
    use crate::redact::Secret;

    fn argv_and_password(conn: &str) -> (String, Option<String>) {
        let cmd = super::pg_dump(&Secret::new(conn)).unwrap();
        let std = cmd.as_std();
        let argv: Vec<String> = std
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let pw = std
            .get_envs()
            .find(|(k, _)| *k == "PGPASSWORD")
            .and_then(|(_, v)| v.map(|v| v.to_string_lossy().into_owned()));
        (argv.join(" "), pw)
    }

    /// Every form a connection string takes: the password reaches pg_dump only by PGPASSWORD,
    /// decoded exactly (percent-decoding: `%2B` and a literal `+` stay `+`).
    #[test]
    fn the_password_never_reaches_the_command_line() {
        for (conn, want) in [
            ("postgres://app:s%40cret@db:5432/x", "s@cret"),
            ("postgres://app:p%2Bq@db/x", "p+q"),
            ("postgres://app:p+q@db/x", "p+q"),
            ("postgres://app@db/x?password=secret+1", "secret+1"),
            ("host=db user=app password=kw-secret dbname=x", "kw-secret"),
        ] {
            let (argv, pw) = argv_and_password(conn);
            assert_eq!(pw.as_deref(), Some(want), "{conn}");
            assert!(
                !argv.contains(want) && !argv.contains("secret"),
                "{conn}: {argv}"
            );
        }
        assert!(super::pg_dump(&Secret::new("postgres://[bad")).is_err());
    }
}
