//! The history table and the `schema_version` view engineers query.

use super::Version;
use crate::error::{Error, Result};

pub const TABLE: &str = "deploykit_schema_history";

/// `installed_on` uses `clock_timestamp()`, not `now()`: rows written in one transaction never
/// share a timestamp, so the guide's `ORDER BY installed_on DESC LIMIT 1` stays right. The
/// tools themselves order by `installed_rank`.
pub const CREATE: &str = "
CREATE TABLE IF NOT EXISTS deploykit_schema_history (
    installed_rank  bigserial PRIMARY KEY,
    version         text NOT NULL,
    description     text NOT NULL,
    script          text NOT NULL,
    checksum        text NOT NULL,
    installed_by    text NOT NULL DEFAULT current_user,
    installed_on    timestamptz NOT NULL DEFAULT clock_timestamp(),
    execution_ms    bigint NOT NULL,
    lock_wait_ms    bigint NOT NULL DEFAULT 0,
    retries         integer NOT NULL DEFAULT 0,
    max_blocked_ms  bigint NOT NULL DEFAULT 0,
    success         boolean NOT NULL,
    rolled_back_on  timestamptz
);
-- What happened when success is false (a no-transaction file that stopped part-way).
ALTER TABLE deploykit_schema_history ADD COLUMN IF NOT EXISTS detail text NOT NULL DEFAULT '';
CREATE OR REPLACE VIEW schema_version AS
    SELECT version, description, installed_on, installed_rank, installed_by, execution_ms
    FROM deploykit_schema_history
    WHERE success AND rolled_back_on IS NULL;
";

#[derive(Debug, Clone)]
pub struct Applied {
    pub rank: i64,
    pub version: Version,
    pub description: String,
    pub script: String,
    pub checksum: String,
    pub installed_by: String,
    pub installed_on: String,
    pub execution_ms: i64,
}

fn db_err(e: tokio_postgres::Error) -> Error {
    crate::db::error("PostgreSQL", e)
}

pub async fn exists(c: &tokio_postgres::Client) -> Result<bool> {
    let row = c
        .query_one(
            "SELECT to_regclass('public.deploykit_schema_history') IS NOT NULL",
            &[],
        )
        .await
        .map_err(db_err)?;
    Ok(row.get(0))
}

/// Applied migrations (successful, not rolled back), in install order.
pub async fn applied(c: &tokio_postgres::Client) -> Result<Vec<Applied>> {
    if !exists(c).await? {
        return Ok(vec![]);
    }
    let rows = c
        .query(
            "SELECT installed_rank, version, description, script, checksum, installed_by,
                    to_char(installed_on AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), execution_ms
             FROM deploykit_schema_history WHERE success AND rolled_back_on IS NULL
             ORDER BY installed_rank",
            &[],
        )
        .await
        .map_err(db_err)?;
    rows.iter()
        .map(|r| {
            let v: String = r.get(1);
            Ok(Applied {
                rank: r.get(0),
                version: Version::parse(&v).ok_or_else(|| {
                    Error::Conflict(format!("history row has an unreadable version `{v}`"))
                })?,
                description: r.get(2),
                script: r.get(3),
                checksum: r.get(4),
                installed_by: r.get(5),
                installed_on: r.get(6),
                execution_ms: r.get(7),
            })
        })
        .collect()
}

/// The latest applied version by install rank over successful rows — not by timestamp.
pub async fn current(c: &tokio_postgres::Client) -> Result<Option<Version>> {
    Ok(applied(c)
        .await?
        .into_iter()
        .max_by_key(|a| a.rank)
        .map(|a| a.version))
}
