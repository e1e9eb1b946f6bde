//! Deployment metrics for Prometheus (guide §9, issue 23): every run of a tool that changes an
//! environment pushes its outcome to the environment's Pushgateway (`pushgateway = URL`), one
//! group per tool and deployment id, so Prometheus holds deployments by result, their durations
//! and rollbacks after the pipeline has ended. A push is bounded (2 s) and its failure is a
//! warning in the log and the report, never a failed deploy. Decision 0027.

use crate::env_vars::EnvVars;
use base64::Engine;
use std::time::Duration;

/// How long a push may take: the deploy has already happened; its metric must not hold it up.
pub const PUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// One run's outcome, as pushed.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub tool: String,
    /// What the run did (`cutover`, `rollback`, `maintenance_on`…; [`crate::cli::Tool::action`]):
    /// rollbacks are counted and alerted on by it.
    pub action: String,
    pub environment: String,
    pub deployment_id: String,
    pub duration: Duration,
    pub exit_code: u8,
    pub finished_unix: f64,
}

/// The pipeline run's id (`DEPLOYKIT_DEPLOYMENT_ID`, e.g. `v3.2.2+41`: version and build), else
/// the CI build (`DEPLOYKIT_BUILD`), else `manual`.
pub fn deployment_id() -> String {
    [EnvVars::DEPLOYMENT_ID, EnvVars::BUILD]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()))
        .unwrap_or_else(|| "manual".to_string())
}

impl Outcome {
    pub fn result(&self) -> &'static str {
        match self.exit_code {
            crate::exit::OK => "success",
            crate::exit::SIGINT | crate::exit::SIGTERM => "interrupted",
            _ => "failure",
        }
    }

    /// The Prometheus text exposition of the run (the group's labels come from the URL).
    pub fn body(&self) -> String {
        let r = self.result();
        format!(
            "# TYPE deploykit_run_duration_seconds gauge\n\
             deploykit_run_duration_seconds{{result=\"{r}\"}} {:.3}\n\
             # TYPE deploykit_run_success gauge\n\
             deploykit_run_success {}\n\
             # TYPE deploykit_run_exit_code gauge\n\
             deploykit_run_exit_code {}\n\
             # TYPE deploykit_run_finished_timestamp_seconds gauge\n\
             deploykit_run_finished_timestamp_seconds {:.3}\n",
            self.duration.as_secs_f64(),
            u8::from(r == "success"),
            self.exit_code,
            self.finished_unix
        )
    }

    /// `…/metrics/job/deploykit/environment@base64/…/tool@base64/…/action@base64/…/deployment_id@base64/…`.
    pub fn url(&self, base: &str) -> String {
        group_url(
            base,
            "deploykit",
            &[
                ("environment", &self.environment),
                ("tool", &self.tool),
                ("action", &self.action),
                ("deployment_id", &self.deployment_id),
            ],
        )
    }
}

/// A Pushgateway group's URL: every label value base64url-encoded, so a `/` or `+` in an id
/// cannot split the path.
fn group_url(base: &str, job: &str, labels: &[(&str, &str)]) -> String {
    let b = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let b = |s: &str| if s.is_empty() { "=".to_string() } else { b(s) };
    let mut url = format!("{}/metrics/job/{job}", base.trim_end_matches('/'));
    for (k, v) in labels {
        url.push_str(&format!("/{k}@base64/{}", b(v)));
    }
    url
}

/// What an environment is left in after a run — the facts a standing alert needs that no
/// outcome carries: a colour in maintenance, an isolated server, the live colour and version.
/// Pushed to `job="deploykit_state"`, one group per fact's subject (not per deployment), so the
/// run that ends the state replaces the one that began it whatever its deployment id.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    /// `maintenance`, `isolation` or `live`.
    pub kind: &'static str,
    /// The group's own label (`color`, `server`), if the fact has a subject.
    pub subject: Option<(&'static str, String)>,
    /// `metric{labels} value` lines (no TYPE lines: gauges).
    pub lines: Vec<String>,
}

