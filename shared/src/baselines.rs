//! Latency baselines with a lifecycle: stored per environment in its PostgreSQL, every accepted
//! one kept (history), the gate reading the newest. A file on a build agent is lost with the
//! agent and says nothing about which release it came from; a row says release, build and age.
//! docs/decisions/0021-latency-baselines-in-postgresql.md.

use crate::config::{Color, Environment};
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::time::Duration;

const CREATE: &str = "
CREATE TABLE IF NOT EXISTS deploy_latency_baseline (
    id           bigserial PRIMARY KEY,
    environment  text NOT NULL,
    color        text NOT NULL,
    release      text NOT NULL DEFAULT '',
    build        text NOT NULL DEFAULT '',
    -- metric → base64 HdrHistogram (V2+DEFLATE), as measure_latency's baseline files hold them.
    metrics      jsonb NOT NULL,
    accepted_at  timestamptz NOT NULL DEFAULT clock_timestamp()
)";

/// One accepted baseline.
#[derive(Debug, Clone)]
pub struct Stored {
    pub id: i64,
    pub color: String,
    pub release: String,
    pub build: String,
    pub accepted_at: chrono::DateTime<chrono::Utc>,
    pub metrics: BTreeMap<String, String>,
}

impl Stored {
    /// "#3 of release 1.1.0 (build jenkins-app-12, blue, accepted 2026-12-04 06:01 UTC, 2 h ago)"
    pub fn describe(&self) -> String {
        let age = chrono::Utc::now() - self.accepted_at;
        let age = if age.num_days() >= 1 {
            format!("{} d ago", age.num_days())
        } else if age.num_hours() >= 1 {
            format!("{} h ago", age.num_hours())
        } else {
            format!("{} min ago", age.num_minutes().max(0))
        };
        let release = if self.release.is_empty() {
            "an unnamed release".to_string()
        } else {
            format!("release {}", self.release)
        };
        let build = if self.build.is_empty() {
            String::new()
        } else {
            format!("build {}, ", self.build)
        };
        format!(
            "#{} of {release} ({build}{}, accepted {}, {age})",
            self.id,
            self.color,
            self.accepted_at.format("%Y-%m-%d %H:%M UTC")
        )
    }
}

async fn client(env: &Environment, timeout: Duration) -> Result<tokio_postgres::Client> {
    let url = env.database_url().map_err(|e| {
        Error::config(
            "config",
            format!("latency baselines are kept in the environment's database: {e}"),
        )
    })?;
    let c = crate::db::connect(&url, timeout).await?;
    c.batch_execute(CREATE)
        .await
        .map_err(|e| crate::db::error("create deploy_latency_baseline", e))?;
    Ok(c)
}

/// The newest accepted baseline of `env_name`, if any.
pub async fn last(env: &Environment, env_name: &str, timeout: Duration) -> Result<Option<Stored>> {
    let c = client(env, timeout).await?;
    let row = c
        .query_opt(
            "SELECT id, color, release, build, extract(epoch FROM accepted_at)::float8, metrics::text
             FROM deploy_latency_baseline
             WHERE environment = $1 ORDER BY id DESC LIMIT 1",
            &[&env_name],
        )
        .await
        .map_err(|e| crate::db::error("read deploy_latency_baseline", e))?;
    row.map(|r| {
        let metrics: String = r.get(5);
        let at: f64 = r.get(4);
        Ok(Stored {
            id: r.get(0),
            color: r.get(1),
            release: r.get(2),
            build: r.get(3),
            accepted_at: chrono::DateTime::from_timestamp_millis((at * 1000.0) as i64)
                .unwrap_or_default(),
            metrics: serde_json::from_str(&metrics).map_err(|e| {
                Error::config(
                    "deploy_latency_baseline",
                    format!("row {} is not a baseline: {e}", r.get::<_, i64>(0)),
                )
            })?,
        })
    })
    .transpose()
}

/// Store `metrics` as `env_name`'s new accepted baseline; the earlier ones stay as history.
pub async fn accept(
    env: &Environment,
    env_name: &str,
    timeout: Duration,
    color: Color,
    release: &str,
    build: &str,
    metrics: &BTreeMap<String, String>,
) -> Result<i64> {
    let c = client(env, timeout).await?;
    let json = serde_json::to_string(metrics).expect("json");
    let row = c
        .query_one(
            "INSERT INTO deploy_latency_baseline (environment, color, release, build, metrics)
             VALUES ($1, $2, $3, $4, $5::text::jsonb) RETURNING id",
            &[&env_name, &color.to_string(), &release, &build, &json],
        )
        .await
        .map_err(|e| crate::db::error("write deploy_latency_baseline", e))?;
    Ok(row.get(0))
}
