//! Applying and rolling back: advisory lock, one transaction per migration with its history
//! row, lock_timeout/statement_timeout on every step, retry with backoff on lock timeout, and
//! a sampler that measures how long the migration made other sessions wait.

use super::history::{self, Applied};
use super::{Migration, Script, Version, line_of, statements};
use crate::error::{Error, Result};
use crate::report::Check;
use crate::telemetry::Every;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

/// Advisory lock key: "deploykit migrate".
pub const LOCK_KEY: i64 = 0x0064_6b6d_6967_7261;
const SAMPLE_EVERY: Duration = Duration::from_millis(50);

#[derive(Debug, Clone)]
pub struct Limits {
    pub lock_timeout: Duration,
    pub statement_timeout: Duration,
    pub max_retries: u32,
    /// How long to wait for another run's migration lock.
    pub lock_wait: Duration,
    /// SIGINT/SIGTERM: a batched step stops between batches (its progress saved) and a shadow
    /// change aborts.
    pub cancel: CancellationToken,
}

/// A step's history change: the SQL and its text parameters, from the step's stats.
pub type Record<'a> = dyn Fn(&Stats) -> (String, Vec<String>) + Sync + 'a;

fn db_err(e: tokio_postgres::Error) -> Error {
    crate::db::error("PostgreSQL", e)
}

/// Take the migration lock. `no_wait`: exit 5 at once if another run holds it; otherwise
/// poll (never block inside a transaction), logging who holds it every 5 s.
pub async fn lock(
    c: &Client,
    no_wait: bool,
    wait: Duration,
    cancel: &CancellationToken,
) -> Result<()> {
    let start = Instant::now();
    let mut note = Every::new(Duration::from_secs(5));
    loop {
        let got: bool = c
            .query_one("SELECT pg_try_advisory_lock($1)", &[&LOCK_KEY])
            .await
            .map_err(db_err)?
            .get(0);
        if got {
            return Ok(());
        }
        let holder: Option<i32> = c
            .query_opt(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
                 AND ((classid::bigint << 32) | objid::bigint) = $1 LIMIT 1",
                &[&LOCK_KEY],
            )
            .await
            .map_err(db_err)?
            .map(|r| r.get(0));
        let who = holder.map_or("another session".to_string(), |p| {
            format!("PostgreSQL pid {p}")
        });
        if no_wait {
            return Err(Error::Conflict(format!(
                "another db_migrate run holds the migration lock ({who})"
            )));
        }
        if start.elapsed() >= wait {
            return Err(Error::Conflict(format!(
                "the migration lock is still held by {who} after {wait:?}"
            )));
        }
        if note.due() {
            tracing::info!(
                "waiting for the migration lock held by {who} ({}s so far)",
                start.elapsed().as_secs()
            );
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = cancel.cancelled() => return Err(Error::Interrupted(crate::error::Signal::Int)),
        }
    }
}

/// Release the lock; a `false` answer means it was lost (e.g. behind a transaction pooler).
pub async fn unlock(c: &Client) -> Result<()> {
    let ok: bool = c
        .query_one("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await
        .map_err(db_err)?
        .get(0);
    if !ok {
        tracing::warn!(
            "the migration lock was not held at release: is a transaction pooler (PgBouncer) in between?"
        );
    }
    Ok(())
}

/// Our history table, unless the database's history is Flyway's (adopted as it is).
pub async fn ensure_history(c: &Client, store: &history::Store) -> Result<()> {
    if store.is_flyway() {
        return Ok(());
    }
    c.batch_execute(history::CREATE).await.map_err(db_err)
}

/// The session's backend pid (for the lock sampler); ask once per connection.
pub async fn backend_pid(c: &Client) -> Result<i32> {
    Ok(c.query_one("SELECT pg_backend_pid()", &[])
        .await
        .map_err(db_err)?
        .get(0))
}

/// What one migration step cost.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Stats {
    pub execution_ms: i64,
    pub lock_wait_ms: i64,
    pub retries: u32,
    /// Longest time another session waited on a lock this migration held or queued for.
    pub max_blocked_ms: i64,
    /// A batched step: rows its batches touched, and how many batches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batches: Option<i64>,
}

