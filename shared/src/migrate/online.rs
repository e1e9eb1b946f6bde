//! Large-table changes that never stall trading (guide §7): a **batched backfill** and an
//! **online schema change by shadow table**, each declared in a migration's first lines and run
//! by one batch engine. Every batch is its own short transaction and commits its progress row
//! with it, so a run killed at any point resumes where it stopped and never applies a batch
//! twice; the migration is recorded as applied only once the last batch is in (the shadow
//! change: in the swap's transaction). Learnt from pgroll and pg-osc (sync triggers, batched
//! copy, swap by rename under a short lock_timeout); decision 0026 says what we kept.

use super::run::{self, Limits, Stats, StepError};
use super::{Script, statements};
use crate::error::{Error, Result};
use crate::telemetry::Progress;
use std::path::Path;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};
use tokio_postgres::Client;

pub const BATCH: &str = "-- deploykit: batch";
pub const SHADOW: &str = "-- deploykit: shadow";
/// Progress of every unfinished online change, one row per migration file.
pub const PROGRESS: &str = "deploykit_online_progress";
const CREATE_PROGRESS: &str = "CREATE TABLE IF NOT EXISTS deploykit_online_progress (
    script      text PRIMARY KEY,
    checksum    text NOT NULL,
    table_name  text NOT NULL,
    phase       text NOT NULL,
    last_key    bigint,
    rows_done   bigint NOT NULL DEFAULT 0,
    batches     bigint NOT NULL DEFAULT 0,
    started_on  timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_on  timestamptz NOT NULL DEFAULT clock_timestamp(),
    stale       text
);
ALTER TABLE deploykit_online_progress ADD COLUMN IF NOT EXISTS end_key bigint";

const MIN_SIZE: i64 = 100;
const MAX_SIZE: i64 = 1_000_000;
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// How batches are paced: sized to take about `budget` each, at least `pause` apart, and
/// backing off (half the size, twice the pause) while another session waits on their locks
/// longer than `max_blocked` or a replica lags more than `max_lag`.
#[derive(Debug, Clone, PartialEq)]
pub struct Pace {
    pub size: i64,
    pub budget: Duration,
    pub pause: Duration,
    pub max_lag: Duration,
    pub max_blocked: Duration,
}

impl Default for Pace {
    fn default() -> Self {
        // Starts at the guide's 10 000 rows and adapts. Short batches with twice their time
        // to rest kept a steady client's p99 within 2× idle on 5 M rows (docs/benchmarks.md);
        // 200 ms batches with 50 ms pauses were 2.5× faster but 8× idle p99.
        Pace {
            size: 10_000,
            budget: Duration::from_millis(25),
            pause: Duration::from_millis(50),
            max_lag: Duration::from_secs(5),
            max_blocked: Duration::from_millis(200),
        }
    }
}

/// An online migration kind, read from the file's directive.
#[derive(Debug, Clone, PartialEq)]
pub enum Online {
    /// `key=` given: keyset batches, the statement bound to `${batch.from}` < key ≤
    /// `${batch.to}`; without it the guide's form, `LIMIT ${batch.size}`, run until it touches
    /// no row (its WHERE must exclude rows already done).
    Batch {
        table: String,
        key: Option<String>,
        pace: Pace,
        statement: String,
    },
    /// The statements change `${shadow}`, a copy of `table` kept in sync, swapped in by rename.
    Shadow {
        table: String,
        key: Option<String>,
        pace: Pace,
        ddl: Vec<String>,
    },
    /// A shadow change's built-in rollback: the old table swapped back while it exists.
    SwapBack { table: String, of: String },
}

impl Online {
    pub fn table(&self) -> &str {
        match self {
            Online::Batch { table, .. }
            | Online::Shadow { table, .. }
            | Online::SwapBack { table, .. } => table,
        }
    }
    /// What it does, for the plan and the dry run.
    pub fn describe(&self) -> String {
        match self {
            Online::Batch {
                table, key, pace, ..
            } => format!(
                "batched backfill of {table} ({}, first batch {} rows, ~{} ms each, pause ≥ {} ms)",
                key.as_ref()
                    .map_or("until a batch touches no row".into(), |k| format!(
                        "keyset on {k}"
                    )),
                pace.size,
                pace.budget.as_millis(),
                pace.pause.as_millis()
            ),
            Online::Shadow { table, ddl, .. } => format!(
                "shadow-table change of {table}: create {table}_shadow, apply {} statement(s) to it, sync triggers, batched copy, verify, swap by rename; {table}_old kept until `db_migrate cleanup`",
                ddl.len()
            ),
            Online::SwapBack { table, .. } => {
                format!("swap {table}_old back in as {table} (built-in rollback)")
            }
        }
    }
}

static IDENT: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(r"^[a-z_][a-z0-9_]{0,50}$").unwrap());

/// The file's online kind, if its first lines declare one; a malformed directive or body is a
/// config error at its line.
pub fn parse(path: &Path, sql: &str) -> Result<Option<Online>> {
    let Some((line, kind, rest)) = sql.lines().take(5).enumerate().find_map(|(i, l)| {
        let l = l.trim();
        [BATCH, SHADOW].iter().find_map(|d| {
            l.strip_prefix(d)
                .filter(|r| r.is_empty() || r.starts_with(' '))
                .map(|r| (i + 1, *d, r.trim().to_string()))
        })
    }) else {
        return Ok(None);
    };
    let at = |l: usize| format!("{}:{l}", path.display());
    let (mut table, mut key, mut pace) = (None, None, Pace::default());
    for word in rest.split_whitespace() {
        let Some((k, v)) = word.split_once('=') else {
            return Err(Error::config(
                at(line),
                format!(
                    "`{word}` is not an option: write name=value (table=, key=, size=, budget=, pause=, max_lag=, max_blocked=)"
                ),
            ));
        };
        let dur = |v: &str| {
            crate::config::parse_duration_or_zero(v)
                .map_err(|e| Error::config(at(line), format!("{k}={v}: {e}")))
        };
        match k {
            "table" | "key" => {
                if !IDENT.is_match(v) {
                    return Err(Error::config(
                        at(line),
                        format!(
                            "{k}={v}: write an unqualified lower-case name (letters, digits, _)"
                        ),
                    ));
                }
                if k == "table" {
                    table = Some(v.to_string());
                } else {
                    key = Some(v.to_string());
                }
            }
            "size" => {
                pace.size = v
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (MIN_SIZE..=MAX_SIZE).contains(n))
                    .ok_or_else(|| {
                        Error::config(
                            at(line),
                            format!("size={v}: a row count from {MIN_SIZE} to {MAX_SIZE}"),
                        )
                    })?
            }
            "budget" => pace.budget = dur(v)?.max(Duration::from_millis(10)),
            "pause" => pace.pause = dur(v)?,
            "max_lag" => pace.max_lag = dur(v)?,
            "max_blocked" => pace.max_blocked = dur(v)?,
            _ => {
                return Err(Error::config(
                    at(line),
                    format!(
                        "unknown option `{k}`: table=, key=, size=, budget=, pause=, max_lag=, max_blocked="
                    ),
                ));
            }
        }
    }
    let Some(table) = table else {
        return Err(Error::config(
            at(line),
            format!("`{kind}` needs table=NAME (the table it changes)"),
        ));
    };
    let body = statements(sql);
    if body.is_empty() {
        return Err(Error::config(at(line), "no statement after the directive"));
    }
    if kind == BATCH {
        if body.len() != 1 {
            return Err(Error::config(
                at(body[1].line),
                "a batch migration holds exactly one statement (the batch): put other changes in files of their own",
            ));
        }
        let st = &body[0];
        let has = |p: &str| st.sql.contains(p);
        let ok = match &key {
            Some(_) => has("${batch.from}") && has("${batch.to}") && !has("${batch.size}"),
            None => has("${batch.size}") && !has("${batch.from}") && !has("${batch.to}"),
        };
        if !ok {
            return Err(Error::config(
                at(st.line),
                match &key {
                    Some(k) => format!("with key={k} the statement bounds each batch by key: `WHERE {k} > ${{batch.from}} AND {k} <= ${{batch.to}}`"),
                    None => "without key= the statement takes `LIMIT ${batch.size}` and its WHERE excludes rows already done (or give key= for keyset batches)".to_string(),
                },
            ));
        }
        return Ok(Some(Online::Batch {
            table,
            key,
            pace,
            statement: st.sql.clone(),
        }));
    }
    if let Some(st) = body.iter().find(|s| !s.sql.contains("${shadow}")) {
        return Err(Error::config(
            at(st.line),
            "every statement of a shadow migration changes ${shadow} (the copy being built), never the live table",
        ));
    }
    Ok(Some(Online::Shadow {
        table,
        key,
        pace,
        ddl: body.into_iter().map(|s| s.sql).collect(),
    }))
}

