//! The deploy journal and the environment lock.
//!
//! Each step of a cutover (or rollback, rollout) is written durably before and after it runs —
//! in the environment's PostgreSQL (`deploy_journal`) when one is configured, else in a
//! JSON-lines file at the environment's journal directory — so a crashed run can be resumed or
//! reversed from any step.
//!
//! Opening the journal takes the environment lock that every tool which changes the
//! environment holds (cutover, strategy_rollout, maintenance_mode): a second one exits 5 naming
//! the holder. With PostgreSQL the lock is a session advisory lock *and* a lease row
//! (`deploy_lock`: tool, pid, host, heartbeat): the holder heartbeats every
//! [`HEARTBEAT`] on the lock's connection and, the moment that fails, cancels its run, which
//! then changes nothing more; a newcomer that finds the advisory lock free but a lease whose
//! process still lives (same host) or whose heartbeat is fresh (another host) is refused. The
//! file journal is locked with an OS lock (`flock`) on a file that names its holder.
//! docs/decisions/0013-environment-lock.md.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

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
);
CREATE TABLE IF NOT EXISTS deploy_lock (
    environment  text PRIMARY KEY,
    token        text NOT NULL,
    tool         text NOT NULL,
    pid          integer NOT NULL,
    host         text NOT NULL,
    backend_pid  integer NOT NULL,
    proc_start   bigint NOT NULL DEFAULT 0,
    since        timestamptz NOT NULL DEFAULT clock_timestamp(),
    heartbeat    timestamptz NOT NULL DEFAULT clock_timestamp()
);
-- Journals made before deployment ids (issue 23) gain the column; old rows read as ''.
ALTER TABLE deploy_journal ADD COLUMN IF NOT EXISTS deployment_id text NOT NULL DEFAULT ''";

/// How often the holder proves it still has the lock's session.
pub const HEARTBEAT: Duration = Duration::from_millis(500);
/// How long a lease from another host counts as held after its last heartbeat (its process
/// cannot be asked whether it lives).
pub const LEASE_TTL: Duration = Duration::from_secs(10);

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
    /// The pipeline run's id (`DEPLOYKIT_DEPLOYMENT_ID`): set by [`Journal::write`] when empty,
    /// so every row of a deployment can be found by it.
    #[serde(default)]
    pub deployment_id: String,
}

/// `--journal-dir`, shared by every tool that reads or writes the file journal.
#[derive(Debug, Clone, clap::Args)]
pub struct JournalArgs {
    /// Where the journal and its lock live when the environment has no database [default: the
    /// environment's `journal_dir`, else `.deploykit` beside the config file].
    #[arg(long, global = true, value_name = "DIR")]
    pub journal_dir: Option<PathBuf>,
}

impl JournalArgs {
    /// One place per environment whatever the working directory: the flag, else the config's
    /// `journal_dir` (relative to the config file), else `.deploykit` beside the config file.
    pub fn dir(&self, ctx: &crate::cli::Context) -> Result<PathBuf> {
        self.dir_of(ctx, ctx.env()?)
    }

    /// The journal directory of any environment of the config (promotion reads staging's
    /// journal from a production run).
    pub fn dir_of(
        &self,
        ctx: &crate::cli::Context,
        env: &crate::config::Environment,
    ) -> Result<PathBuf> {
        if let Some(d) = &self.journal_dir {
            return Ok(d.clone());
        }
        let base = ctx
            .config
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let base = std::fs::canonicalize(base).unwrap_or_else(|_| base.to_path_buf());
        Ok(match &env.journal_dir {
            Some(d) => base.join(d),
            None => base.join(".deploykit"),
        })
    }

    /// Open the environment's journal and take its lock for `ctx.tool`: the one way a tool that
    /// changes an environment starts. `on_lost` is cancelled if the lock is lost while held.
    pub async fn lock(
        &self,
        ctx: &crate::cli::Context,
        on_lost: CancellationToken,
    ) -> Result<Journal> {
        let env = ctx.env()?;
        Journal::open(
            ctx.tool,
            ctx.env_name.as_str(),
            env,
            ctx.timeout,
            self.dir(ctx)?,
            on_lost,
        )
        .await
    }
}