/// Samples pg_locks from a second connection while a step runs.
pub(crate) struct Sampler {
    stop: CancellationToken,
    waited_ms: Arc<AtomicI64>,
    blocked_ms: Arc<AtomicI64>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    pub(crate) fn start(monitor: Arc<Client>, pid: i32) -> Sampler {
        let stop = CancellationToken::new();
        let waited_ms = Arc::new(AtomicI64::new(0));
        let blocked_ms = Arc::new(AtomicI64::new(0));
        let (s, w, b) = (stop.clone(), waited_ms.clone(), blocked_ms.clone());
        let task = tokio::spawn(async move {
            // First sample after one interval: a fast step costs the server nothing extra.
            let mut tick =
                tokio::time::interval_at(tokio::time::Instant::now() + SAMPLE_EVERY, SAMPLE_EVERY);
            loop {
                tokio::select! {
                    _ = s.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let row = monitor
                    .query_one(
                        "SELECT
                           (SELECT count(*) FROM pg_locks WHERE pid = $1 AND NOT granted),
                           (SELECT coalesce(max(extract(epoch FROM clock_timestamp() - waitstart) * 1000), 0)::bigint
                              FROM pg_locks WHERE NOT granted AND pid <> $1 AND $1 = ANY(pg_blocking_pids(pid)))",
                        &[&pid],
                    )
                    .await;
                if let Ok(r) = row {
                    let waiting: i64 = r.get(0);
                    if waiting > 0 {
                        w.fetch_add(SAMPLE_EVERY.as_millis() as i64, Ordering::Relaxed);
                    }
                    let blocked: i64 = r.get(1);
                    b.fetch_max(blocked, Ordering::Relaxed);
                }
            }
        });
        Sampler {
            stop,
            waited_ms,
            blocked_ms,
            task,
        }
    }

    pub(crate) async fn finish(self) -> (i64, i64) {
        self.stop.cancel();
        let _ = self.task.await;
        (
            self.waited_ms.load(Ordering::Relaxed),
            self.blocked_ms.load(Ordering::Relaxed),
        )
    }
}

/// Why a step failed.
#[derive(Debug)]
pub enum StepError {
    /// The SQL is bad or a constraint failed: names file and line. Nothing was applied.
    Sql(String),
    /// Still blocked after every retry.
    LockTimeout(String),
    /// A no-transaction file failed after some of its statements ran: which ones, by line.
    PartlyApplied(String),
    /// A batched step stopped part-way with its progress saved: migrate again continues it.
    Paused(String),
    Db(Error),
}

/// `file:line: message (SQLSTATE)`; `offset_line` lines of the file precede `sql`, and
/// `prefix_lines` lines of `sql` are ours, not the file's.
fn describe(
    script: &Script,
    sql: &str,
    e: &tokio_postgres::Error,
    offset_line: usize,
    prefix_lines: usize,
) -> String {
    match e.as_db_error() {
        Some(d) => {
            let line = match d.position() {
                Some(tokio_postgres::error::ErrorPosition::Original(p)) => {
                    line_of(sql, *p as usize)
                        .saturating_sub(prefix_lines)
                        .max(1)
                        + offset_line
                }
                // No position (e.g. a constraint failed): the statement's first line of code.
                _ => {
                    let lead = sql
                        .lines()
                        .take_while(|l| l.trim().is_empty() || l.trim_start().starts_with("--"))
                        .count();
                    offset_line + lead + 1
                }
            };
            format!(
                "{}:{line}: {} (SQLSTATE {})",
                script.path.display(),
                d.message(),
                d.code().code()
            )
        }
        None => format!("{}: {}", script.path.display(), crate::db::describe(e)),
    }
}

pub(crate) fn is_lock_timeout(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE)
}

pub(crate) fn timeouts_sql(l: &Limits, local: bool) -> String {
    let scope = if local { "LOCAL " } else { "" };
    format!(
        "SET {scope}lock_timeout = '{}ms'; SET {scope}statement_timeout = '{}ms'",
        l.lock_timeout.as_millis(),
        l.statement_timeout.as_millis()
    )
}

