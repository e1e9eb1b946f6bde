//! The deploy journal: each step of a cutover (or rollback) is written durably before and after
//! it runs — in the environment's PostgreSQL (`deploy_journal`) when one is configured, else in a
//! local JSON-lines file — so a crashed run can be resumed or reversed from any step. It also
//! holds the per-environment lock that refuses a second cutover (exit 5).

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::PathBuf;

const CREATE: &str = "
CREATE TABLE IF NOT EXISTS deploy_journal (
    id           bigserial PRIMARY KEY,
    run_id       text NOT NULL,
    environment  text NOT NULL,
    action       text NOT NULL,
    from_color   text NOT NULL,
    to_color     text NOT NULL,
    step         text NOT NULL,
    state        text NOT NULL,
    detail       text NOT NULL DEFAULT '',
    at           timestamptz NOT NULL DEFAULT clock_timestamp()
)";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    pub run_id: String,
    pub environment: String,
    pub action: String,
    pub from_color: String,
    pub to_color: String,
    pub step: String,
    /// started | done | failed | finished
    pub state: String,
    pub detail: String,
    #[serde(default)]
    pub at: String,
}

pub enum Journal {
    Pg(tokio_postgres::Client),
    File { path: PathBuf, lock: std::fs::File },
}

fn db_err(e: tokio_postgres::Error) -> Error {
    Error::unreachable(
        "PostgreSQL (deploy journal)",
        crate::redact::redact(&e.to_string()),
    )
}

fn lock_key(env: &str) -> i64 {
    // Stable per environment, distinct from db_migrate's key.
    let h = crate::migrate::sha256_hex(format!("deploykit cutover {env}").as_bytes());
    i64::from_str_radix(&h[..15], 16).unwrap_or(42)
}

impl Journal {
    /// Open the journal and take the environment's cutover lock (exit 5 if another run has it).
    pub async fn open(
        env_name: &str,
        env: &crate::config::Environment,
        timeout: std::time::Duration,
        file_dir: PathBuf,
    ) -> Result<Journal> {
        if env.database.is_some()
            && let Ok(url) = env.database_url()
        {
            let c = crate::db::connect(&url, timeout).await?;
            return Journal::open_pg(c, env_name).await;
        }
        std::fs::create_dir_all(&file_dir)
            .map_err(|e| Error::io("create journal directory", &file_dir, e))?;
        let path = file_dir.join(format!("journal-{env_name}.jsonl"));
        let lock_path = file_dir.join(format!("journal-{env_name}.lock"));
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io("open journal lock", &lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => Ok(Journal::File { path, lock }),
            Err(_) => Err(Error::Conflict(format!(
                "another cutover on {env_name} holds {}",
                lock_path.display()
            ))),
        }
    }

    /// The PostgreSQL journal on an open connection: create the table if needed, take the lock.
    pub async fn open_pg(c: tokio_postgres::Client, env_name: &str) -> Result<Journal> {
        c.batch_execute(CREATE).await.map_err(db_err)?;
        let got: bool = c
            .query_one("SELECT pg_try_advisory_lock($1)", &[&lock_key(env_name)])
            .await
            .map_err(db_err)?
            .get(0);
        if !got {
            return Err(Error::Conflict(format!(
                "another cutover on {env_name} holds the lock (deploy_journal); wait for it or check `cutover status`"
            )));
        }
        Ok(Journal::Pg(c))
    }