/// Placeholders the runner binds itself (Flyway's replacement leaves them alone).
pub fn is_runner_placeholder(name: &str) -> bool {
    name.starts_with("batch.") || name == "shadow"
}

fn db(e: tokio_postgres::Error) -> StepError {
    StepError::Db(crate::db::error("PostgreSQL", e))
}

fn q(ident: &str) -> String {
    super::refresh::ident(ident)
}

/// The progress table (under the migration lock: one creator).
pub async fn ensure_progress(c: &Client) -> Result<()> {
    c.batch_execute(CREATE_PROGRESS)
        .await
        .map_err(|e| crate::db::error("PostgreSQL", e))
}

/// One row of the progress table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Unfinished {
    pub script: String,
    pub table: String,
    pub phase: String,
    pub rows_done: i64,
    pub batches: i64,
    pub stale: Option<String>,
}

pub async fn unfinished(c: &Client) -> Result<Vec<Unfinished>> {
    let exists: bool = c
        .query_one(
            "SELECT to_regclass('deploykit_online_progress') IS NOT NULL",
            &[],
        )
        .await
        .map_err(|e| crate::db::error("PostgreSQL", e))?
        .get(0);
    if !exists {
        return Ok(vec![]);
    }
    let rows = c
        .query(
            "SELECT script, table_name, phase, rows_done, batches, stale FROM deploykit_online_progress ORDER BY started_on",
            &[],
        )
        .await
        .map_err(|e| crate::db::error("PostgreSQL", e))?;
    Ok(rows
        .iter()
        .map(|r| Unfinished {
            script: r.get(0),
            table: r.get(1),
            phase: r.get(2),
            rows_done: r.get(3),
            batches: r.get(4),
            stale: r.get(5),
        })
        .collect())
}

/// A table's estimated row count from its statistics (None: never analysed).
pub async fn estimated_rows(c: &Client, table: &str) -> Result<Option<i64>> {
    let row = c
        .query_opt(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass($1)",
            &[&table],
        )
        .await
        .map_err(|e| crate::db::error("PostgreSQL", e))?;
    Ok(row.map(|r| r.get::<_, i64>(0)).filter(|n| *n >= 0))
}

/// What the dry run says: the plan, the estimated rows and, when resuming, how far it got.
pub async fn dry_run_note(c: &Client, script: &Script, online: &Online) -> Result<String> {
    // Statistics when the table has been analysed, else a count (a dry run can afford one).
    let est = match estimated_rows(c, online.table()).await? {
        Some(n) => Some((n, "table statistics")),
        None => c
            .query_one(&format!("SELECT count(*) FROM {}", q(online.table())), &[])
            .await
            .ok()
            .map(|r| (r.get::<_, i64>(0), "counted")),
    };
    let resume = unfinished(c)
        .await?
        .into_iter()
        .find(|u| u.script == script.file_name());
    Ok(format!(
        "{}; ≈{} rows in {} ({}){}",
        online.describe(),
        est.map_or("unknown".into(), |(n, _)| n.to_string()),
        online.table(),
        est.map_or("no statistics", |(_, how)| how),
        resume.map_or(String::new(), |u| format!(
            "; resumes at phase {} with {} rows in {} batches done",
            u.phase, u.rows_done, u.batches
        ))
    ))
}

/// Run an online migration step (the dispatch of [`run::step`]).
pub async fn step(
    c: &mut Client,
    pid: i32,
    monitor: Arc<Client>,
    script: &Script,
    online: &Online,
    limits: &Limits,
    record: &run::Record<'_>,
) -> std::result::Result<Stats, StepError> {
    ensure_progress(c).await.map_err(StepError::Db)?;
    let started = Instant::now();
    let mut stats = Stats::default();
    match online {
        Online::Batch {
            table,
            key,
            pace,
            statement,
        } => {
            let job = Job {
                name: script.file_name(),
                checksum: script.checksum.clone(),
                table: table.clone(),
                key: key.clone(),
                sql: bind(statement),
                pace: pace.clone(),
                phase: "batch",
            };
            check_progress(c, &job).await?;
            if let Some(k) = key {
                key_is_integer(c, table, k).await?;
            }
            batches(c, pid, &monitor, &job, limits, &mut stats).await?;
            stats.execution_ms = started.elapsed().as_millis() as i64;
            let tx = c.transaction().await.map_err(db)?;
            let (sql, params) = record(&stats);
            run::execute(&tx, &sql, &params).await.map_err(db)?;
            tx.execute(
                "DELETE FROM deploykit_online_progress WHERE script = $1",
                &[&job.name],
            )
            .await
            .map_err(db)?;
            tx.commit().await.map_err(db)?;
        }
        Online::Shadow {
            table,
            key,
            pace,
            ddl,
        } => {
            let s = Shadow::new(script, table);
            // What it refuses (a table named like ours, a changed file) is refused before
            // anything of this run exists: nothing to abort, and nothing of anyone else's dropped.
            let (phase, key) = s.prepare(c, key.as_deref(), pace, limits).await?;
            let result = s
                .run(
                    c,
                    pid,
                    &monitor,
                    (phase.as_deref(), &key),
                    pace,
                    ddl,
                    limits,
                    record,
                    &mut stats,
                    started,
                )
                .await;
            if let Err(e) = result {
                // Anything short of the swap: the original keeps serving, the rest goes.
                if let Err(again) = s.abort(c, limits).await {
                    tracing::error!("{again}");
                }
                return Err(e);
            }
        }
        Online::SwapBack { table, of } => {
            swap_back(c, table, of, limits, record, &mut stats).await?;
        }
    }
    stats.execution_ms = started.elapsed().as_millis() as i64;
    Ok(stats)
}

