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

    /// `…/metrics/job/deploykit/environment@base64/…/tool@base64/…/deployment_id@base64/…`:
    /// every value base64url-encoded, so a `/` or `+` in an id cannot split the path.
    pub fn url(&self, base: &str) -> String {
        let b = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let b = |s: &str| if s.is_empty() { "=".to_string() } else { b(s) };
        format!(
            "{}/metrics/job/deploykit/environment@base64/{}/tool@base64/{}/deployment_id@base64/{}",
            base.trim_end_matches('/'),
            b(&self.environment),
            b(&self.tool),
            b(&self.deployment_id)
        )
    }
}

/// Push `outcome` to `base`; `Err` says why not (for a warning).
pub async fn push(base: &str, outcome: &Outcome) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .timeout(PUSH_TIMEOUT)
        .build()
        .map_err(|e| e.to_string())?;
    let resp = client
        .put(outcome.url(base))
        .header("content-type", "text/plain; version=0.0.4")
        .body(outcome.body())
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
            "http://pg:9091/metrics/job/deploykit/environment@base64/cHJvZHVjdGlvbg/tool@base64/ZGJfbWlncmF0ZQ/deployment_id@base64/djMuMi4yKzQx"
        );
    }
}
