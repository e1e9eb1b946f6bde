//! db_migrate's commands below the flags: migrate (backup, lock, apply, verify), rollback,
//! rehearse on a scratch database, refresh from another environment, and the reports of
//! info, validate and verify. `cmd/db_migrate.rs` only turns flags into these calls.

use crate::cli::Context;
use crate::config::EnvName;
use crate::error::{Error, Result};
use crate::migrate::{self, Migration, Version, backup, fingerprint, history, run};
use crate::report::{Check, Report};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One check per file: its lint findings, or ok.
pub fn lint_report(report: &mut Report, all: &[Migration], findings: &[migrate::lint::Finding]) {
    for m in all {
        let name = m.up.file_name();
        let mine: Vec<_> = findings.iter().filter(|f| f.file == name).collect();
        let msg = mine
            .iter()
            .map(|f| {
                let level = match f.severity {
                    migrate::lint::Severity::Error => "error",
                    migrate::lint::Severity::Warning => "warning",
                };
                format!("line {}: {level} [{}] {}", f.line, f.rule, f.message)
            })
            .collect::<Vec<_>>()
            .join("; ");
        let data = serde_json::to_value(&mine).unwrap_or_default();
        report.push(
            if mine
                .iter()
                .any(|f| f.severity == migrate::lint::Severity::Error)
            {
                Check::fail("lint", name, msg).data(data)
            } else if mine.is_empty() {
                Check::ok("lint", name)
            } else {
                Check::warn("lint", name, msg).data(data)
            },
        );
    }
}

pub async fn connect(ctx: &Context) -> Result<(tokio_postgres::Client, crate::redact::Secret)> {
    let env = ctx.env()?;
    let url = env.database_url()?;
    let c = crate::db::connect(&url, env.timeouts.connect.0.max(ctx.timeout)).await?;
    Ok((c, url))
}

