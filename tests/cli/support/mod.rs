//! Harness shared by every test module: run binaries, write temp configs, start sims, make
//! databases. Each test gets its own temp dir, sim and database; nothing is shared.

#![allow(dead_code)]

pub mod groovy;
pub mod jenkins;
pub mod junit;
pub mod receivers;
pub mod stack;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Run git in `dir` with a fixed author (CI machines have none), assert it succeeded and return
/// its trimmed stdout: the one git helper of every test module.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// The whole run as a person reads it, for a snapshot: exit code, stdout, stderr.
    pub fn transcript(&self) -> String {
        format!(
            "exit_code: {}\n----- stdout -----\n{}\n----- stderr -----\n{}",
            self.code,
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

/// Filters that make a run's transcript stable across machines and runs: durations, ports,
/// temp paths, timestamps and pids become placeholders.
pub const SNAPSHOT_FILTERS: &[(&str, &str)] = &[
    (
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)",
        "[TIME]",
    ),
    (r#"(/tmp|/var/tmp)/[^\s"',):]+"#, "[TMP]"),
    (r"(127\.0\.0\.1|localhost):\d+", "$1:[PORT]"),
    (r"\b\d+(\.\d+)? ?(ms|µs|s)\b", "[DURATION]"),
    (r"\bpid \d+", "pid [PID]"),
];

/// Snapshot a [`Run`] (exit code + stdout + stderr) with [`SNAPSHOT_FILTERS`] applied: the one
/// way a test records what a person sees.
#[macro_export]
macro_rules! run_snapshot {
    ($name:expr, $run:expr) => {{
        let mut settings = insta::Settings::clone_current();
        for (re, with) in $crate::support::SNAPSHOT_FILTERS {
            settings.add_filter(re, *with);
        }
        settings.bind(|| insta::assert_snapshot!($name, $run.transcript()));
    }};
}

/// Every binary of the root package, read from Cargo.toml's `[[bin]]` table: adding a binary
/// there is all the harness needs (the tests that need per-tool arguments fail until given them).
pub static TOOLS: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| {
    let text = std::fs::read_to_string(repo_root().join("Cargo.toml")).unwrap();
    let manifest: toml::Table = text.parse().unwrap();
    manifest["bin"]
        .as_array()
        .expect("[[bin]] in Cargo.toml")
        .iter()
        .map(|b| &*b["name"].as_str().unwrap().to_string().leak())
        .collect()
});

/// Path of a built binary (ours or trading_sim): they share target/<profile>/.
pub fn bin(name: &str) -> PathBuf {
    sibling_bin(name)
}

/// A binary of another workspace crate (trading_sim): next to ours in target/<profile>/.
pub fn sibling_bin(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_verify_env"))
        .parent()
        .unwrap()
        .to_path_buf();
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} not built; run `cargo build --workspace --bins` first (scripts/test does)",
        p.display()
    );
    p
}

pub fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_verify_env"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Run a binary with a clean DEPLOYKIT_* environment plus `envs`.
pub fn run(name: &str, args: &[&str], envs: &[(&str, &str)]) -> Run {
    run_in(name, args, envs, None)
}

pub fn run_in(name: &str, args: &[&str], envs: &[(&str, &str)], cwd: Option<&Path>) -> Run {
    let mut cmd = Command::new(bin(name));
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("DEPLOYKIT_") || k == "DATABASE_URL" || k == "CHANGE_TICKET" {
            cmd.env_remove(k);
        }
    }
    cmd.env("DEPLOYKIT_COLOR", "never");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    // Every run writes JUnit (unless the test asked for its own file), checked after the run.
    let junit = junit::Capture::attach(&mut cmd, name, args, envs);
    let t = Instant::now();
    let out = cmd.output().expect("spawn binary");
    let code = out.status.code().unwrap_or(-1);
    junit.verify(code);
    Run {
        code,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: t.elapsed(),
    }
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Write `text` as a config file in a fresh temp dir.
pub fn config(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("deploy.toml");
    std::fs::write(&p, text).unwrap();
    (dir, p)
}

/// An in-process trading_sim with an admin token.
pub async fn sim(color: &str, version: &str) -> trading_sim::SimHandle {
    sim_with(trading_sim::SimConfig {
        color: color.into(),
        version: version.into(),
        admin_token: Some(ADMIN_TOKEN.into()),
        ..Default::default()
    })
    .await
}

pub async fn sim_with(cfg: trading_sim::SimConfig) -> trading_sim::SimHandle {
    trading_sim::serve(cfg).await.expect("start sim")
}

pub const ADMIN_TOKEN: &str = "test-admin-token-3f9a";

pub fn http() -> deploykit::http::Http {
    deploykit::http::Http::new(Duration::from_secs(2), Duration::from_secs(5))
}

pub fn client(url: &str) -> deploykit::contract::Client {
    deploykit::contract::Client::new(
        url,
        http().with_token(deploykit::redact::Secret::new(ADMIN_TOKEN)),
    )
}

