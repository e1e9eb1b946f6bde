//! The local alert receivers (scripts/alert-receiver.py: PagerDuty and Slack over HTTP, email
//! over SMTP) for one test, and what they got.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Receivers {
    pub http: u16,
    pub smtp: u16,
    pub out: tempfile::NamedTempFile,
    child: Child,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Receivers {
    pub fn start() -> Receivers {
        let (http, smtp) = (free_port(), free_port());
        let out = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new("python3")
            .arg(super::repo_root().join("scripts/alert-receiver.py"))
            .args([
                "--http-port",
                &http.to_string(),
                "--smtp-port",
                &smtp.to_string(),
            ])
            .arg("--out")
            .arg(out.path())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        super::eventually("receivers listening", Duration::from_secs(20), || {
            (std::net::TcpStream::connect(("127.0.0.1", http)).is_ok()
                && std::net::TcpStream::connect(("127.0.0.1", smtp)).is_ok())
            .then_some(())
        });
        Receivers {
            http,
            smtp,
            out,
            child,
        }
    }

    /// Every message received so far, oldest first.
    pub fn got(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.out.path())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The messages `receiver` (pagerduty, slack, email) got.
    pub fn of(&self, receiver: &str) -> Vec<serde_json::Value> {
        self.got()
            .into_iter()
            .filter(|m| m["receiver"] == receiver)
            .collect()
    }
}

impl Drop for Receivers {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