/// `${batch.from}`/`${batch.to}` → `$1`/`$2`, `${batch.size}` → `$1`, bound as bigint.
fn bind(statement: &str) -> String {
    statement
        .replace("${batch.from}", "$1::bigint")
        .replace("${batch.to}", "$2::bigint")
        .replace("${batch.size}", "$1::bigint")
}

async fn key_is_integer(c: &Client, table: &str, key: &str) -> std::result::Result<(), StepError> {
    let ty: Option<String> = c
        .query_opt(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute
              WHERE attrelid = to_regclass($1) AND attname = $2 AND attnum > 0 AND NOT attisdropped",
            &[&table, &key],
        )
        .await
        .map_err(db)?
        .map(|r| r.get(0));
    match ty.as_deref() {
        Some("bigint" | "integer" | "smallint") => Ok(()),
        Some(other) => Err(StepError::Sql(format!(
            "{table}.{key} is {other}: keyset batches need an integer key (use the table's bigserial id)"
        ))),
        None => Err(StepError::Sql(format!("{table} has no column {key}"))),
    }
}

/// One batched job: a backfill's statement, or a shadow change's copy.
struct Job {
    /// The progress row's key: the migration's file name.
    name: String,
    checksum: String,
    table: String,
    key: Option<String>,
    /// The batch statement with its parameters bound by position.
    sql: String,
    pace: Pace,
    phase: &'static str,
}

/// A resumed job must be the same file that started it.
async fn check_progress(c: &Client, job: &Job) -> std::result::Result<(), StepError> {
    let row = c
        .query_opt(
            "SELECT checksum FROM deploykit_online_progress WHERE script = $1",
            &[&job.name],
        )
        .await
        .map_err(db)?;
    if let Some(r) = row
        && r.get::<_, String>(0) != job.checksum
    {
        return Err(StepError::Db(Error::Conflict(format!(
            "{} changed while its online run was unfinished (progress saved for the old file): put the file back as it was and run migrate to finish it",
            job.name
        ))));
    }
    Ok(())
}

/// Run `job` batch by batch until it is done, resuming from its progress row.
async fn batches(
    c: &mut Client,
    pid: i32,
    monitor: &Arc<Client>,
    job: &Job,
    limits: &Limits,
    stats: &mut Stats,
) -> std::result::Result<(), StepError> {
    let row = c
        .query_opt(
            "SELECT last_key, rows_done, batches, end_key FROM deploykit_online_progress WHERE script = $1",
            &[&job.name],
        )
        .await
        .map_err(db)?;
    let (mut last, mut done, mut count, end): (Option<i64>, i64, i64, Option<i64>) = row
        .map_or((None, 0, 0, None), |r| {
            (r.get(0), r.get(1), r.get(2), r.get(3))
        });
    // Keyset batches stop at the highest key when the job first started (kept across a
    // resume): rows inserted later are the running application's (it writes the new column;
    // a shadow's triggers copy them), and chasing them would never end under steady inserts.
    let end = match (&job.key, end) {
        (Some(k), None) => c
            .query_one(
                &format!("SELECT max({})::bigint FROM {}", q(k), q(&job.table)),
                &[],
            )
            .await
            .map_err(db)?
            .get::<_, Option<i64>>(0),
        (_, end) => end,
    };
    if count > 0 {
        tracing::info!(
            "{}: resuming after {done} rows in {count} batches{}",
            job.name,
            last.map_or(String::new(), |k| format!(" (key {k})"))
        );
    }
    // How much is left: exact for keyset batches (one index scan), the table's estimate for
    // the limit form (an upper bound).
    let total: Option<i64> = match &job.key {
        Some(k) => {
            let left: i64 = c
                .query_one(
                    &format!(
                        "SELECT count(*) FROM {} WHERE {k} > $1::bigint AND {k} <= $2::bigint",
                        q(&job.table),
                        k = q(k)
                    ),
                    &[&last.unwrap_or(i64::MIN), &end.unwrap_or(i64::MIN)],
                )
                .await
                .map_err(db)?
                .get(0);
            Some(done + left)
        }
        None => estimated_rows(c, &job.table)
            .await
            .map_err(StepError::Db)?
            .map(|n| n.max(done)),
    };
    let pace = &job.pace;
    let (mut size, mut pause, mut tries) = (pace.size, pace.pause, 0u32);
    let mut progress = Progress::new(
        format!("{} {}", job.name, job.phase),
        total.map(|t| t as u64),
    );
    loop {
        if limits.cancel.is_cancelled() {
            progress.finish();
            return Err(StepError::Db(Error::Interrupted(crate::error::Signal::Int)));
        }
        let t0 = Instant::now();
        let sampler = run::Sampler::start(monitor.clone(), pid);
        let result = one_batch(c, job, limits, last, end, size).await;
        let (waited, blocked) = sampler.finish().await;
        let took = t0.elapsed();
        stats.max_blocked_ms = stats.max_blocked_ms.max(blocked);
        stats.lock_wait_ms += waited;
        match result {
            Ok(None) => break,
            Ok(Some((n, hi))) => {
                tries = 0;
                done += n;
                count += 1;
                if hi.is_some() {
                    last = hi;
                }
                // The limit form must converge: a WHERE that does not exclude done rows
                // would update the same rows for ever.
                if job.key.is_none()
                    && let Some(t) = total
                    && done > 2 * t + 100_000
                {
                    progress.finish();
                    return Err(StepError::Paused(format!(
                        "{}: {done} rows updated in {count} batches, more than twice the table's {t}: its WHERE must exclude rows already done (e.g. `WHERE notional IS NULL`), or use key= batches",
                        job.name
                    )));
                }
            }
            Err(e) if run::is_lock_timeout(&e) => {
                tries += 1;
                stats.retries += 1;
                if tries > limits.max_retries {
                    progress.finish();
                    return Err(StepError::Paused(format!(
                        "{}: batch {} not granted its locks within {:?}, {} times in a row; {done} rows in {count} batches are done and saved: run migrate again to continue",
                        job.name,
                        count + 1,
                        limits.lock_timeout,
                        tries - 1
                    )));
                }
                size = (size / 2).max(MIN_SIZE);
                let backoff = Duration::from_millis(200 * (1 << tries.min(5)));
                tracing::warn!(
                    "{}: batch {} waited {:?} for a lock: retry {tries} of {} in {backoff:?} with {size} rows",
                    job.name,
                    count + 1,
                    limits.lock_timeout,
                    limits.max_retries
                );
                sleep(backoff, limits).await?;
                continue;
            }
            Err(e) => {
                progress.finish();
                return Err(StepError::Paused(format!(
                    "{}: batch {} failed: {}; the {done} rows of the {count} batches before it stay done and saved: fix the cause and run migrate again to continue",
                    job.name,
                    count + 1,
                    crate::db::describe(&e)
                )));
            }
        }
        let lag_ms: i64 = monitor
            .query_one(
                "SELECT coalesce(max(extract(epoch FROM replay_lag) * 1000), 0)::bigint FROM pg_stat_replication",
                &[],
            )
            .await
            .map(|r| r.get(0))
            .unwrap_or(0);
        let why = if blocked > pace.max_blocked.as_millis() as i64 {
            Some(format!("another session waited {blocked} ms on its locks"))
        } else if lag_ms > pace.max_lag.as_millis() as i64 {
            Some(format!("replication lag {lag_ms} ms"))
        } else {
            None
        };
        match why {
            Some(w) => {
                size = (size / 2).max(MIN_SIZE);
                pause = (pause * 2).max(Duration::from_millis(50)).min(MAX_PAUSE);
                tracing::warn!(
                    "{}: backing off ({w}): next batch {size} rows after {pause:?}",
                    job.name
                );
            }
            None => {
                if took > pace.budget {
                    let scaled = size as f64 * pace.budget.as_secs_f64() / took.as_secs_f64();
                    size = ((scaled * 0.9) as i64).max(MIN_SIZE);
                } else if took < pace.budget / 2 {
                    size = (size * 3 / 2).min(MAX_SIZE);
                }
                pause = (pause * 3 / 4).max(pace.pause);
            }
        }
        // Rest at least twice as long as the batch took: the backfill never has the
        // database more than a third of the time, even when a batch overruns its budget.
        let rest = pause.max(took * 2).min(MAX_PAUSE);
        stats.rows = Some(done);
        stats.batches = Some(count);
        progress.set(
            done as u64,
            total.map(|t| t as u64),
            &format!("batch {size} rows, pause {} ms", rest.as_millis()),
        );
        sleep(rest, limits).await?;
    }
    stats.rows = Some(done);
    stats.batches = Some(count);
    progress.finish();
    tracing::info!("{}: {done} rows in {count} batches", job.name);
    Ok(())
}