/// Run `script` and record it with `record` (the history change), in one transaction — or
/// statement by statement for `no-transaction` files — retrying on lock timeout.
pub async fn step(
    c: &mut Client,
    pid: i32,
    monitor: Arc<Client>,
    script: &Script,
    limits: &Limits,
    record: &Record<'_>,
) -> std::result::Result<Stats, StepError> {
    if let Some(online) = &script.online {
        return super::online::step(c, pid, monitor, script, online, limits, record).await;
    }
    let mut stats = Stats::default();
    let started = Instant::now();
    loop {
        let attempt = Instant::now();
        let sampler = Sampler::start(monitor.clone(), pid);
        let result = if script.no_transaction() {
            run_outside_tx(c, script, limits).await
        } else {
            run_in_tx(c, script, limits, &stats, started, record).await
        };
        let (waited, blocked) = sampler.finish().await;
        stats.max_blocked_ms = stats.max_blocked_ms.max(blocked);
        match result {
            Ok(()) => {
                stats.lock_wait_ms += waited;
                stats.execution_ms = started.elapsed().as_millis() as i64;
                if script.no_transaction() {
                    let (sql, params) = record(&stats);
                    execute(&*c, &sql, &params)
                        .await
                        .map_err(|e| StepError::Db(db_err(e)))?;
                }
                return Ok(stats);
            }
            Err(Attempt::LockTimeout(msg)) => {
                stats.lock_wait_ms += attempt.elapsed().as_millis() as i64;
                if stats.retries >= limits.max_retries {
                    return Err(StepError::LockTimeout(format!(
                        "{msg}; gave up after {} retries",
                        stats.retries
                    )));
                }
                stats.retries += 1;
                let backoff = Duration::from_millis(200 * (1 << stats.retries.min(5)));
                tracing::warn!(
                    "{}: lock not granted within {:?}, retry {} of {} in {backoff:?}",
                    script.file_name(),
                    limits.lock_timeout,
                    stats.retries,
                    limits.max_retries
                );
                tokio::time::sleep(backoff).await;
            }
            Err(Attempt::Sql(m)) => return Err(StepError::Sql(m)),
            Err(Attempt::PartlyApplied(m)) => return Err(StepError::PartlyApplied(m)),
            Err(Attempt::Db(e)) => return Err(StepError::Db(e)),
        }
    }
}

enum Attempt {
    LockTimeout(String),
    Sql(String),
    PartlyApplied(String),
    Db(Error),
}