/// Who holds an environment lock: enough for an operator to find it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Holder {
    pub tool: String,
    pub pid: u32,
    pub host: String,
    pub since: String,
    /// The process's start time (clock ticks since boot, /proc/PID/stat): with the pid, it
    /// names one process even after the pid is recycled.
    #[serde(default)]
    pub proc_start: u64,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (pid {} on {}, since {})",
            self.tool, self.pid, self.host, self.since
        )
    }
}

impl Holder {
    fn me(tool: &str) -> Holder {
        Holder {
            tool: tool.into(),
            pid: std::process::id(),
            host: hostname(),
            since: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            proc_start: proc_start(std::process::id()).unwrap_or(0),
        }
    }

    /// On this host, whether the holder's process still runs (same pid *and* start time, so a
    /// recycled pid is not mistaken for it). `None` on another host: only its lease can tell.
    fn alive_here(&self) -> Option<bool> {
        if self.host != hostname() {
            return None;
        }
        Some(match proc_start(self.pid) {
            None => false,
            Some(t) => self.proc_start == 0 || t == self.proc_start,
        })
    }
}

/// Field 22 of /proc/PID/stat (start time in clock ticks since boot); the fields are counted
/// after the command name's closing parenthesis, since the name may hold spaces.
fn proc_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var(crate::env_vars::EnvVars::HOSTNAME).ok())
        .unwrap_or_else(|| "localhost".into())
}

enum Store {
    Pg(Arc<tokio_postgres::Client>),
    File(PathBuf),
}

/// The held lock; `lost` is set (with why) when the PostgreSQL session behind it went away.
enum Lock {
    Pg {
        key: i64,
        token: String,
        heartbeat: tokio::task::JoinHandle<()>,
    },
    File(std::fs::File),
    /// An emergency's record: written without the lock, which a hung run may hold.
    None,
}

pub struct Journal {
    store: Store,
    lock: Lock,
    env_name: String,
    lost: Arc<Mutex<Option<String>>>,
}

fn db_err(e: tokio_postgres::Error) -> Error {
    crate::db::error("PostgreSQL (deploy journal)", e)
}

fn lock_key(env: &str) -> i64 {
    // Stable per environment, distinct from db_migrate's key.
    let h = crate::migrate::sha256_hex(format!("deploykit cutover {env}").as_bytes());
    i64::from_str_radix(&h[..15], 16).unwrap_or(42)
}

/// Serialises the journal's CREATEs: two first-ever runs at once would otherwise race on the
/// catalog and one fail with a unique violation instead of a clean exit 5.
const DDL_KEY: i64 = 0x0064_6570_6c6f_796a; // "deployj"