async fn sleep(d: Duration, limits: &Limits) -> std::result::Result<(), StepError> {
    tokio::select! {
        _ = tokio::time::sleep(d) => Ok(()),
        _ = limits.cancel.cancelled() => Err(StepError::Db(Error::Interrupted(crate::error::Signal::Int))),
    }
}

/// One batch and its progress row, in one transaction. `None`: nothing left.
async fn one_batch(
    c: &mut Client,
    job: &Job,
    limits: &Limits,
    last: Option<i64>,
    end: Option<i64>,
    size: i64,
) -> std::result::Result<Option<(i64, Option<i64>)>, tokio_postgres::Error> {
    let tx = c.transaction().await?;
    tx.batch_execute(&run::timeouts_sql(limits, true)).await?;
    let from = last.unwrap_or(i64::MIN);
    let (n, hi) = match &job.key {
        Some(k) => {
            let hi: Option<i64> = tx
                .query_one(
                    &format!(
                        "SELECT max(k)::bigint FROM (SELECT {k} AS k FROM {t} WHERE {k} > $1::bigint AND {k} <= $3::bigint ORDER BY {k} LIMIT $2) s",
                        k = q(k),
                        t = q(&job.table)
                    ),
                    &[&from, &size, &end.unwrap_or(i64::MIN)],
                )
                .await?
                .get(0);
            let Some(hi) = hi else {
                return Ok(None);
            };
            (tx.execute(&job.sql, &[&from, &hi]).await? as i64, Some(hi))
        }
        None => {
            let n = tx.execute(&job.sql, &[&size]).await? as i64;
            if n == 0 {
                return Ok(None);
            }
            (n, None)
        }
    };
    tx.execute(
        "INSERT INTO deploykit_online_progress (script, checksum, table_name, phase, last_key, rows_done, batches, end_key)
         VALUES ($1, $2, $3, $4, $5, $6, 1, $7)
         ON CONFLICT (script) DO UPDATE SET last_key = EXCLUDED.last_key,
           end_key = coalesce(deploykit_online_progress.end_key, EXCLUDED.end_key),
           rows_done = deploykit_online_progress.rows_done + EXCLUDED.rows_done,
           batches = deploykit_online_progress.batches + 1, updated_on = clock_timestamp()",
        &[&job.name, &job.checksum, &job.table, &job.phase, &hi, &n, &end],
    )
    .await?;
    tx.commit().await?;
    Ok(Some((n, hi)))
}

/// The shadow change's names: `t_shadow` is built, `t_old` is what `t` was.
struct Shadow {
    name: String,
    checksum: String,
    table: String,
    shadow: String,
    old: String,
    sync: String,
    back: String,
}

impl Shadow {
    fn new(script: &Script, table: &str) -> Shadow {
        Shadow::named(&script.file_name(), script.checksum.clone(), table)
    }

    fn named(name: &str, checksum: String, table: &str) -> Shadow {
        Shadow {
            name: name.to_string(),
            checksum,
            table: table.to_string(),
            shadow: format!("{table}_shadow"),
            old: format!("{table}_old"),
            sync: format!("deploykit_sync_{table}"),
            back: format!("deploykit_back_{table}"),
        }
    }

    /// Where an earlier run stopped (its phase) and the key, after the checks that refuse.
    async fn prepare(
        &self,
        c: &mut Client,
        key: Option<&str>,
        pace: &Pace,
        limits: &Limits,
    ) -> std::result::Result<(Option<String>, String), StepError> {
        let mut phase: Option<String> = c
            .query_opt(
                "SELECT phase FROM deploykit_online_progress WHERE script = $1",
                &[&self.name],
            )
            .await
            .map_err(db)?
            .map(|r| r.get(0));
        // An abort that could not drop its trigger: finish it, then start afresh.
        if phase.as_deref() == Some("abandoned") {
            self.abort(c, limits).await.map_err(StepError::Db)?;
            phase = None;
        }
        let key = self.preflight(c, key, phase.is_some()).await?;
        let job = Job {
            name: self.name.clone(),
            checksum: self.checksum.clone(),
            table: self.table.clone(),
            key: Some(key.clone()),
            sql: String::new(),
            pace: pace.clone(),
            phase: "copy",
        };
        check_progress(c, &job).await?;
        Ok((phase, key))
    }