/// `sql` with text parameters, on a client or in a transaction.
pub(crate) async fn execute(
    c: &impl tokio_postgres::GenericClient,
    sql: &str,
    params: &[String],
) -> std::result::Result<u64, tokio_postgres::Error> {
    let p: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
        .iter()
        .map(|s| s as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect();
    c.execute(sql, &p).await
}

async fn run_in_tx(
    c: &mut Client,
    script: &Script,
    limits: &Limits,
    stats: &Stats,
    started: Instant,
    record: &Record<'_>,
) -> std::result::Result<(), Attempt> {
    let tx = c.transaction().await.map_err(|e| Attempt::Db(db_err(e)))?;
    // Timeouts and script in one round trip; the prefix is exactly one line, which error
    // positions skip when they are mapped back to the file.
    let batch = format!("{};\n{}", timeouts_sql(limits, true), script.sql);
    if let Err(e) = tx.batch_execute(&batch).await {
        let msg = describe(script, &batch, &e, 0, 1);
        // Dropping `tx` rolls back: history stays as it was.
        return Err(if is_lock_timeout(&e) {
            Attempt::LockTimeout(msg)
        } else {
            Attempt::Sql(msg)
        });
    }
    let mut s = stats.clone();
    s.execution_ms = started.elapsed().as_millis() as i64;
    let (sql, params) = record(&s);
    execute(&tx, &sql, &params)
        .await
        .map_err(|e| Attempt::Db(db_err(e)))?;
    tx.commit().await.map_err(|e| Attempt::Db(db_err(e)))
}

async fn run_outside_tx(
    c: &mut Client,
    script: &Script,
    limits: &Limits,
) -> std::result::Result<(), Attempt> {
    c.batch_execute(&timeouts_sql(limits, false))
        .await
        .map_err(|e| Attempt::Db(db_err(e)))?;
    let result = async {
        let all = statements(&script.sql);
        let total = all.len();
        for (k, st) in all.iter().enumerate() {
            if let Err(e) = c.batch_execute(&st.sql).await {
                let msg = describe(script, &st.sql, &e, st.line - 1, 0);
                drop_invalid_index(c, &st.sql).await;
                if is_lock_timeout(&e) {
                    return Err(Attempt::LockTimeout(msg));
                }
                // Outside a transaction the statements before this one stay applied: say so,
                // one by one, never "nothing was applied".
                return Err(if k == 0 {
                    Attempt::Sql(format!(
                        "{msg}; statement 1 of {total} failed, nothing of this migration was applied"
                    ))
                } else {
                    let ran: Vec<String> = all[..k]
                        .iter()
                        .map(|s| format!("line {}", s.line))
                        .collect();
                    Attempt::PartlyApplied(format!(
                        "{msg}; statement {} of {total} failed; statement(s) 1–{k} ({}) ran and stay applied (this file runs outside a transaction), statements {}–{total} did not run",
                        k + 1,
                        ran.join(", "),
                        k + 1
                    ))
                });
            }
        }
        Ok(())
    }
    .await;
    let _ = c
        .batch_execute("RESET lock_timeout; RESET statement_timeout")
        .await;
    result
}

/// A failed `CREATE INDEX CONCURRENTLY` leaves an INVALID index behind; drop it so a retry can
/// build it again.
async fn drop_invalid_index(c: &Client, stmt: &str) {
    static RE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"(?is)^\s*CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+(?:IF\s+NOT\s+EXISTS\s+)?([A-Za-z_][A-Za-z0-9_.]*)").unwrap()
    });
    let code = super::strip_comments(stmt);
    let Some(name) = RE.captures(&code).map(|c| c[1].to_string()) else {
        return;
    };
    let invalid = c
        .query_opt(
            "SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE NOT i.indisvalid AND c.relname = $1",
            &[&name.rsplit('.').next().unwrap_or(&name)],
        )
        .await;
    if let Ok(Some(_)) = invalid {
        match c
            .batch_execute(&format!("DROP INDEX CONCURRENTLY IF EXISTS {name}"))
            .await
        {
            Ok(()) => tracing::warn!(
                "dropped the INVALID index {name} left by the failed concurrent build"
            ),
            Err(e) => tracing::error!("could not drop INVALID index {name}: {e}"),
        }
    }
}

/// The history row of a successful step: ours, or on an adopted Flyway history the row Flyway
/// itself writes (next installed_rank, its description and checksum, type `SQL`). `version`
/// None: a repeatable migration (ours: empty; Flyway's: NULL).
fn record<'a>(
    version: Option<&'a Version>,
    description: &'a str,
    script: &'a Script,
    store: &'a history::Store,
) -> impl Fn(&Stats) -> (String, Vec<String>) + Sync + 'a {
    move |s: &Stats| {
        let version = version.map(Version::to_string).unwrap_or_default();
        if store.is_flyway() {
            return (
                flyway_insert(&store.table(), s.execution_ms, true),
                vec![
                    version,
                    history::flyway_description(description),
                    script.file_name(),
                    script.flyway_checksum.to_string(),
                ],
            );
        }
        (
            format!(
                "INSERT INTO deploykit_schema_history
                   (version, description, script, checksum, execution_ms, lock_wait_ms, retries, max_blocked_ms, success)
                 VALUES ($1, $2, $3, $4, {}, {}, {}, {}, true)",
                s.execution_ms, s.lock_wait_ms, s.retries, s.max_blocked_ms
            ),
            vec![version, description.to_string(), script.file_name(), script.checksum.clone()],
        )
    }
}

/// Flyway's own history insert into table `t`; parameters: version (`''` → NULL), description,
/// script, checksum (as text).
fn flyway_insert(t: &str, execution_ms: i64, success: bool) -> String {
    format!(
        "INSERT INTO {t}
           (installed_rank, version, description, type, script, checksum, installed_by, execution_time, success)
         VALUES ((SELECT coalesce(max(installed_rank), 0) + 1 FROM {t}), NULLIF($1, ''), $2, 'SQL', $3, $4::text::int, current_user, {execution_ms}, {success})"
    )
}