impl Journal {
    /// Open the journal and take the environment lock for `tool` (exit 5 naming the holder if
    /// another run has it). `on_lost` is cancelled if the lock is lost while held.
    pub async fn open(
        tool: &str,
        env_name: &str,
        env: &crate::config::Environment,
        timeout: Duration,
        file_dir: PathBuf,
        on_lost: CancellationToken,
    ) -> Result<Journal> {
        if env.database.is_some()
            && let Ok(url) = env.database_url()
        {
            let c = crate::db::connect(&url, timeout).await?;
            return Journal::open_pg(c, tool, env_name, on_lost).await;
        }
        std::fs::create_dir_all(&file_dir)
            .map_err(|e| Error::io("create journal directory", &file_dir, e))?;
        let path = file_dir.join(format!("journal-{env_name}.jsonl"));
        let lock_path = file_dir.join(format!("journal-{env_name}.lock"));
        let mut lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io("open journal lock", &lock_path, e))?;
        if lock.try_lock().is_err() {
            let mut text = String::new();
            let _ = lock.read_to_string(&mut text);
            let who = serde_json::from_str::<Holder>(&text)
                .map(|h| h.to_string())
                .unwrap_or_else(|_| "another run".into());
            return Err(Error::Conflict(format!(
                "the environment lock of {env_name} is held by {who} ({}); wait for it to finish, or check `cutover status`",
                lock_path.display()
            )));
        }
        // Name the holder inside the locked file, for the next one to read.
        let me = serde_json::to_string(&Holder::me(tool)).expect("json");
        let _ = lock.set_len(0);
        let _ = lock.rewind();
        let _ = lock.write_all(me.as_bytes());
        Ok(Journal {
            store: Store::File(path),
            lock: Lock::File(lock),
            env_name: env_name.into(),
            lost: Arc::default(),
        })
    }

    /// The PostgreSQL journal on an open connection: create the tables if needed, take the
    /// advisory lock and the lease, start the heartbeat.
    pub async fn open_pg(
        c: tokio_postgres::Client,
        tool: &str,
        env_name: &str,
        on_lost: CancellationToken,
    ) -> Result<Journal> {
        c.batch_execute(&format!(
            "BEGIN; SELECT pg_advisory_xact_lock({DDL_KEY}); {CREATE}; COMMIT"
        ))
        .await
        .map_err(db_err)?;
        let key = lock_key(env_name);
        let me = Holder::me(tool);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let got: bool = c
                .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
                .await
                .map_err(db_err)?
                .get(0);
            let lease = lease(&c, env_name).await?;
            match (got, lease) {
                (true, None) => break,
                (true, Some((h, _, age))) => {
                    // The previous holder lost its session. Its process may still be changing
                    // things (it stops on its next heartbeat): refused while it can be alive.
                    let alive = h.alive_here().unwrap_or(age < LEASE_TTL);
                    if !alive {
                        break;
                    }
                    c.query_one("SELECT pg_advisory_unlock($1)", &[&key])
                        .await
                        .map_err(db_err)?;
                    return Err(Error::Conflict(format!(
                        "the environment lock of {env_name} was lost by {h}, which may still be running (last heartbeat {:.1} s ago); it stops by itself — retry once it has exited, at most {} s from now",
                        age.as_secs_f64(),
                        LEASE_TTL.saturating_sub(age).as_secs()
                    )));
                }
                (false, Some((h, backend, _)))
                    if h.alive_here() == Some(false) && attempts < 20 =>
                {
                    // Killed (-9) on this host: its session may linger a moment; end it.
                    tracing::info!("the lock holder {h} is dead: ending its database session");
                    let _ = c
                        .query_one("SELECT pg_terminate_backend($1)", &[&backend])
                        .await;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                (false, lease) => {
                    let who = lease.map_or("another run".into(), |(h, _, _)| h.to_string());
                    return Err(Error::Conflict(format!(
                        "the environment lock of {env_name} is held by {who}; wait for it to finish, or check `cutover status`"
                    )));
                }
            }
        }
        let token = format!("{}:{}:{}", me.host, me.pid, crate::cutover::now_ms());
        c.execute(
            "INSERT INTO deploy_lock (environment, token, tool, pid, host, backend_pid, proc_start)
             VALUES ($1, $2, $3, $4, $5, pg_backend_pid(), $6)
             ON CONFLICT (environment) DO UPDATE SET token = $2, tool = $3, pid = $4, host = $5,
                 backend_pid = pg_backend_pid(), proc_start = $6, since = clock_timestamp(),
                 heartbeat = clock_timestamp()",
            &[
                &env_name,
                &token,
                &tool,
                &(me.pid as i32),
                &me.host,
                &(me.proc_start as i64),
            ],
        )
        .await
        .map_err(db_err)?;
        let c = Arc::new(c);
        let lost: Arc<Mutex<Option<String>>> = Arc::default();
        let heartbeat = tokio::spawn(heartbeat(
            c.clone(),
            env_name.to_string(),
            token.clone(),
            lost.clone(),
            on_lost,
        ));
        Ok(Journal {
            store: Store::Pg(c),
            lock: Lock::Pg {
                key,
                token,
                heartbeat,
            },
            env_name: env_name.into(),
            lost,
        })
    }

    /// Why the lock was lost, if it was.
    pub fn lost(&self) -> Option<String> {
        self.lost.lock().expect("lost").clone()
    }

    fn lost_error(&self, why: &str) -> Error {
        Error::Conflict(format!(
            "lost the environment lock of {} ({why}): stopped, nothing more was changed; check `cutover status`, then resume or roll back",
            self.env_name
        ))
    }

    pub async fn write(&self, e: &Entry) -> Result<()> {
        // A run that lost its lock changes nothing more, not even the journal.
        if let Some(why) = self.lost() {
            return Err(self.lost_error(&why));
        }
        // Journal rows are read back into reports and pages: no secret is ever stored.
        let e = &Entry {
            detail: crate::redact::redact(&e.detail),
            deployment_id: if e.deployment_id.is_empty() {
                crate::deploy_metrics::deployment_id()
            } else {
                e.deployment_id.clone()
            },
            ..e.clone()
        };
        match &self.store {
            Store::Pg(c) => {
                c.execute(
                    // `at` empty (every tool): the database's clock; set: history being imported.
                    "INSERT INTO deploy_journal (run_id, environment, action, from_color, to_color, step, state, detail, at, deployment_id)
                     VALUES ($1,$2,$3,$4,$5,$6,$7,$8, COALESCE(NULLIF($9, '')::timestamptz, clock_timestamp()), $10)",
                    &[&e.run_id, &e.environment, &e.action, &e.from_color, &e.to_color, &e.step, &e.state, &e.detail, &e.at, &e.deployment_id],
                )
                .await
                .map_err(db_err)?;
            }
            Store::File(path) => {
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
        Ok(match &self.store {
            // The database picks the run: the journal grows with every deploy.
            Store::Pg(c) => pg_entries(c, env_name, Some(actions)).await?,
            Store::File(path) => last_of(file_entries(path, env_name), actions),
        })
    }

    /// Every entry of the environment, oldest first.
    pub async fn entries(&self, env_name: &str) -> Result<Vec<Entry>> {
        Ok(match &self.store {
            Store::Pg(c) => pg_entries(c, env_name, None).await?,
            Store::File(path) => file_entries(path, env_name),
        })
    }

    /// The journal opened for an emergency's record **without** the environment lock: an
    /// emergency must not wait for (or be refused by) the hung run that may hold it. Its rows
    /// are appended like any other; nothing else may be done with it.
    pub async fn open_unlocked(
        env_name: &str,
        env: &crate::config::Environment,
        timeout: Duration,
        file_dir: &Path,
    ) -> Result<Journal> {
        let store = if env.database.is_some()
            && let Ok(url) = env.database_url()
        {
            let c = crate::db::connect(&url, timeout).await?;
            c.batch_execute(&format!(
                "BEGIN; SELECT pg_advisory_xact_lock({DDL_KEY}); {CREATE}; COMMIT"
            ))
            .await
            .map_err(db_err)?;
            Store::Pg(Arc::new(c))
        } else {
            std::fs::create_dir_all(file_dir)
                .map_err(|e| Error::io("create journal directory", file_dir, e))?;
            Store::File(file_dir.join(format!("journal-{env_name}.jsonl")))
        };
        Ok(Journal {
            store,
            lock: Lock::None,
            env_name: env_name.into(),
            lost: Arc::default(),
        })
    }

    /// Every entry of the environment without taking the lock (a report may read while a
    /// cutover runs) and without creating anything: no journal yet means no entries.
    pub async fn read(
        env_name: &str,
        env: &crate::config::Environment,
        timeout: Duration,
        file_dir: &Path,
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

    /// Who holds the environment lock now, read without taking it (for `status`): `None` when
    /// nobody does.
    pub async fn holder(
        env_name: &str,
        env: &crate::config::Environment,
        timeout: Duration,
        file_dir: &Path,
    ) -> Result<Option<Holder>> {
        if env.database.is_some()
            && let Ok(url) = env.database_url()
        {
            let c = crate::db::connect(&url, timeout).await?;
            let exists: bool = c
                .query_one("SELECT to_regclass('deploy_lock') IS NOT NULL", &[])
                .await
                .map_err(db_err)?
                .get(0);
            if !exists {
                return Ok(None);
            }
            return Ok(lease(&c, env_name)
                .await?
                .and_then(|(h, _, age)| h.alive_here().unwrap_or(age < LEASE_TTL).then_some(h)));
        }
        let path = file_dir.join(format!("journal-{env_name}.lock"));
        let Ok(f) = std::fs::File::open(&path) else {
            return Ok(None);
        };
        if f.try_lock_shared().is_ok() {
            return Ok(None);
        }
        Ok(std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok()))
    }

    /// Run `work` under the lock, then give the lock back. A lost lock explains whatever stopped
    /// the work, so it is the error reported; otherwise the work's own result.
    pub async fn hold<T>(self, work: impl AsyncFnOnce(&Journal) -> Result<T>) -> Result<T> {
        let r = work(&self).await;
        self.release().await?;
        r
    }

    /// Give the lock back. Err when it had been lost while held: the run stopped early.
    pub async fn release(self) -> Result<()> {
        let lost = self.lost();
        match &self.lock {
            Lock::Pg {
                key,
                token,
                heartbeat,
            } => {
                heartbeat.abort();
                if let Store::Pg(c) = &self.store
                    && lost.is_none()
                {
                    let _ = c
                        .execute(
                            "DELETE FROM deploy_lock WHERE environment = $1 AND token = $2",
                            &[&self.env_name, token],
                        )
                        .await;
                    let _ = c.query_one("SELECT pg_advisory_unlock($1)", &[key]).await;
                }
            }
            Lock::File(f) => {
                let _ = f.set_len(0);
                let _ = f.unlock();
            }
            Lock::None => {}
        }
        match lost {
            Some(why) => Err(self.lost_error(&why)),
            None => Ok(()),
        }
    }
}

/// The lease row of `env_name`: holder, its backend pid, time since its last heartbeat.
async fn lease(
    c: &tokio_postgres::Client,
    env_name: &str,
) -> Result<Option<(Holder, i32, Duration)>> {
    Ok(c
        .query_opt(
            "SELECT tool, pid, host, to_char(since AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                    backend_pid, extract(epoch FROM clock_timestamp() - heartbeat)::float8, proc_start
             FROM deploy_lock WHERE environment = $1",
            &[&env_name],
        )
        .await
        .map_err(db_err)?
        .map(|r| {
            let h = Holder {
                tool: r.get(0),
                pid: r.get::<_, i32>(1) as u32,
                host: r.get(2),
                since: r.get(3),
                proc_start: r.get::<_, i64>(6) as u64,
            };
            let age = Duration::from_secs_f64(r.get::<_, f64>(5).max(0.0));
            (h, r.get(4), age)
        }))
}

/// Prove every [`HEARTBEAT`] that the lease is still ours on a live session; the first time
/// that fails, record why and cancel the run.
async fn heartbeat(
    c: Arc<tokio_postgres::Client>,
    env_name: String,
    token: String,
    lost: Arc<Mutex<Option<String>>>,
    on_lost: CancellationToken,
) {
    let mut every = tokio::time::interval(HEARTBEAT);
    loop {
        every.tick().await;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&env_name, &token];
        let beat = c.execute(
            "UPDATE deploy_lock SET heartbeat = clock_timestamp()
             WHERE environment = $1 AND token = $2 AND backend_pid = pg_backend_pid()",
            &params,
        );
        let why = match tokio::time::timeout(HEARTBEAT * 4, beat).await {
            Ok(Ok(1)) => continue,
            Ok(Ok(_)) => "its lease was taken over".to_string(),
            Ok(Err(e)) => format!("its database session ended: {}", crate::db::describe(&e)),
            Err(_) => format!("no heartbeat answer within {:?}", HEARTBEAT * 4),
        };
        tracing::error!(
            "lost the environment lock of {env_name} ({why}): stopping; nothing more will be changed"
        );
        *lost.lock().expect("lost") = Some(why);
        on_lost.cancel();
        return;
    }
}

/// The entries of the latest run that has an entry of one of `actions`.
pub fn last_of(all: Vec<Entry>, actions: &[&str]) -> Vec<Entry> {
    let last = all
        .iter()
        .rev()
        .find(|e| actions.contains(&e.action.as_str()))
        .map(|e| e.run_id.clone());
    all.into_iter()
        .filter(|e| Some(&e.run_id) == last.as_ref())
        .collect()
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
                to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), deployment_id
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
        deployment_id: r.get(9),
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