    #[allow(clippy::too_many_arguments)]
    async fn run(
        &self,
        c: &mut Client,
        pid: i32,
        monitor: &Arc<Client>,
        (phase, key): (Option<&str>, &str),
        pace: &Pace,
        ddl: &[String],
        limits: &Limits,
        record: &run::Record<'_>,
        stats: &mut Stats,
        started: Instant,
    ) -> std::result::Result<(), StepError> {
        let key = key.to_string();
        let job = Job {
            name: self.name.clone(),
            checksum: self.checksum.clone(),
            table: self.table.clone(),
            key: Some(key.clone()),
            sql: String::new(),
            pace: pace.clone(),
            phase: "copy",
        };
        if phase.is_none() {
            self.create(c, ddl, limits).await?;
        }
        let fail = |p: &str| crate::fault::fail_point(p).map_err(StepError::Sql);
        fail("shadow:create")?;
        if matches!(phase, None | Some("created")) {
            self.triggers(c, &key, limits).await?;
        }
        fail("shadow:triggers")?;
        if phase != Some("verified") {
            let cols = self.common_columns(c).await?;
            let list = cols.iter().map(|c| q(c)).collect::<Vec<_>>().join(", ");
            // FOR SHARE: a row deleted while its batch reads it is skipped, not resurrected
            // in the copy; a writer waits for one batch at most.
            let job = Job {
                sql: format!(
                    "INSERT INTO {s} ({list}) OVERRIDING SYSTEM VALUE SELECT {list} FROM {t} WHERE {k} > $1::bigint AND {k} <= $2::bigint FOR SHARE ON CONFLICT DO NOTHING",
                    s = q(&self.shadow),
                    t = q(&self.table),
                    k = q(&key)
                ),
                ..job
            };
            batches(c, pid, monitor, &job, limits, stats).await?;
            self.validate_foreign_keys(c, limits).await?;
        }
        fail("shadow:copy")?;
        self.verify(c, &key).await?;
        fail("shadow:verify")?;
        self.swap(c, &key, limits, record, stats, started).await?;
        crate::fault::crash_point("shadow:swap");
        Ok(())
    }

    /// Refuse what the swap would break, before anything is created.
    async fn preflight(
        &self,
        c: &Client,
        key: Option<&str>,
        resuming: bool,
    ) -> std::result::Result<String, StepError> {
        let t = &self.table;
        let exists = |name: &str| {
            let name = name.to_string();
            async move {
                c.query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
                    .await
                    .map(|r| r.get::<_, bool>(0))
                    .map_err(db)
            }
        };
        if !exists(t).await? {
            return Err(StepError::Sql(format!(
                "{}: table {t} does not exist",
                self.name
            )));
        }
        if exists(&self.old).await? {
            return Err(StepError::Db(Error::Conflict(format!(
                "{}: {} from an earlier shadow change still exists: run `db_migrate cleanup` once that deploy is confirmed, then migrate again",
                self.name, self.old
            ))));
        }
        if !resuming && exists(&self.shadow).await? {
            return Err(StepError::Db(Error::Conflict(format!(
                "{}: {} exists but no run of this migration left it: rename or drop it",
                self.name, self.shadow
            ))));
        }
        let blockers: Vec<String> = c
            .query(
                "SELECT 'foreign key ' || conname || ' of ' || conrelid::regclass::text FROM pg_constraint
                  WHERE confrelid = to_regclass($1) AND contype = 'f' AND conrelid <> confrelid
                 UNION ALL
                 SELECT DISTINCT 'view ' || v.oid::regclass::text FROM pg_depend d
                   JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class v ON v.oid = r.ev_class
                  WHERE d.refobjid = to_regclass($1) AND v.oid <> d.refobjid
                 UNION ALL
                 SELECT 'trigger ' || tgname FROM pg_trigger
                  WHERE tgrelid = to_regclass($1) AND NOT tgisinternal AND tgname NOT LIKE 'deploykit_%'",
                &[t],
            )
            .await
            .map_err(db)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if !blockers.is_empty() {
            return Err(StepError::Sql(format!(
                "{}: {t} has {}: they would stay with the old table after the swap; change {t} with a plain migration in the maintenance window instead",
                self.name,
                blockers.join(", ")
            )));
        }
        let key = match key {
            Some(k) => k.to_string(),
            None => {
                let pk: Vec<String> = c
                    .query(
                        "SELECT a.attname::text FROM pg_index i JOIN pg_attribute a
                           ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
                          WHERE i.indrelid = to_regclass($1) AND i.indisprimary",
                        &[t],
                    )
                    .await
                    .map_err(db)?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                match pk.as_slice() {
                    [k] => k.clone(),
                    _ => {
                        return Err(StepError::Sql(format!(
                            "{}: {t} has no single-column primary key: name its unique integer key with key=",
                            self.name
                        )));
                    }
                }
            }
        };
        key_is_integer(c, t, &key).await?;
        Ok(key)
    }

    /// Step 1: the shadow with the live table's columns, defaults, constraints and indexes
    /// (its foreign keys NOT VALID, validated after the copy), then the migration's statements.
    async fn create(
        &self,
        c: &mut Client,
        ddl: &[String],
        limits: &Limits,
    ) -> std::result::Result<(), StepError> {
        let fks: Vec<String> = c
            .query(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = to_regclass($1) AND contype = 'f'",
                &[&self.table],
            )
            .await
            .map_err(db)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let tx = c.transaction().await.map_err(db)?;
        tx.batch_execute(&run::timeouts_sql(limits, true))
            .await
            .map_err(db)?;
        tx.batch_execute(&format!(
            "CREATE TABLE {} (LIKE {} INCLUDING ALL)",
            q(&self.shadow),
            q(&self.table)
        ))
        .await
        .map_err(db)?;
        for fk in fks {
            tx.batch_execute(&format!(
                "ALTER TABLE {} ADD {fk} NOT VALID",
                q(&self.shadow)
            ))
            .await
            .map_err(db)?;
        }
        for (i, st) in ddl.iter().enumerate() {
            let sql = st.replace("${shadow}", &q(&self.shadow));
            if let Err(e) = tx.batch_execute(&sql).await {
                return Err(StepError::Sql(format!(
                    "{}: statement {} on the shadow table failed: {}",
                    self.name,
                    i + 1,
                    crate::db::describe(&e)
                )));
            }
        }
        tx.execute(
            "INSERT INTO deploykit_online_progress (script, checksum, table_name, phase) VALUES ($1, $2, $3, 'created')",
            &[&self.name, &self.checksum, &self.table],
        )
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        tracing::info!("{}: created {} with the new schema", self.name, self.shadow);
        Ok(())
    }