    pub async fn write(&self, e: &Entry) -> Result<()> {
        match self {
            Journal::Pg(c) => {
                c.execute(
                    // `at` empty (every tool): the database's clock; set: history being imported.
                    "INSERT INTO deploy_journal (run_id, environment, action, from_color, to_color, step, state, detail, at)
                     VALUES ($1,$2,$3,$4,$5,$6,$7,$8, COALESCE(NULLIF($9, '')::timestamptz, clock_timestamp()))",
                    &[&e.run_id, &e.environment, &e.action, &e.from_color, &e.to_color, &e.step, &e.state, &e.detail, &e.at],
                )
                .await
                .map_err(db_err)?;
            }
            Journal::File { path, .. } => {
                let mut e = e.clone();
                e.at = chrono::Utc::now().to_rfc3339();
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|er| Error::io("open journal", path, er))?;
                writeln!(f, "{}", serde_json::to_string(&e).expect("json"))
                    .map_err(|er| Error::io("write journal", path, er))?;
                f.sync_all()
                    .map_err(|er| Error::io("sync journal", path, er))?;
            }
        }
        Ok(())
    }

    /// Every entry of the environment's latest run of one of `actions` (cutover and rollback
    /// share a history; strategy_rollout has its own).
    pub async fn last_run(&self, env_name: &str, actions: &[&str]) -> Result<Vec<Entry>> {
        match self {
            // The database picks the run: the journal grows with every deploy.
            Journal::Pg(c) => pg_entries(c, env_name, Some(actions)).await,
            Journal::File { path, .. } => {
                let all = file_entries(path, env_name);
                let last = all
                    .iter()
                    .rev()
                    .find(|e| actions.contains(&e.action.as_str()))
                    .map(|e| e.run_id.clone());
                Ok(all
                    .into_iter()
                    .filter(|e| Some(&e.run_id) == last.as_ref())
                    .collect())
            }
        }
    }

    /// Every entry of the environment, oldest first.
    pub async fn entries(&self, env_name: &str) -> Result<Vec<Entry>> {
        Ok(match self {
            Journal::Pg(c) => pg_entries(c, env_name, None).await?,
            Journal::File { path, .. } => file_entries(path, env_name),
        })
    }

    /// Every entry of the environment without taking the lock (a report may read while a
    /// cutover runs) and without creating anything: no journal yet means no entries.
    pub async fn read(
        env_name: &str,
        env: &crate::config::Environment,
        timeout: std::time::Duration,
        file_dir: &std::path::Path,
    ) -> Result<Vec<Entry>> {
        if env.database.is_some()
            && let Ok(url) = env.database_url()
        {
            let c = crate::db::connect(&url, timeout).await?;
            let exists: bool = c
                .query_one("SELECT to_regclass('deploy_journal') IS NOT NULL", &[])
                .await
                .map_err(db_err)?
                .get(0);
            return if exists {
                pg_entries(&c, env_name, None).await
            } else {
                Ok(vec![])
            };
        }
        Ok(file_entries(
            &file_dir.join(format!("journal-{env_name}.jsonl")),
            env_name,
        ))
    }

    pub fn release(self) {
        if let Journal::File { lock, .. } = &self {
            let _ = lock.unlock();
        }
        // The PG advisory lock goes with the session.
    }
}

/// Every entry of the environment, or with `last_of` only the latest run that has an entry of
/// one of those actions (all of that run's entries, whatever their action).
async fn pg_entries(
    c: &tokio_postgres::Client,
    env_name: &str,
    last_of: Option<&[&str]>,
) -> Result<Vec<Entry>> {
    let actions: Vec<String> = last_of
        .unwrap_or_default()
        .iter()
        .map(|a| a.to_string())
        .collect();
    // RFC 3339 in UTC, the same form the file journal writes.
    Ok(c.query(
        "SELECT run_id, environment, action, from_color, to_color, step, state, detail,
                to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')
         FROM deploy_journal
         WHERE environment = $1
           AND (NOT $3 OR run_id = (SELECT run_id FROM deploy_journal
                                    WHERE environment = $1 AND action = ANY($2)
                                    ORDER BY id DESC LIMIT 1))
         ORDER BY id",
        &[&env_name, &actions, &last_of.is_some()],
    )
    .await
    .map_err(db_err)?
    .iter()
    .map(|r| Entry {
        run_id: r.get(0),
        environment: r.get(1),
        action: r.get(2),
        from_color: r.get(3),
        to_color: r.get(4),
        step: r.get(5),
        state: r.get(6),
        detail: r.get(7),
        at: r.get(8),
    })
    .collect())
}

fn file_entries(path: &std::path::Path, env_name: &str) -> Vec<Entry> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|e: &Entry| e.environment == env_name)
        .collect()
}