/// Send `sig` (`-9`, `-STOP`, `-TERM`, …) to process `pid`; it must be delivered.
pub fn signal(sig: &str, pid: &str) {
    assert!(
        std::process::Command::new("kill")
            .args([sig, pid.trim()])
            .status()
            .unwrap()
            .success(),
        "kill {sig} {pid}"
    );
}

/// The PostgreSQL server tests may create databases on: DATABASE_URL (scripts/test sets it,
/// starting a throwaway cluster when nothing listens), else the machine's 127.0.0.1:5432.
pub fn pg_admin_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// `run` off the async runtime, so in-process sims keep serving while the binary talks to them.
pub async fn run_async(name: &str, args: &[&str], envs: &[(&str, &str)]) -> Run {
    let name = name.to_string();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let envs: Vec<(String, String)> = envs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let e: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        run(&name, &a, &e)
    })
    .await
    .unwrap()
}

/// Names of the checks with `status` in a `--format json` report.
pub fn checks_with(stdout: &str, status: &str) -> Vec<String> {
    let v: serde_json::Value =
        serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{e}: not JSON:\n{stdout}"));
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == status)
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

pub fn check_message(stdout: &str, name: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(stdout).unwrap();
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name}"))["message"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// A database of its own for one test, dropped when the guard goes.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub fn new() -> TestDb {
        let admin = pg_admin_url();
        let name = format!(
            "dk_test_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
                % 1_000_000_000
        );
        let out = Command::new("psql")
            .args([admin.as_str(), "-qAtc", &format!("CREATE DATABASE {name}")])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "create database: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let base = admin.rsplit_once('/').unwrap().0.to_string();
        TestDb {
            url: format!("{base}/{name}"),
            name,
        }
    }

    /// Run SQL and return the first column of the output rows.
    pub fn sql(&self, sql: &str) -> String {
        psql(&self.url, sql)
    }
}

/// Run SQL on any database (also one a test does not own, like a stack's) and return the first
/// column of the output rows; a failed statement fails the test.
pub fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([url, "-qAtX", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                pg_admin_url().as_str(),
                "-qAtc",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .output();
    }
}

/// Polls `probe` every 20 ms until it answers `Some`, and panics naming `what` once `deadline`
/// has passed: the one place a test waits, for a condition rather than for an amount of time.
pub fn eventually<T>(
    what: &str,
    deadline: std::time::Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(
            start.elapsed() < deadline,
            "{what}: not within {deadline:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// `eventually` for async probes: polls every 20 ms, `None` once `deadline` has passed (for the
/// callers whose own assertion says what went wrong).
pub async fn until<T>(
    deadline: std::time::Duration,
    mut probe: impl AsyncFnMut() -> Option<T>,
) -> Option<T> {
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = probe().await {
            return Some(v);
        }
        if start.elapsed() >= deadline {
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// `until`, panicking with `what` when the condition never holds.
pub async fn eventually_async<T>(
    what: &str,
    deadline: std::time::Duration,
    probe: impl AsyncFnMut() -> Option<T>,
) -> T {
    match until(deadline, probe).await {
        Some(v) => v,
        None => panic!("{what}: not within {deadline:?}"),
    }
}

/// Tests wait for conditions (`eventually`, `until`), not for time: a `sleep(` anywhere else in
/// the suite says why on the line above ("About time: …" when time itself is under test,
/// "Pacing …" for a load generator's rhythm).
#[test]
fn tests_wait_for_conditions_not_for_time() {
    let mut stack = vec![repo_root().join("tests/cli")];
    let mut bare = vec![];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            for (i, l) in lines.iter().enumerate() {
                let helper = p.ends_with("support/mod.rs") && l.contains("from_millis(20)");
                let code = l.trim_start();
                let sleeps = code.contains("sleep(")
                    && !code.starts_with("//")
                    && !code.contains("_sleep(")
                    && !code.contains("\"sleep(");
                let said = lines[i.saturating_sub(2)..i]
                    .iter()
                    .any(|c| c.contains("About time") || c.contains("Pacing"));
                if sleeps && !helper && !said {
                    bare.push(format!("{}:{}", p.display(), i + 1));
                }
            }
        }
    }
    assert!(
        bare.is_empty(),
        "sleeps that wait for time, not a condition: {bare:?}"
    );
}

/// Run `cmd` in a process group of its own with stdout and stderr together, bounded by
/// `timeout` (the whole group is killed then): (exit code, output). A killed run is exit 124.
pub fn run_bounded(mut cmd: Command, timeout: Duration) -> (i32, String) {
    use std::os::unix::process::CommandExt;
    let out = tempfile::NamedTempFile::new().unwrap();
    cmd.stdout(out.reopen().unwrap())
        .stderr(out.reopen().unwrap())
        .process_group(0);
    let mut child = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + timeout;
    let code = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.code().unwrap_or(128);
        }
        if std::time::Instant::now() > deadline {
            // The stage's timeout: the whole process group, as Jenkins aborts a stage.
            let _ = Command::new("kill")
                .args(["-KILL", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            break 124;
        }
        // About time: polling a child's exit, not waiting for a condition of the system.
        std::thread::sleep(Duration::from_millis(50));
    };
    (
        code,
        std::fs::read_to_string(out.path()).unwrap_or_default(),
    )
}