impl State {
    /// `color` of the environment is (or is no longer) in maintenance.
    pub fn maintenance(color: &str, on: bool) -> State {
        State {
            kind: "maintenance",
            subject: Some(("color", color.to_string())),
            lines: vec![format!("deploykit_maintenance_enabled {}", u8::from(on))],
        }
    }

    /// `server` is (or is no longer) isolated.
    pub fn isolation(server: &str, on: bool) -> State {
        State {
            kind: "isolation",
            subject: Some(("server", server.to_string())),
            lines: vec![format!("deploykit_server_isolated {}", u8::from(on))],
        }
    }

    /// `color` is live with `version` (`unknown` when the run did not name one).
    pub fn live(color: &str, version: &str) -> State {
        State {
            kind: "live",
            subject: None,
            lines: vec![format!(
                "deploykit_live_version_info{{color=\"{}\",version=\"{}\",deployment_id=\"{}\"}} 1",
                escape(color),
                escape(version),
                escape(&deployment_id())
            )],
        }
    }

    pub fn body(&self, changed_unix: f64) -> String {
        let mut out = self.lines.join("\n");
        out.push_str(&format!(
            "\ndeploykit_state_changed_timestamp_seconds {changed_unix:.3}\n"
        ));
        out
    }

    pub fn url(&self, base: &str, environment: &str) -> String {
        let mut labels = vec![("environment", environment), ("kind", self.kind)];
        if let Some((k, v)) = &self.subject {
            labels.push((k, v.as_str()));
        }
        group_url(base, "deploykit_state", &labels)
    }
}

/// A label value in the text exposition format.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Push `outcome` to `base`; `Err` says why not (for a warning).
pub async fn push(base: &str, outcome: &Outcome) -> Result<(), String> {
    put(&outcome.url(base), outcome.body()).await
}

/// Push `state` of `environment` to `base`; `Err` says why not (for a warning).
pub async fn push_state(base: &str, environment: &str, state: &State) -> Result<(), String> {
    let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
    put(&state.url(base, environment), state.body(now)).await
}

async fn put(url: &str, body: String) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .timeout(PUSH_TIMEOUT)
        .build()
        .map_err(|e| e.to_string())?;
    let resp = client
        .put(url)
        .header("content-type", "text/plain; version=0.0.4")
        .body(body)
        .send()
        .await
        .map_err(|e| {
            // reqwest's own line names only the URL; the cause says what failed.
            let mut m = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(c) = src {
                m.push_str(&format!(": {c}"));
                src = c.source();
            }
            m
        })?;
    if !resp.status().is_success() {
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        return Err(format!("{status}: {}", text.lines().next().unwrap_or("")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_and_url() {
        let o = Outcome {
            tool: "db_migrate".into(),
            action: "db_migrate".into(),
            environment: "production".into(),
            deployment_id: "v3.2.2+41".into(),
            duration: Duration::from_millis(1500),
            exit_code: 1,
            finished_unix: 1_700_000_000.0,
        };
        assert!(
            o.body()
                .contains("deploykit_run_duration_seconds{result=\"failure\"} 1.500\n")
        );
        assert!(o.body().contains("deploykit_run_success 0\n"));
        assert_eq!(
            o.url("http://pg:9091/"),
            "http://pg:9091/metrics/job/deploykit/environment@base64/cHJvZHVjdGlvbg/tool@base64/ZGJfbWlncmF0ZQ/action@base64/ZGJfbWlncmF0ZQ/deployment_id@base64/djMuMi4yKzQx"
        );
    }

    #[test]
    fn state_groups_are_per_subject() {
        let s = State::maintenance("blue", true);
        assert_eq!(
            s.url("http://pg:9091", "production"),
            "http://pg:9091/metrics/job/deploykit_state/environment@base64/cHJvZHVjdGlvbg/kind@base64/bWFpbnRlbmFuY2U/color@base64/Ymx1ZQ"
        );
        assert_eq!(
            s.body(1.5),
            "deploykit_maintenance_enabled 1\ndeploykit_state_changed_timestamp_seconds 1.500\n"
        );
        let l = State::live("green", "3.2.\"2");
        assert!(
            l.lines[0].contains("version=\"3.2.\\\"2\""),
            "{}",
            l.lines[0]
        );
    }
}
