//! A local stack (scripts/stack) of its own for one test: real HAProxy, trading_sim ×2,
//! Prometheus, a database. Taken down when dropped.

use std::collections::HashMap;

pub struct Stack {
    pub dir: tempfile::TempDir,
    pub env: HashMap<String, String>,
}

impl Stack {
    /// The small stack (one all-roles process per colour): most tests need a stack, not a fleet.
    pub fn up() -> Stack {
        Stack::up_with(&["--fleet", "1"])
    }

    /// A stack started with extra `scripts/stack up` arguments (`--fleet 3,2,2,1,1`).
    pub fn up_with(args: &[&str]) -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("bash")
            .arg(super::repo_root().join("scripts/stack"))
            .args(["up", "--dir", dir.path().join("s").to_str().unwrap()])
            .args(args)
            .env("DEPLOYKIT_BIN_DIR", super::bin_dir())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let env = std::fs::read_to_string(dir.path().join("s/stack.env"))
            .unwrap()
            .lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Stack { dir, env }
    }

    pub fn url(&self, k: &str) -> String {
        self.env[k].clone()
    }

    /// `scripts/stack COMMAND --dir <this stack> ARGS…`; it must succeed; its stdout.
    fn script(&self, command: &str, args: &[&str]) -> String {
        let out = std::process::Command::new("bash")
            .arg(super::repo_root().join("scripts/stack"))
            .args([
                command,
                "--dir",
                self.dir.path().join("s").to_str().unwrap(),
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "scripts/stack {command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Every process id of `color` (one on the small stack, one per host on a fleet).
    pub fn pids(&self, color: &str) -> Vec<String> {
        self.script("pids", &["--color", color])
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Restart one host's service from its current release (`scripts/stack restart`), as its
    /// supervisor would after a crash.
    pub fn restart_host(&self, name: &str) {
        self.script("restart", &["--host", name]);
    }

    /// The process id of a named host of a fleet stack (`trade-blue-02`).
    pub fn host_pid(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("s/{name}.pid")))
            .unwrap()
            .trim()
            .to_string()
    }

    /// The port a named host of the stack listens on (its line in `procs`: colour name role port).
    pub fn host_port(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join("s/procs"))
            .unwrap()
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f[1] == name).then(|| f[3].to_string())
            })
            .unwrap_or_else(|| panic!("no host {name} in procs"))
    }

    /// An admin client of a named host.
    pub fn host_client(&self, name: &str) -> deploykit::contract::Client {
        deploykit::contract::Client::new(
            format!("http://127.0.0.1:{}", self.host_port(name)),
            super::http().with_token(deploykit::redact::Secret::new(
                self.url("DEPLOYKIT_ADMIN_TOKEN"),
            )),
        )
    }

    /// A client of `color`'s service holding the stack's admin token.
    pub fn client(&self, color: &str) -> deploykit::contract::Client {
        deploykit::contract::Client::new(
            self.url(&format!("{}_URL", color.to_uppercase())),
            super::http().with_token(deploykit::redact::Secret::new(
                self.url("DEPLOYKIT_ADMIN_TOKEN"),
            )),
        )
    }

    /// A binary with the stack's environment (config, URLs, token).
    pub fn cmd(&self, tool: &str, args: &[&str]) -> std::process::Command {
        let mut c = std::process::Command::new(super::bin(tool));
        c.args(args)
            .envs(self.env.clone())
            .env("DEPLOYKIT_COLOR", "never");
        c
    }

    /// Run `tool args --format json` off the async runtime: the same [`super::Run`] every
    /// other harness call returns.
    pub async fn run(&self, tool: &str, args: &[&str]) -> super::Run {
        let mut cmd = self.cmd(tool, args);
        cmd.args(["--format", "json"]);
        let junit = super::junit::Capture::attach(&mut cmd, tool, args, &[]);
        let start = std::time::Instant::now();
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        let code = out.status.code().unwrap_or(-1);
        junit.verify(code);
        super::Run {
            code,
            stdout: String::from_utf8_lossy(&out.stdout).to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).to_string(),
            elapsed: start.elapsed(),
        }
    }

    /// `GET /health` of the stack URL named `key` (HAPROXY_URL, BLUE_URL, …).
    pub async fn health(&self, key: &str) -> serde_json::Value {
        reqwest::get(format!("{}/health", self.url(key)))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The colour HAProxy answers from.
    pub async fn live(&self) -> String {
        self.health("HAPROXY_URL").await["color"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .arg(super::repo_root().join("scripts/stack"))
            .args(["down", "--dir", self.dir.path().join("s").to_str().unwrap()])
            .output();
    }
}