/// The history insert for an applied migration.
pub fn record_apply<'a>(
    m: &'a Migration,
    store: &'a history::Store,
) -> impl Fn(&Stats) -> (String, Vec<String>) + Sync + 'a {
    record(Some(&m.version), &m.description, &m.up, store)
}

/// The history insert for an applied repeatable migration: no version, its checksum, so the
/// next run re-applies it only when the file changes.
pub fn record_repeatable<'a>(
    r: &'a super::Repeatable,
    store: &'a history::Store,
) -> impl Fn(&Stats) -> (String, Vec<String>) + Sync + 'a {
    record(None, &r.description, &r.script, store)
}

/// A failed history row (`success = false`, never in `schema_version`) for a no-transaction
/// migration that stopped part-way: the history says what the database holds.
pub async fn record_failure(
    c: &Client,
    store: &history::Store,
    m: &Migration,
    detail: &str,
) -> Result<()> {
    if store.is_flyway() {
        // Flyway's own failed row: its `repair` (or ours) removes it once the database is fixed.
        tracing::error!("{}: {}", m.up.file_name(), crate::redact::redact(detail));
        c.execute(
            &flyway_insert(&store.table(), 0, false),
            &[
                &m.version.to_string(),
                &history::flyway_description(&m.description),
                &m.up.file_name(),
                &m.up.flyway_checksum.to_string(),
            ],
        )
        .await
        .map_err(db_err)?;
        return Ok(());
    }
    c.execute(
        "INSERT INTO deploykit_schema_history
           (version, description, script, checksum, execution_ms, success, detail)
         VALUES ($1, $2, $3, $4, 0, false, $5)",
        &[
            &m.version.to_string(),
            &m.description,
            &m.up.file_name(),
            &m.up.checksum,
            &crate::redact::redact(detail),
        ],
    )
    .await
    .map_err(db_err)?;
    Ok(())
}

/// The history update for a rolled-back migration.
pub fn record_rollback(a: &Applied) -> impl Fn(&Stats) -> (String, Vec<String>) + Sync + '_ {
    move |_s: &Stats| {
        (
            "UPDATE deploykit_schema_history SET rolled_back_on = clock_timestamp() WHERE installed_rank = $1::text::bigint".to_string(),
            vec![a.rank.to_string()],
        )
    }
}

pub fn stats_check(name: String, verb: &str, s: &Stats) -> Check {
    let batched = match (s.rows, s.batches) {
        (Some(r), Some(b)) => format!("{r} rows in {b} batches, "),
        _ => String::new(),
    };
    Check::ok("migrations", name)
        .message(format!(
            "{verb} in {} ms ({batched}lock wait {} ms, {} retries, blocked others ≤ {} ms)",
            s.execution_ms, s.lock_wait_ms, s.retries, s.max_blocked_ms
        ))
        .data(serde_json::to_value(s).unwrap_or_default())
}

/// Pending migrations (not applied, up to `target`) — refusing out-of-order gaps unless
/// `out_of_order` (Flyway's `outOfOrder`: a file older than the newest applied one, merged late
/// from another branch, is applied too).
pub fn pending<'a>(
    all: &'a [Migration],
    applied: &[Applied],
    target: Option<&Version>,
    out_of_order: bool,
) -> Result<Vec<&'a Migration>> {
    let newest = applied.iter().map(|a| &a.version).max();
    let baseline = applied
        .iter()
        .filter(|a| a.baseline)
        .map(|a| &a.version)
        .max();
    let mut out = vec![];
    for m in all {
        if applied.iter().any(|a| a.version == m.version) {
            continue;
        }
        // At or below a Flyway baseline: the database had it before its history began.
        if baseline.is_some_and(|b| &m.version <= b) {
            continue;
        }
        if target.is_some_and(|t| &m.version > t) {
            continue;
        }
        if let Some(n) = newest
            && &m.version < n
            && !out_of_order
        {
            return Err(Error::Conflict(format!(
                "{} is older than the applied {n} but was never applied: out-of-order migrations are refused (`migrate --out-of-order` applies it, as Flyway's outOfOrder does)",
                m.up.file_name()
            )));
        }
        out.push(m);
    }
    Ok(out)
}