    /// Columns both tables have (the copy and the triggers carry these; a new column takes
    /// its default, a dropped one is left behind).
    async fn common_columns(&self, c: &Client) -> std::result::Result<Vec<String>, StepError> {
        Ok(c
            .query(
                "SELECT a.attname::text FROM pg_attribute a
                  WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
                    AND EXISTS (SELECT 1 FROM pg_attribute b WHERE b.attrelid = to_regclass($2) AND b.attname = a.attname
                                AND NOT b.attisdropped AND b.attgenerated = '')
                  ORDER BY a.attnum",
                &[&self.table, &self.shadow],
            )
            .await
            .map_err(db)?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    /// A row trigger on `from` that mirrors every insert, update and delete into `to`.
    /// `stale_note`: swallow a failed mirror write (the live write must never fail because of
    /// the copy behind it) and mark the copy stale instead.
    fn mirror_sql(
        &self,
        function: &str,
        from: &str,
        to: &str,
        key: &str,
        cols: &[String],
        stale_note: bool,
    ) -> String {
        let list = cols.iter().map(|c| q(c)).collect::<Vec<_>>().join(", ");
        let values = cols
            .iter()
            .map(|c| format!("NEW.{}", q(c)))
            .collect::<Vec<_>>()
            .join(", ");
        let set = cols
            .iter()
            .map(|c| format!("{0} = EXCLUDED.{0}", q(c)))
            .collect::<Vec<_>>()
            .join(", ");
        let (k, to_q) = (q(key), q(to));
        let body = format!(
            "IF TG_OP = 'DELETE' THEN
               DELETE FROM {to_q} WHERE {k} = OLD.{k};
               RETURN OLD;
             END IF;
             IF TG_OP = 'UPDATE' AND NEW.{k} IS DISTINCT FROM OLD.{k} THEN
               DELETE FROM {to_q} WHERE {k} = OLD.{k};
             END IF;
             INSERT INTO {to_q} ({list}) OVERRIDING SYSTEM VALUE VALUES ({values})
               ON CONFLICT ({k}) DO UPDATE SET {set};
             RETURN NEW;"
        );
        let body = if stale_note {
            format!(
                "BEGIN
                   {body}
                 EXCEPTION WHEN others THEN
                   UPDATE deploykit_online_progress SET stale = SQLERRM WHERE script = {};
                   RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
                 END;",
                literal(&self.name)
            )
        } else {
            body
        };
        format!(
            "CREATE OR REPLACE FUNCTION {f}() RETURNS trigger LANGUAGE plpgsql AS $deploykit$
             BEGIN
               {body}
             END $deploykit$;
             CREATE TRIGGER {f} AFTER INSERT OR UPDATE OR DELETE ON {from_q} FOR EACH ROW EXECUTE FUNCTION {f}();",
            f = q(function),
            from_q = q(from)
        )
    }

    /// Step 2: the triggers that keep the shadow in sync from now on (a short lock on the
    /// live table, under lock_timeout, retried).
    async fn triggers(
        &self,
        c: &mut Client,
        key: &str,
        limits: &Limits,
    ) -> std::result::Result<(), StepError> {
        let cols = self.common_columns(c).await?;
        let sql = self.mirror_sql(&self.sync, &self.table, &self.shadow, key, &cols, false);
        retry_locked(c, limits, "install the sync triggers", |tx| {
            let sql = sql.clone();
            let name = self.name.clone();
            Box::pin(async move {
                tx.batch_execute(&sql).await?;
                tx.execute(
                    "UPDATE deploykit_online_progress SET phase = 'copy', updated_on = clock_timestamp() WHERE script = $1",
                    &[&name],
                )
                .await?;
                Ok(())
            })
        })
        .await?;
        tracing::info!("{}: {} keeps {} in sync", self.name, self.sync, self.shadow);
        Ok(())
    }

    async fn validate_foreign_keys(
        &self,
        c: &Client,
        limits: &Limits,
    ) -> std::result::Result<(), StepError> {
        let names: Vec<String> = c
            .query(
                "SELECT conname::text FROM pg_constraint WHERE conrelid = to_regclass($1) AND contype = 'f' AND NOT convalidated",
                &[&self.shadow],
            )
            .await
            .map_err(db)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for n in names {
            c.batch_execute(&format!(
                "{}; ALTER TABLE {} VALIDATE CONSTRAINT {}",
                run::timeouts_sql(limits, false),
                q(&self.shadow),
                q(&n)
            ))
            .await
            .map_err(|e| {
                StepError::Sql(format!(
                    "{}: foreign key {n} does not hold on the copy: {}",
                    self.name,
                    crate::db::describe(&e)
                ))
            })?;
        }
        Ok(())
    }

    /// Step 4: the same rows in both, in one snapshot: count and a checksum of the key.
    async fn verify(&self, c: &mut Client, key: &str) -> std::result::Result<(), StepError> {
        let tx = c
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(db)?;
        let sum = |t: &str| {
            format!(
                "SELECT count(*), coalesce(sum(hashtextextended({k}::text, 0)::numeric), 0)::text FROM {t}",
                k = q(key),
                t = q(t)
            )
        };
        let a = tx.query_one(&sum(&self.table), &[]).await.map_err(db)?;
        let b = tx.query_one(&sum(&self.shadow), &[]).await.map_err(db)?;
        let (na, sa): (i64, String) = (a.get(0), a.get(1));
        let (nb, sb): (i64, String) = (b.get(0), b.get(1));
        tx.commit().await.map_err(db)?;
        if na != nb || sa != sb {
            return Err(StepError::Sql(format!(
                "{}: verification failed: {} has {na} rows (key checksum {sa}), {} has {nb} ({sb})",
                self.name, self.table, self.shadow
            )));
        }
        c.execute(
            "UPDATE deploykit_online_progress SET phase = 'verified', updated_on = clock_timestamp() WHERE script = $1",
            &[&self.name],
        )
        .await
        .map_err(db)?;
        tracing::info!("{}: verified {na} rows, key checksum equal", self.name);
        Ok(())
    }

    /// Step 5: the swap by rename, under lock_timeout, retried; the old table kept and synced
    /// back from the new one, so a rollback loses no write. The history row commits with it.
    async fn swap(
        &self,
        c: &mut Client,
        key: &str,
        limits: &Limits,
        record: &run::Record<'_>,
        stats: &mut Stats,
        started: Instant,
    ) -> std::result::Result<(), StepError> {
        let cols = self.common_columns(c).await?;
        // Once renamed, the new table is `t` and the old one `t_old`, synced back from it.
        let back_sql = self.mirror_sql(&self.back, &self.table, &self.old, key, &cols, true);
        let mut s = stats.clone();
        s.execution_ms = started.elapsed().as_millis() as i64;
        let (hist_sql, hist_params) = record(&s);
        let (t, sh, old, sync) = (q(&self.table), q(&self.shadow), q(&self.old), q(&self.sync));
        let tries = retry_locked(c, limits, &format!("{}: swap", self.name), |tx| {
            let (back_sql, hist_sql, hist_params) =
                (back_sql.clone(), hist_sql.clone(), hist_params.clone());
            let (t, sh, old, sync) = (t.clone(), sh.clone(), old.clone(), sync.clone());
            let (table, name) = (self.table.clone(), self.name.clone());
            Box::pin(async move {
                tx.batch_execute(&format!(
                    "LOCK TABLE {t}, {sh} IN ACCESS EXCLUSIVE MODE;
                     DROP TRIGGER {sync} ON {t};
                     DROP FUNCTION {sync}();"
                ))
                .await?;
                let owned = owned_sequences(tx, &table).await?;
                tx.batch_execute(&format!(
                    "ALTER TABLE {t} RENAME TO {old}; ALTER TABLE {sh} RENAME TO {t};"
                ))
                .await?;
                move_sequences(tx, &owned, &table).await?;
                tx.batch_execute(&back_sql).await?;
                tx.execute(
                    "UPDATE deploykit_online_progress SET phase = 'swapped', updated_on = clock_timestamp() WHERE script = $1",
                    &[&name],
                )
                .await?;
                run::execute(tx, &hist_sql, &hist_params).await?;
                Ok(())
            })
        })
        .await?;
        stats.retries += tries;
        tracing::info!(
            "{}: swapped in after {tries} retries; {} kept (synced back) until `db_migrate cleanup`",
            self.name,
            self.old
        );
        Ok(())
    }

    /// Remove what an unfinished change left (triggers, function, shadow, progress): the
    /// original table keeps serving as it was. The trigger function becomes a no-op first —
    /// that needs no lock on the live table, so writes stop paying for the copy at once even
    /// while a long transaction keeps the trigger itself from being dropped.
    async fn abort(&self, c: &mut Client, limits: &Limits) -> Result<()> {
        let sync = q(&self.sync);
        let pg = |e| crate::db::error("PostgreSQL", e);
        let has_function: bool = c
            .query_one("SELECT to_regproc($1) IS NOT NULL", &[&self.sync])
            .await
            .map_err(pg)?
            .get(0);
        if has_function {
            c.batch_execute(&format!(
                "CREATE OR REPLACE FUNCTION {sync}() RETURNS trigger LANGUAGE plpgsql AS $deploykit$ BEGIN RETURN NULL; END $deploykit$"
            ))
            .await
            .map_err(pg)?;
        }
        let cleanup = drop_mirror(
            c,
            limits,
            &format!("{}: remove the sync trigger", self.name),
            (&self.sync, &self.table),
            &self.shadow,
            &self.name,
        )
        .await;
        match cleanup {
            Ok(_) => {
                tracing::warn!(
                    "{}: aborted: {} serves as before; sync trigger and {} removed",
                    self.name,
                    self.table,
                    self.shadow
                );
                Ok(())
            }
            Err(e) => {
                let _ = c
                    .execute(
                        "UPDATE deploykit_online_progress SET phase = 'abandoned' WHERE script = $1",
                        &[&self.name],
                    )
                    .await;
                Err(Error::Conflict(format!(
                    "{}: aborted, {} serves as before and its sync trigger now does nothing, but it could not be dropped ({}): run `db_migrate cleanup --abandon` once the table is free",
                    self.name,
                    self.table,
                    step_message(e)
                )))
            }
        }
    }
}

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Sequences a table's columns own: serial ones (`a`, shared with the copy through its
/// default) and identity ones (`i`, each table its own).
async fn owned_sequences(
    tx: &tokio_postgres::Transaction<'_>,
    table: &str,
) -> std::result::Result<Vec<(String, String, bool)>, tokio_postgres::Error> {
    Ok(tx
        .query(
            "SELECT s.oid::regclass::text, a.attname::text, d.deptype = 'i' FROM pg_depend d
               JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
               JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
              WHERE d.refobjid = to_regclass($1) AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')",
            &[&table],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// After the rename, `table` is the other table: a serial sequence changes owner to it (so a
/// later drop of the old table keeps it); an identity sequence of `table` continues from the
/// old one's value.
async fn move_sequences(
    tx: &tokio_postgres::Transaction<'_>,
    owned: &[(String, String, bool)],
    table: &str,
) -> std::result::Result<(), tokio_postgres::Error> {
    for (seq, col, identity) in owned {
        if *identity {
            let mine: Option<String> = tx
                .query_one("SELECT pg_get_serial_sequence($1, $2)", &[&table, col])
                .await?
                .get(0);
            if let Some(mine) = mine {
                tx.batch_execute(&format!(
                    "SELECT setval({}::regclass, last_value, is_called) FROM {seq}",
                    literal(&mine)
                ))
                .await?;
            }
        } else {
            tx.batch_execute(&format!(
                "ALTER SEQUENCE {seq} OWNED BY {}.{}",
                q(table),
                q(col)
            ))
            .await?;
        }
    }
    Ok(())
}

type TxFuture<'t> = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = std::result::Result<(), tokio_postgres::Error>>
            + Send
            + 't,
    >,
>;

/// `f` in a transaction under the runner's lock_timeout, retried with backoff while its locks
/// are not granted: each try waits at most lock_timeout, so the sessions queued behind it do
/// too. The number of retries it took.
async fn retry_locked<F>(
    c: &mut Client,
    limits: &Limits,
    what: &str,
    f: F,
) -> std::result::Result<u32, StepError>
where
    F: for<'t> Fn(&'t tokio_postgres::Transaction<'t>) -> TxFuture<'t>,
{
    let mut tries = 0u32;
    loop {
        let t0 = Instant::now();
        let tx = c.transaction().await.map_err(db)?;
        tx.batch_execute(&run::timeouts_sql(limits, true))
            .await
            .map_err(db)?;
        match f(&tx).await {
            Ok(()) => {
                tx.commit().await.map_err(db)?;
                return Ok(tries);
            }
            Err(e) if run::is_lock_timeout(&e) => {
                drop(tx);
                tries += 1;
                tracing::warn!(
                    "{what}: lock not granted, waited {} ms (lock_timeout {} ms); try {tries} of {}",
                    t0.elapsed().as_millis(),
                    limits.lock_timeout.as_millis(),
                    limits.max_retries + 1
                );
                if tries > limits.max_retries {
                    return Err(StepError::LockTimeout(format!(
                        "{what}: its lock was not granted in {tries} tries of lock_timeout {:?} each (a long transaction holds the table)",
                        limits.lock_timeout
                    )));
                }
                sleep(Duration::from_millis(200 * (1 << tries.min(4))), limits).await?;
            }
            Err(e) => {
                return Err(StepError::Sql(format!(
                    "{what}: {}",
                    crate::db::describe(&e)
                )));
            }
        }
    }
}

/// Drop the mirror trigger `trigger` on `table` with its function, then `gone` (the table it
/// mirrored into), and the change's progress row — one transaction under lock_timeout, retried.
/// An abort removes the sync trigger and the copy; cleanup the back-sync and the old table.
async fn drop_mirror(
    c: &mut Client,
    limits: &Limits,
    what: &str,
    (trigger, table): (&str, &str),
    gone: &str,
    script: &str,
) -> std::result::Result<u32, StepError> {
    let (trigger, table, gone) = (q(trigger), q(table), q(gone));
    retry_locked(c, limits, what, |tx| {
        let sql = format!(
            "DROP TRIGGER IF EXISTS {trigger} ON {table};
             DROP FUNCTION IF EXISTS {trigger}();
             DROP TABLE IF EXISTS {gone};"
        );
        let script = script.to_string();
        Box::pin(async move {
            tx.batch_execute(&sql).await?;
            tx.execute(
                "DELETE FROM deploykit_online_progress WHERE script = $1",
                &[&script],
            )
            .await?;
            Ok(())
        })
    })
    .await
}

/// The built-in rollback of a shadow change: while `t_old` exists (and the back-sync never
/// failed), it becomes `t` again with every write made since the swap; the new table goes.
async fn swap_back(
    c: &mut Client,
    table: &str,
    of: &str,
    limits: &Limits,
    record: &run::Record<'_>,
    stats: &mut Stats,
) -> std::result::Result<(), StepError> {
    let row = c
        .query_opt(
            "SELECT phase, stale FROM deploykit_online_progress WHERE script = $1",
            &[&of],
        )
        .await
        .map_err(db)?;
    let old = format!("{table}_old");
    match row {
        Some(r) if r.get::<_, String>(0) == "swapped" => {
            if let Some(why) = r.get::<_, Option<String>>(1) {
                return Err(StepError::Db(Error::Conflict(format!(
                    "{of}: {old} missed writes made since the swap ({why}): swapping it back would lose them; roll forward instead"
                ))));
            }
        }
        _ => {
            return Err(StepError::Db(Error::Conflict(format!(
                "{of}: {old} is gone (`db_migrate cleanup` dropped it): a shadow change can be swapped back only until then; roll forward with a new migration"
            ))));
        }
    }
    let (hist_sql, hist_params) = record(stats);
    let back = q(&format!("deploykit_back_{table}"));
    let (t, o, gone) = (q(table), q(&old), q(&format!("{table}_shadow")));
    let tries = retry_locked(c, limits, &format!("{of}: swap back"), |tx| {
        let (hist_sql, hist_params) = (hist_sql.clone(), hist_params.clone());
        let (t, o, gone, back) = (t.clone(), o.clone(), gone.clone(), back.clone());
        let (table, of) = (table.to_string(), of.to_string());
        Box::pin(async move {
            tx.batch_execute(&format!(
                "LOCK TABLE {t}, {o} IN ACCESS EXCLUSIVE MODE;
                 DROP TRIGGER {back} ON {t};
                 DROP FUNCTION {back}();"
            ))
            .await?;
            let owned = owned_sequences(tx, &table).await?;
            tx.batch_execute(&format!(
                "ALTER TABLE {t} RENAME TO {gone}; ALTER TABLE {o} RENAME TO {t};"
            ))
            .await?;
            move_sequences(tx, &owned, &table).await?;
            tx.batch_execute(&format!("DROP TABLE {gone}")).await?;
            tx.execute(
                "DELETE FROM deploykit_online_progress WHERE script = $1",
                &[&of],
            )
            .await?;
            run::execute(tx, &hist_sql, &hist_params).await?;
            Ok(())
        })
    })
    .await?;
    stats.retries += tries;
    Ok(())
}

/// `db_migrate cleanup`: the old tables of swapped changes dropped (with their back-sync);
/// with `abandon`, an unfinished shadow change's triggers and copy removed too. What it did,
/// one line per change.
pub async fn cleanup(
    c: &mut Client,
    limits: &Limits,
    abandon: bool,
    dry_run: bool,
) -> Result<Vec<(String, std::result::Result<String, String>)>> {
    let mut out = vec![];
    for u in unfinished(c).await? {
        let verb = match (u.phase.as_str(), abandon) {
            ("swapped", _) => format!("drop {}_old (the table before the change)", u.table),
            ("batch", _) => {
                out.push((
                    u.script.clone(),
                    Err(format!(
                        "a batched backfill, {} rows in {} batches done: run migrate to finish it",
                        u.rows_done, u.batches
                    )),
                ));
                continue;
            }
            (_, false) => {
                out.push((
                    u.script.clone(),
                    Err(format!(
                        "an unfinished shadow change of {} (phase {}): run migrate to finish it, or `cleanup --abandon` to remove its triggers and copy",
                        u.table, u.phase
                    )),
                ));
                continue;
            }
            (_, true) => format!(
                "abandon the unfinished change of {}: remove its sync triggers and {}_shadow",
                u.table, u.table
            ),
        };
        if dry_run {
            out.push((u.script.clone(), Ok(format!("dry run: would {verb}"))));
            continue;
        }
        if u.phase == "swapped" {
            let r = drop_mirror(
                c,
                limits,
                &format!("{}: cleanup", u.script),
                (&format!("deploykit_back_{}", u.table), &u.table),
                &format!("{}_old", u.table),
                &u.script,
            )
            .await;
            out.push((u.script.clone(), r.map(|_| verb).map_err(step_message)));
        } else {
            let s = Shadow::named(&u.script, String::new(), &u.table);
            out.push((
                u.script.clone(),
                s.abort(c, limits)
                    .await
                    .map(|_| verb)
                    .map_err(|e| e.to_string()),
            ));
        }
    }
    Ok(out)
}

pub fn step_message(e: StepError) -> String {
    match e {
        StepError::Db(e) => e.to_string(),
        StepError::Sql(m)
        | StepError::LockTimeout(m)
        | StepError::PartlyApplied(m)
        | StepError::Paused(m) => m,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(sql: &str) -> String {
        parse(Path::new("V9__x.sql"), sql).unwrap_err().to_string()
    }

    #[test]
    fn directives_parse_and_bad_ones_name_their_line() {
        let b = parse(
            Path::new("V9__x.sql"),
            "-- deploykit: batch table=orders key=id size=5000 budget=100ms pause=0ms\nUPDATE orders SET n = 1 WHERE id > ${batch.from} AND id <= ${batch.to};\n",
        )
        .unwrap()
        .unwrap();
        let Online::Batch {
            table, key, pace, ..
        } = b
        else {
            panic!("{b:?}")
        };
        assert_eq!((table.as_str(), key.as_deref()), ("orders", Some("id")));
        assert_eq!(
            (pace.size, pace.budget, pace.pause),
            (5000, Duration::from_millis(100), Duration::ZERO)
        );
        assert!(
            parse(Path::new("V9__x.sql"), "-- deploykit: batchy\nSELECT 1;")
                .unwrap()
                .is_none()
        );

        for (sql, says) in [
            (
                "-- deploykit: batch key=id\nUPDATE t SET n = 1 WHERE id > ${batch.from} AND id <= ${batch.to};",
                "V9__x.sql:1: `-- deploykit: batch` needs table=NAME",
            ),
            (
                "-- deploykit: batch table=t colour=blue\nUPDATE t SET n = 1;",
                "unknown option `colour`",
            ),
            (
                "-- deploykit: batch table=T\nUPDATE t SET n = 1;",
                "lower-case",
            ),
            (
                "-- deploykit: batch table=t size=5\nUPDATE t SET n = 1;",
                "size=5: a row count from 100",
            ),
            (
                "-- deploykit: batch table=t key=id\nUPDATE t SET n = 1 WHERE id > ${batch.from};",
                "V9__x.sql:2: with key=id the statement bounds each batch",
            ),
            (
                "-- deploykit: batch table=t\nUPDATE t SET n = 1;",
                "LIMIT ${batch.size}",
            ),
            (
                "-- deploykit: batch table=t\nUPDATE t SET n = 1 WHERE id IN (SELECT id FROM t LIMIT ${batch.size});\nSELECT 1;",
                "V9__x.sql:3: a batch migration holds exactly one statement",
            ),
            (
                "-- deploykit: shadow table=t\nALTER TABLE ${shadow} ADD COLUMN x int;\nALTER TABLE t ADD COLUMN y int;",
                "V9__x.sql:3: every statement of a shadow migration changes ${shadow}",
            ),
        ] {
            let e = err(sql);
            assert!(e.contains(says), "{sql}\n→ {e}");
        }
    }

    #[test]
    fn batch_placeholders_bind_by_position() {
        assert_eq!(
            bind("UPDATE t SET n = 1 WHERE id > ${batch.from} AND id <= ${batch.to}"),
            "UPDATE t SET n = 1 WHERE id > $1::bigint AND id <= $2::bigint"
        );
        assert_eq!(bind("… LIMIT ${batch.size})"), "… LIMIT $1::bigint)");
    }
}