/// Each table's estimated rows (its statistics; a never-analysed table is left out).
pub async fn sizes_of(c: &tokio_postgres::Client) -> Result<BTreeMap<String, i64>> {
    let rows = c
        .query(
            "SELECT relname::text, reltuples::bigint FROM pg_class
              WHERE relkind IN ('r', 'p') AND relnamespace = ANY(current_schemas(false)::regnamespace[])
                AND reltuples >= 0",
            &[],
        )
        .await
        .map_err(|e| crate::db::error("PostgreSQL", e))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Table sizes for lint when the environment's database is reachable; otherwise a note, and
/// lint judges without them.
pub async fn table_sizes(ctx: &Context, report: &mut Report) -> Option<BTreeMap<String, i64>> {
    let sizes = async {
        let (c, _) = connect(ctx).await?;
        sizes_of(&c).await
    }
    .await;
    match sizes {
        Ok(s) => {
            report.note(format!(
                "table sizes from the {} database ({} tables)",
                ctx.env_name,
                s.len()
            ));
            Some(s)
        }
        Err(e) => {
            report.note(format!("not connected ({e}): unbounded UPDATE/DELETE are warnings, not judged by table size"));
            None
        }
    }
}

pub fn limits(
    ctx: &Context,
    lock: Option<Duration>,
    stmt: Option<Duration>,
) -> Result<run::Limits> {
    let m = &ctx.env()?.migrate;
    Ok(run::Limits {
        lock_timeout: lock.unwrap_or(m.lock_timeout.0),
        statement_timeout: stmt.unwrap_or(m.statement_timeout.0),
        max_retries: m.max_retries,
        lock_wait: m.lock_wait.0,
        cancel: ctx.cancel.clone(),
    })
}

pub fn backup_check(b: &backup::Backup) -> Check {
    Check::ok("backup", "Backup taken and verified")
        .message(format!(
            "{} ({} bytes, {} entries, sha256 {})",
            b.path.display(),
            b.bytes,
            b.entries,
            &b.sha256[..16]
        ))
        .data(serde_json::to_value(b).unwrap_or_default())
}

pub fn info(report: &mut Report, all: &[Migration], applied: &[history::Applied]) {
    for a in applied {
        let file = all.iter().find(|m| m.version == a.version);
        let name = format!("V{} {}", a.version, a.description);
        let when = format!(
            "applied {} by {} in {} ms",
            a.installed_on, a.installed_by, a.execution_ms
        );
        report.push(match file {
            None => Check::warn(
                "applied",
                name,
                format!("{when}; its file is missing from the migrations directory"),
            ),
            Some(_) if a.baseline => Check::ok("applied", name).message(format!(
                "{when}; Flyway baseline: every file up to it counts as applied"
            )),
            Some(m) if !m.up.matches(&a.checksum) => Check::fail(
                "applied",
                name,
                format!("{when}; the file changed since (checksum differs)"),
            )
            .hint("never edit an applied migration: restore the file and add a new migration"),
            Some(_) => Check::ok("applied", name).message(when),
        });
    }
    let baseline = applied
        .iter()
        .filter(|a| a.baseline)
        .map(|a| &a.version)
        .max();
    for m in all.iter().filter(|m| {
        !applied.iter().any(|a| a.version == m.version) && baseline.is_none_or(|b| &m.version > b)
    }) {
        report.push(Check::skip(
            "pending",
            format!("V{} {}", m.version, m.description),
            "pending",
        ));
    }
}

/// Unfinished online changes and old tables kept for a swap back.
pub async fn online_info(report: &mut Report, c: &tokio_postgres::Client) -> Result<()> {
    for u in super::online::unfinished(c).await? {
        let check = match (u.phase.as_str(), &u.stale) {
            ("swapped", None) => Check::ok("online", u.script).message(format!(
                "applied by shadow table; {}_old kept (synced back) for a swap back: `db_migrate cleanup` drops it once the deploy is confirmed",
                u.table
            )),
            ("swapped", Some(why)) => Check::warn(
                "online",
                u.script,
                format!("{}_old stopped receiving writes ({why}): it can no longer be swapped back", u.table),
            )
            .hint("`db_migrate cleanup` drops it"),
            (phase, _) => Check::warn(
                "online",
                u.script,
                format!(
                    "unfinished ({phase}): {} rows in {} batches done on {}",
                    u.rows_done, u.batches, u.table
                ),
            )
            .hint("`db_migrate migrate` continues it where it stopped"),
        };
        report.push(check);
    }
    Ok(())
}

pub fn validate(report: &mut Report, all: &[Migration], applied: &[history::Applied]) {
    let mut changed = 0;
    for a in applied {
        if let Some(m) = all.iter().find(|m| m.version == a.version)
            && !a.baseline
            && !m.up.matches(&a.checksum)
        {
            changed += 1;
            report.push(
                Check::fail(
                    "validate",
                    format!("{} unchanged since applied", m.up.file_name()),
                    "the file's checksum differs from the one recorded when it was applied",
                )
                .hint("restore the applied file from git; put changes in a new migration"),
            );
        }
    }
    if changed == 0 {
        report.push(
            Check::ok("validate", "Applied migrations unchanged")
                .message(format!("{} checked", applied.len())),
        );
    }
}

pub fn verify(report: &mut Report, expected: Option<Version>, applied: &[history::Applied]) {
    let current = applied.iter().map(|a| a.version.clone()).max();
    // One name whatever the version (JUnit history); the versions go into the message.
    let name = "Schema version";
    report.push(match (current, expected) {
        (Some(c), Some(e)) if c == e => Check::ok("verify", name)
            .message(format!("highest applied version is {c}, as expected")),
        (Some(c), Some(e)) => Check::fail(
            "verify",
            name,
            format!("highest applied version is {c}, expected {e}"),
        )
        .hint("run db_migrate migrate (or rollback) to reach it"),
        (None, Some(e)) => Check::fail(
            "verify",
            name,
            format!("no migration applied, expected {e}"),
        )
        .hint("run db_migrate migrate"),
        (_, None) => Check::fail(
            "verify",
            name,
            "no expected version: no migration files and no --expect",
        ),
    });
}

/// The commands that change or inspect a database, below the flags: `dry_run` plans without
/// changing anything.
pub struct Ops {
    pub dry_run: bool,
    /// The directory's `R__` files, applied after the versioned ones when new or changed.
    pub repeatables: Vec<migrate::Repeatable>,
    /// Apply a never-applied file older than the newest applied one (Flyway's `outOfOrder`).
    pub out_of_order: bool,
}

impl Ops {
    /// The repeatables a full migrate would (re-)apply: new, or changed since last applied
    /// (`Some(true)`: re-applied). None with a target version: they run after everything.
    async fn repeatables_due(
        &self,
        c: &tokio_postgres::Client,
        store: &history::Store,
        target: Option<&Version>,
    ) -> Result<Vec<(&migrate::Repeatable, bool)>> {
        if target.is_some() {
            return Ok(vec![]);
        }
        let recorded = history::repeatables(c, store).await?;
        Ok(self
            .repeatables
            .iter()
            .filter_map(|r| match recorded.get(&r.script.file_name()) {
                Some(c) if r.script.matches(c) => None,
                Some(_) => Some((r, true)),
                None => Some((r, false)),
            })
            .collect())
    }
}

impl Ops {
    pub async fn refresh(
        &self,
        ctx: &Context,
        report: &mut Report,
        all: &[Migration],
        source_env: EnvName,
        rules_path: &std::path::Path,
        no_backup: Option<&str>,
    ) -> Result<()> {
        use migrate::refresh;
        if ctx.env_name == EnvName::Production {
            return Err(Error::Usage(
                "refresh replaces the target's data: it never runs against production".into(),
            ));
        }
        if source_env == ctx.env_name {
            return Err(Error::Usage(format!(
                "--source-environment {source_env} is the target itself: name the environment to copy from"
            )));
        }
        let env = ctx.env()?;
        let target = env.database_url()?;
        let source = ctx.config.environment(source_env)?.database_url()?;
        if source.expose() == target.expose() {
            return Err(Error::Usage(format!(
                "{source_env} and {} name the same database",
                ctx.env_name
            )));
        }
        let rules = refresh::Rules::load(rules_path)?;
        let timeout = env.timeouts.connect.0.max(ctx.timeout);
        // Classify before touching anything: an unclassified column stops the refresh here.
        let tables = refresh::tables(&crate::db::connect(&source, timeout).await?).await?;
        let (problems, warnings) = refresh::check_rules(&rules, &tables);
        for w in warnings {
            report.note(format!("rules: {w} (a pending migration may add it)"));
        }
        if !problems.is_empty() {
            return Err(Error::config(
                rules_path.display().to_string(),
                format!(
                    "{} problem(s), nothing was changed: {}",
                    problems.len(),
                    problems.join("; ")
                ),
            ));
        }
        let needs_key = rules
            .tables
            .values()
            .any(|cols| cols.values().any(refresh::Rule::needs_key));
        let key = match needs_key {
            true => match std::env::var(&rules.hash_key_env) {
                Ok(k) if k.len() >= 16 => {
                    crate::redact::register(&k);
                    Some(crate::redact::Secret::new(k))
                }
                _ => {
                    return Err(Error::config(
                        rules_path.display().to_string(),
                        format!(
                            "hash and fake rules need a key of at least 16 characters in ${}",
                            rules.hash_key_env
                        ),
                    ));
                }
            },
            false => None,
        };
        let rows_note = |t: &refresh::Table| {
            let r = rules.tables.get(&(t.schema.clone(), t.name.clone()));
            let anonymized = r.map_or(0, |r| {
                r.values().filter(|x| **x != refresh::Rule::Keep).count()
            });
            format!("{} columns, {anonymized} anonymized", t.columns.len())
        };
        if self.dry_run {
            for t in &tables {
                report.push(Check::skip(
                    "refresh",
                    t.label(),
                    format!("dry run: would copy ({})", rows_note(t)),
                ));
            }
            report.note("dry run: nothing changed");
            return Ok(());
        }
        match no_backup {
            Some(reason) => report.note(format!("backup skipped: {reason}")),
            None => {
                let start = Instant::now();
                let b = backup::take(
                    &target,
                    &env.migrate.backups_dir,
                    env.migrate.backup_timeout.0,
                )
                .await?;
                report.push(backup_check(&b).took(start.elapsed()));
            }
        }
        let start = Instant::now();
        // Bounded as a whole: dropping the unfinished refresh drops its transaction (rolled back).
        let limit = env.migrate.backup_timeout.0;
        let outcome = tokio::time::timeout(
            limit,
            refresh::refresh(&source, &target, &rules, key.as_ref(), limit, &ctx.cancel),
        )
        .await
        .unwrap_or_else(|_| {
            Err(Error::unreachable(
                "PostgreSQL (refresh)",
                format!("did not finish within {limit:?} (migrate.backup_timeout)"),
            ))
        });
        let copied = match outcome {
            Ok(c) => c,
            Err(e) => {
                report.push(
                    Check::fail("refresh", "Anonymized data restored", e.to_string())
                        .hint(format!("{} is unchanged (one transaction); fix the cause and run the refresh again", ctx.env_name))
                        .took(start.elapsed()),
                );
                return Ok(());
            }
        };
        let rows: u64 = copied.iter().map(|c| c.rows).sum();
        let anonymized: usize = copied.iter().map(|c| c.anonymized_columns).sum();
        report.push(
            Check::ok("refresh", "Anonymized data restored")
                .message(format!(
                    "{} table(s), {rows} row(s) from {source_env}; {anonymized} column(s) anonymized; foreign keys re-validated",
                    copied.len()
                ))
                .data(serde_json::to_value(&copied).unwrap_or_default())
                .took(start.elapsed()),
        );
        self.migrate(
            ctx,
            report,
            all,
            None,
            Some("the refresh took its own backup"),
            false,
            None,
            None,
        )
        .await?;
        let (client, _) = connect(ctx).await?;
        let applied = history::applied(&client).await?;
        verify(report, all.last().map(|m| m.version.clone()), &applied);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn migrate(
        &self,
        ctx: &Context,
        report: &mut Report,
        all: &[Migration],
        target: Option<&Version>,
        no_backup: Option<&str>,
        no_wait: bool,
        lock_timeout: Option<Duration>,
        statement_timeout: Option<Duration>,
    ) -> Result<()> {
        if let Some(t) = target
            && !all.iter().any(|m| &m.version == t)
        {
            return Err(Error::Usage(format!("no migration file has version {t}")));
        }
        let limits = limits(ctx, lock_timeout, statement_timeout)?;
        let (mut client, url) = connect(ctx).await?;
        if self.dry_run {
            let store = history::store(&client).await?;
            let applied = history::applied_in(&client, &store).await?;
            for m in run::pending(all, &applied, target, self.out_of_order)? {
                if let Some(online) = &m.up.online {
                    report.push(Check::skip(
                        "migrations",
                        format!("V{} {}", m.version, m.description),
                        format!(
                            "dry run: would apply {}: {} with lock_timeout {:?} per batch",
                            m.up.file_name(),
                            super::online::dry_run_note(&client, &m.up, online).await?,
                            limits.lock_timeout
                        ),
                    ));
                    continue;
                }
                report.push(Check::skip(
                    "migrations",
                    format!("V{} {}", m.version, m.description),
                    format!(
                        "dry run: would apply {}{} with lock_timeout {:?}, statement_timeout {:?}",
                        m.up.file_name(),
                        match m.up.why_no_transaction() {
                            Some(why) => format!(" statement by statement, outside a transaction ({why}): a failure part-way leaves the statements before it applied"),
                            None => " in one transaction".to_string(),
                        },
                        limits.lock_timeout,
                        limits.statement_timeout
                    ),
                ));
            }
            for (r, again) in self.repeatables_due(&client, &store, target).await? {
                report.push(Check::skip(
                    "migrations",
                    format!("R {}", r.description),
                    format!(
                        "dry run: would {} {} after the versioned migrations",
                        if again { "re-apply (changed)" } else { "apply" },
                        r.script.file_name()
                    ),
                ));
            }
            report.note("dry run: nothing applied");
            return Ok(());
        }
        run::lock(&client, no_wait, limits.lock_wait, &ctx.cancel).await?;
        let result = async {
            let store = history::store(&client).await?;
            run::ensure_history(&client, &store).await?;
            // Flyway's rule: a failed row stops every migrate until it is repaired.
            if let Some(f) = history::flyway_failed(&client, &store).await?.first() {
                return Err(Error::Conflict(format!(
                    "Flyway's history ({}) holds a failed migration: {} (version {}): fix what it left in the database, then remove the row with `db_migrate repair`",
                    store.table(),
                    f.script,
                    f.version.as_deref().unwrap_or("none")
                )));
            }
            if store.is_flyway() {
                report.note(format!("history: Flyway's {}, adopted (Flyway checksums; new rows as Flyway writes them)", store.table()));
            }
            let applied = history::applied_in(&client, &store).await?;
            for a in &applied {
                if let Some(m) = all.iter().find(|m| m.version == a.version)
                    && !a.baseline
                    && !m.up.matches(&a.checksum)
                {
                    return Err(Error::Conflict(format!("{} changed after it was applied; run db_migrate validate", m.up.file_name())));
                }
            }
            let pending = run::pending(all, &applied, target, self.out_of_order)?;
            let repeat = self.repeatables_due(&client, &store, target).await?;
            if pending.is_empty() && repeat.is_empty() {
                report.push(Check::ok("migrations", "Nothing to do").message(format!(
                    "schema is at {}",
                    applied.iter().max_by_key(|a| a.rank).map_or("nothing applied".into(), |a| a.version.to_string())
                )));
                return Ok(());
            }
            let env = ctx.env()?;
            if matches!(ctx.env_name, EnvName::Staging | EnvName::Production) {
                match no_backup {
                    Some(reason) => report.note(format!("backup skipped: {reason}")),
                    None => {
                        let start = Instant::now();
                        let b = backup::take(&url, &env.migrate.backups_dir, env.migrate.backup_timeout.0).await?;
                        report.push(backup_check(&b).took(start.elapsed()));
                    }
                }
            }
            let monitor = Arc::new(crate::db::connect(&url, env.timeouts.connect.0.max(ctx.timeout)).await?);
            let pid = run::backend_pid(&client).await?;
            let total = pending.len();
            let mut stopped = false;
            for (i, m) in pending.into_iter().enumerate() {
                stopped = true;
                if ctx.cancel.is_cancelled() {
                    report.note("interrupted: remaining migrations not started");
                    break;
                }
                tracing::info!("[{}/{total}] applying {}", i + 1, m.up.file_name());
                let name = format!("V{} {}", m.version, m.description);
                let start = Instant::now();
                match run::step(&mut client, pid, monitor.clone(), &m.up, &limits, &run::record_apply(m, &store)).await {
                    Ok(stats) => {
                        let verb = match m.up.why_no_transaction() {
                            Some(why) => format!("applied outside a transaction ({why})"),
                            None => "applied".to_string(),
                        };
                        report.push(run::stats_check(name, &verb, &stats).took(start.elapsed()))
                    }
                    Err(run::StepError::Db(e)) => return Err(e),
                    Err(run::StepError::Sql(msg) | run::StepError::LockTimeout(msg)) => {
                        report.push(Check::fail("migrations", name, msg).hint("nothing of this migration was applied; fix it and run migrate again").took(start.elapsed()));
                        break;
                    }
                    Err(run::StepError::Paused(msg)) => {
                        report.push(Check::fail("migrations", name, msg).hint("the batches done are committed and their progress saved (deploykit_online_progress); run migrate again to continue after the last one — the migration is recorded as applied only when its last batch is in").took(start.elapsed()));
                        break;
                    }
                    Err(run::StepError::PartlyApplied(msg)) => {
                        run::record_failure(&client, &store, m, &msg).await?;
                        report.push(Check::fail("migrations", name, msg).hint("the statements that ran stay applied and the history holds a failed row for this version: make them idempotent (IF NOT EXISTS) or undo them, fix the failing one, and run migrate again").took(start.elapsed()));
                        break;
                    }
                }
                stopped = false;
            }
            // Repeatables last, and only once every versioned migration is in (Flyway's order).
            if stopped {
                return Ok(());
            }
            for (r, again) in repeat {
                if ctx.cancel.is_cancelled() {
                    report.note("interrupted: repeatable migrations not started");
                    break;
                }
                let name = format!("R {}", r.description);
                let start = Instant::now();
                match run::step(&mut client, pid, monitor.clone(), &r.script, &limits, &run::record_repeatable(r, &store)).await {
                    Ok(stats) => report.push(
                        run::stats_check(name, if again { "re-applied (its file changed)" } else { "applied" }, &stats)
                            .took(start.elapsed()),
                    ),
                    Err(run::StepError::Db(e)) => return Err(e),
                    Err(run::StepError::Sql(msg) | run::StepError::LockTimeout(msg) | run::StepError::PartlyApplied(msg) | run::StepError::Paused(msg)) => {
                        report.push(Check::fail("migrations", name, msg).hint("the versioned migrations are in; fix this repeatable file and run migrate again").took(start.elapsed()));
                        break;
                    }
                }
            }
            Ok(())
        }
        .await;
        run::unlock(&client).await?;
        result
    }

    /// `cleanup [--abandon]`: old tables of swapped shadow changes dropped, under the migration
    /// lock.
    pub async fn cleanup(&self, ctx: &Context, report: &mut Report, abandon: bool) -> Result<()> {
        let limits = limits(ctx, None, None)?;
        let (mut client, _) = connect(ctx).await?;
        run::lock(&client, false, limits.lock_wait, &ctx.cancel).await?;
        let result = super::online::cleanup(&mut client, &limits, abandon, self.dry_run).await;
        run::unlock(&client).await?;
        let done = result?;
        if done.is_empty() {
            report.push(
                Check::ok("cleanup", "Nothing to clean up")
                    .message("no online change left an old table or an unfinished run"),
            );
        }
        for (script, outcome) in done {
            report.push(match outcome {
                Ok(what) if self.dry_run => Check::skip("cleanup", script, what),
                Ok(what) => Check::ok("cleanup", script).message(what),
                Err(why) => Check::warn("cleanup", script, why),
            });
        }
        Ok(())
    }

    /// `baseline --version V`: a database with no history gets Flyway's table with a BASELINE
    /// row at V (what `flyway baseline` writes). Refused where any history exists.
    pub async fn baseline(
        &self,
        ctx: &Context,
        report: &mut Report,
        version: &Version,
    ) -> Result<()> {
        let (client, _) = connect(ctx).await?;
        let store = history::store(&client).await?;
        if store.is_flyway() || history::exists(&client).await? {
            return Err(Error::Conflict(format!(
                "this database already has a migration history ({}): baseline adopts one that has none; `db_migrate info` shows it",
                store.table()
            )));
        }
        if self.dry_run {
            report.push(Check::skip(
                "baseline",
                format!("Baseline at {version}"),
                "dry run: would create flyway_schema_history with a BASELINE row",
            ));
            return Ok(());
        }
        let limits = limits(ctx, None, None)?;
        run::lock(&client, false, limits.lock_wait, &ctx.cancel).await?;
        let result = async {
            client
                .batch_execute(&format!(
                    "BEGIN; {} INSERT INTO flyway_schema_history
                       (installed_rank, version, description, type, script, checksum, installed_by, execution_time, success)
                     VALUES (1, '{version}', '{b}', 'BASELINE', '{b}', NULL, current_user, 0, true); COMMIT",
                    history::FLYWAY_CREATE,
                    b = history::FLYWAY_BASELINE
                ))
                .await
                .map_err(|e| crate::db::error("PostgreSQL", e))?;
            report.push(Check::ok("baseline", format!("Baseline at {version}")).message(
                "flyway_schema_history created: files up to it count as applied, later ones are pending (Flyway reads the same table)",
            ));
            Ok(())
        }
        .await;
        run::unlock(&client).await?;
        result
    }

    /// `repair`: remove an adopted Flyway history's failed rows (Flyway's `repair`), each named.
    pub async fn repair(&self, ctx: &Context, report: &mut Report) -> Result<()> {
        let (client, _) = connect(ctx).await?;
        let store = history::store(&client).await?;
        let failed = history::flyway_failed(&client, &store).await?;
        if failed.is_empty() {
            report.push(
                Check::ok("repair", "No failed rows")
                    .message(format!("history: {}", store.table())),
            );
            return Ok(());
        }
        for f in &failed {
            let name = format!("Failed row {} removed", f.script);
            if self.dry_run {
                report.push(Check::skip("repair", name, "dry run: would delete it"));
                continue;
            }
            client
                .execute(
                    &format!(
                        "DELETE FROM {} WHERE NOT success AND script = $1",
                        store.table()
                    ),
                    &[&f.script],
                )
                .await
                .map_err(|e| crate::db::error("PostgreSQL", e))?;
            report.push(Check::ok("repair", name).message(format!(
                "version {}: the next migrate applies it again",
                f.version.as_deref().unwrap_or("none")
            )));
        }
        Ok(())
    }

    pub async fn rollback(
        &self,
        ctx: &Context,
        report: &mut Report,
        all: &[Migration],
        to: &Version,
    ) -> Result<()> {
        let limits = limits(ctx, None, None)?;
        let (mut client, url) = connect(ctx).await?;
        run::lock(&client, false, limits.lock_wait, &ctx.cancel).await?;
        let result = async {
            let store = history::store(&client).await?;
            if store.is_flyway() {
                return Err(Error::Conflict(format!(
                    "the history is Flyway's ({}), which has no rollback rows Flyway would accept: nothing was rolled back; undo with a new forward migration, or restore the backup the migrate took",
                    store.table()
                )));
            }
            let applied = history::applied(&client).await?;
            let mut undo: Vec<&history::Applied> = applied.iter().filter(|a| &a.version > to).collect();
            undo.sort_by(|a, b| b.version.cmp(&a.version));
            if undo.is_empty() {
                report.push(Check::ok("rollback", "Nothing to roll back").message(format!("nothing applied above {to}")));
                return Ok(());
            }
            // Refuse before touching anything if any rollback script is missing.
            let mut scripts = vec![];
            for a in &undo {
                match all.iter().find(|m| m.version == a.version).and_then(|m| m.down.as_ref()) {
                    Some(d) => scripts.push((*a, d)),
                    None => {
                        return Err(Error::Conflict(format!(
                            "no rollback script for V{}__{}: nothing was rolled back; add V{}__{}_rollback.sql",
                            a.version, a.description, a.version, a.description
                        )));
                    }
                }
            }
            if self.dry_run {
                for (a, d) in &scripts {
                    report.push(Check::skip("rollback", format!("V{} {}", a.version, a.description), format!("dry run: would run {}", d.file_name())));
                }
                return Ok(());
            }
            let monitor = Arc::new(crate::db::connect(&url, ctx.timeout).await?);
            let pid = run::backend_pid(&client).await?;
            for (a, d) in scripts {
                let name = format!("V{} {}", a.version, a.description);
                let start = Instant::now();
                match run::step(&mut client, pid, monitor.clone(), d, &limits, &run::record_rollback(a)).await {
                    Ok(stats) => report.push(run::stats_check(name, "rolled back", &stats).took(start.elapsed())),
                    Err(run::StepError::Db(e)) => return Err(e),
                    Err(run::StepError::Sql(msg) | run::StepError::LockTimeout(msg) | run::StepError::PartlyApplied(msg) | run::StepError::Paused(msg)) => {
                        report.push(Check::fail("rollback", name, msg).hint("this rollback was not applied; fix the script and run rollback again").took(start.elapsed()));
                        break;
                    }
                }
            }
            Ok(())
        }
        .await;
        run::unlock(&client).await?;
        result
    }
}

/// One migration on the scratch database: up → rollback (must restore the schema before) →
/// up (must equal the first up). `Ok(Err((why, hint)))` is a failed rehearsal.
pub async fn round_trip(
    c: &mut tokio_postgres::Client,
    pid: i32,
    monitor: &Arc<tokio_postgres::Client>,
    m: &Migration,
    limits: &run::Limits,
) -> Result<std::result::Result<(), (String, Option<String>)>> {
    let Some(down) = &m.down else {
        return Ok(Err((
            format!("{} has no rollback script", m.up.file_name()),
            None,
        )));
    };
    let fail = |what: &str, e: run::StepError| match e {
        run::StepError::Db(e) => Err(e),
        run::StepError::Sql(msg)
        | run::StepError::LockTimeout(msg)
        | run::StepError::PartlyApplied(msg)
        | run::StepError::Paused(msg) => Ok(Err((format!("{what} failed: {msg}"), None))),
    };
    let before = fingerprint::schema(c).await?;
    if let Err(e) = run::step(
        c,
        pid,
        monitor.clone(),
        &m.up,
        limits,
        &run::record_apply(m, &history::Store::Deploykit),
    )
    .await
    {
        return fail("up", e);
    }
    let after_up = fingerprint::schema(c).await?;
    let row = history::applied(c)
        .await?
        .into_iter()
        .find(|a| a.version == m.version)
        .expect("just applied");
    if let Err(e) = run::step(
        c,
        pid,
        monitor.clone(),
        down,
        limits,
        &run::record_rollback(&row),
    )
    .await
    {
        return fail("rollback", e);
    }
    let after_down = fingerprint::schema(c).await?;
    if after_down != before {
        return Ok(Err((
            format!(
                "rollback does not restore the schema: {}",
                fingerprint::diff(&before, &after_down)
            ),
            Some(format!(
                "make {} undo everything {} does",
                down.file_name(),
                m.up.file_name()
            )),
        )));
    }
    if let Err(e) = run::step(
        c,
        pid,
        monitor.clone(),
        &m.up,
        limits,
        &run::record_apply(m, &history::Store::Deploykit),
    )
    .await
    {
        return fail("second up", e);
    }
    let again = fingerprint::schema(c).await?;
    if again != after_up {
        return Ok(Err((
            format!(
                "second up differs: {}",
                fingerprint::diff(&after_up, &again)
            ),
            None,
        )));
    }
    Ok(Ok(()))
}

/// Every migration's round trip on a scratch database, dropped afterwards.
pub async fn rehearse(ctx: &Context, report: &mut Report, all: &[Migration]) -> Result<()> {
    let (admin, url) = connect(ctx).await?;
    let scratch = format!(
        "deploykit_rehearse_{}_{}",
        std::process::id(),
        chrono::Utc::now().format("%H%M%S%3f")
    );
    admin
        .batch_execute(&format!("CREATE DATABASE {scratch}"))
        .await
        .map_err(|e| {
            Error::unreachable(
                "PostgreSQL",
                format!("cannot create a scratch database: {e}"),
            )
        })?;
    let mut u =
        url::Url::parse(url.expose()).map_err(|e| Error::config("database URL", e.to_string()))?;
    u.set_path(&format!("/{scratch}"));
    let scratch_url = crate::redact::Secret::new(u.to_string());
    let result = async {
        let mut c = crate::db::connect(&scratch_url, ctx.timeout).await?;
        let monitor = Arc::new(crate::db::connect(&scratch_url, ctx.timeout).await?);
        run::ensure_history(&c, &history::Store::Deploykit).await?;
        let pid = run::backend_pid(&c).await?;
        let limits = limits(ctx, None, None)?;
        for m in all {
            let name = format!("V{} round trip", m.version);
            let start = Instant::now();
            match round_trip(&mut c, pid, &monitor, m, &limits).await? {
                Ok(()) => report.push(
                    Check::ok("rehearse", name)
                        .message("up → rollback → up leaves the same schema")
                        .took(start.elapsed()),
                ),
                Err((why, hint)) => {
                    let mut check = Check::fail("rehearse", name, why).took(start.elapsed());
                    if let Some(h) = hint {
                        check = check.hint(h);
                    }
                    report.push(check);
                    return Ok(());
                }
            }
        }
        Ok::<_, Error>(())
    }
    .await;
    if let Err(e) = admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {scratch} WITH (FORCE)"))
        .await
    {
        tracing::warn!("could not drop scratch database {scratch}: {e}");
    }
    result
}

/// Whether the pending migrations need the maintenance window: each one's own declaration
/// (`-- deploykit: online` / `-- deploykit: maintenance` in its first lines), else lint decides —
/// online-safe when no unsafe-DDL finding names it (a missing rollback is not about locks). A
/// no-transaction file always needs it: it cannot roll back if it fails half-way.
pub fn maintenance_plan(
    report: &mut Report,
    pending: &[&Migration],
    findings: &[super::lint::Finding],
) -> bool {
    let mut needing = vec![];
    for m in pending {
        let file = m.up.file_name();
        let unsafe_ddl: Vec<&super::lint::Finding> = findings
            .iter()
            .filter(|f| {
                f.file == file
                    && f.rule != "missing-rollback"
                    && f.severity == super::lint::Severity::Error
            })
            .collect();
        let (online, why) = match m.up.declared_online() {
            _ if m.up.online.is_some() => (
                true,
                format!(
                    "{}: row locks of one short batch at a time",
                    m.up.online
                        .as_ref()
                        .map(|o| o.describe())
                        .unwrap_or_default()
                ),
            ),
            _ if m.up.no_transaction() => (
                false,
                "a no-transaction file cannot roll back half-way".to_string(),
            ),
            Some(true) => (true, format!("declared `{}`", super::ONLINE)),
            Some(false) => (false, format!("declared `{}`", super::NEEDS_MAINTENANCE)),
            None if unsafe_ddl.is_empty() => (true, "lint found no unsafe DDL".to_string()),
            None => (
                false,
                format!(
                    "lint: {}",
                    unsafe_ddl
                        .iter()
                        .map(|f| format!("{} (line {})", f.rule, f.line))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
        };
        let name = format!("V{} {}", m.version, m.description);
        report.push(Check::ok("plan", name).message(format!(
            "{}: {why}",
            if online {
                "online-safe"
            } else {
                "needs maintenance"
            }
        )));
        if !online {
            needing.push(format!("V{}", m.version));
        }
    }
    let need = !needing.is_empty();
    report.push(
        Check::ok("plan", "Maintenance needed")
            .message(match (pending.len(), need) {
                (0, _) => "no: nothing pending".to_string(),
                (n, false) => format!("no: {n} pending migration(s), all online-safe"),
                (n, true) => format!("yes: {} of {n} pending need it ({})", needing.len(), needing.join(", ")),
            })
            .data(serde_json::json!({ "needs_maintenance": need, "pending": pending.len(), "needing": needing })),
    );
    need
}
