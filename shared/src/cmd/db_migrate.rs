//! `db_migrate`: Flyway-named PostgreSQL migrations — locked, time-boxed, measured, backed up,
//! verified, reversible.

use crate::cli::{CommonArgs, Context, DryRunArgs, Tool};
use crate::config::{EnvName, parse_duration};
use crate::error::{Error, Result};
use crate::migrate::ops::{self, Ops};
use crate::migrate::{self, Version, backup, history};
use crate::report::Report;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Apply, inspect, verify and roll back the schema migrations in --migrations
/// (`V3.2.2__add_risk_limits_table.sql` and `V3.2.2__add_risk_limits_table_rollback.sql`). The
/// database URL comes from the variable the environment's config names (DATABASE_URL for local).
#[derive(Debug, clap::Parser)]
#[command(name = "db_migrate", version)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,

    #[command(flatten)]
    pub dry: DryRunArgs,

    /// Directory of migration files.
    #[arg(long, global = true, value_name = "DIR", default_value = "migrations", env = crate::env_vars::EnvVars::MIGRATIONS)]
    pub migrations: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Apply pending migrations up to --version, each in its own transaction, under a lock.
    Migrate {
        /// Stop after this version [default: the newest].
        #[arg(long, value_name = "VERSION", value_parser = parse_version)]
        version: Option<Version>,
        /// Skip the pre-migration backup (staging/production); the reason goes in the report.
        #[arg(long, value_name = "REASON")]
        no_backup: Option<String>,
        /// Exit 5 at once if another run holds the migration lock.
        #[arg(long)]
        no_wait: bool,
        /// lock_timeout of every step [default: the config's, else 5s].
        #[arg(long, value_parser = parse_duration, allow_hyphen_values = true, value_name = "DURATION")]
        lock_timeout: Option<Duration>,
        /// statement_timeout of every step [default: the config's, else 15m].
        #[arg(long, value_parser = parse_duration, allow_hyphen_values = true, value_name = "DURATION")]
        statement_timeout: Option<Duration>,
        /// Also apply a never-applied file older than the newest applied one (a branch merged
        /// late; Flyway's outOfOrder) instead of refusing it.
        #[arg(long)]
        out_of_order: bool,
    },
    /// pg_dump -Fc to the backups directory, verified with pg_restore --list.
    Backup {
        /// Directory for the dump [default: the config's backups_dir].
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Applied, pending, missing and checksum-changed migrations.
    Info,
    /// Exit 1 if an applied migration's file changed since it was applied.
    Validate,
    /// The highest applied version is the expected one.
    Verify {
        /// Expected version [default: the newest migration file].
        #[arg(long, value_name = "VERSION", value_parser = parse_version)]
        expect: Option<Version>,
    },
    /// Run rollback scripts newest first down to (not including) --to-version.
    Rollback {
        #[arg(long, value_name = "VERSION", value_parser = parse_version)]
        to_version: Version,
        /// Required in production.
        #[arg(long)]
        confirm: bool,
    },
    /// Flag unsafe DDL and missing rollbacks before production: errors fail (locks on hot
    /// tables, rewrites, data loss, renames, a new file without rollback), the rest warn.
    Lint {
        /// Findings already accepted (of applied migrations): not judged again.
        #[arg(long, value_name = "FILE")]
        baseline: Option<PathBuf>,
        /// Write every current finding to FILE as the baseline (adopting an existing history:
        /// only files added later are judged) and pass.
        #[arg(long, value_name = "FILE", conflicts_with = "baseline")]
        write_baseline: Option<PathBuf>,
    },
    /// Adopt a database that has no migration history: record VERSION as its baseline in a
    /// Flyway-shaped `flyway_schema_history` (Flyway's own `baseline`), so files up to it are
    /// never applied and later ones are.
    Baseline {
        #[arg(long, value_name = "VERSION", value_parser = parse_version)]
        version: Version,
    },
    /// Remove the failed rows of an adopted Flyway history (Flyway's `repair`), once what the
    /// failed migration left in the database has been fixed by hand.
    Repair,
    /// Pending migrations and whether they need the maintenance window: a file's own
    /// `-- deploykit: online` / `-- deploykit: maintenance`, else lint decides (no unsafe DDL:
    /// online-safe). The pipeline turns maintenance on only when it says yes.
    Plan,
    /// On a scratch database: up → rollback → up for every migration; the schema must round-trip.
    Rehearse,
    /// Once a deploy is confirmed: drop the old tables that shadow-table changes kept for their
    /// swap back (`<table>_old`). Unfinished online changes are listed, not touched.
    Cleanup {
        /// Also remove an unfinished shadow change's sync triggers and copy (it was killed and
        /// will not be resumed); the table serves as it was.
        #[arg(long)]
        abandon: bool,
    },
    /// Weekly staging refresh: back up this environment's database, replace its schema and data
    /// with the source environment's, anonymized per --rules (every column classified, or
    /// nothing happens), in one transaction; then apply pending migrations and verify.
    Refresh {
        /// Environment whose database is copied (its `database.url_env` names the URL).
        #[arg(long, value_enum, value_name = "ENV")]
        source_environment: EnvName,
        /// Rules file classifying every source column: keep, null, hash, fake[:email|:name|:phone].
        #[arg(long, value_name = "FILE", default_value = "config/anonymize.toml")]
        rules: PathBuf,
        /// Skip the backup of the target; the reason goes in the report.
        #[arg(long, value_name = "REASON")]
        no_backup: Option<String>,
    },
}

fn parse_version(s: &str) -> std::result::Result<Version, String> {
    Version::parse(s).ok_or_else(|| format!("`{s}` is not a version like 3.2.2"))
}

impl Tool for Args {
    const NAME: &'static str = "db_migrate";

    fn common(&self) -> &CommonArgs {
        &self.common
    }

    fn changes(&self) -> bool {
        !self.dry.dry_run
            && matches!(
                self.command,
                Command::Migrate { .. }
                    | Command::Rollback { .. }
                    | Command::Refresh { .. }
                    | Command::Baseline { .. }
                    | Command::Repair
                    | Command::Cleanup { .. }
            )
    }

    async fn run(self, ctx: Context) -> Result<Report> {
        let dir = self.migrations.clone();
        // The environment's naming (the guide's Flyway files or its custom scripts).
        let layout = ctx.env().map(|e| e.migrate.layout).unwrap_or_default();
        let all =
            crate::cli::blocking(&ctx.cancel, move || migrate::load_dir_as(&dir, layout)).await??;
        let mut report = ctx.report();
        let dir = self.migrations.clone();
        let mut repeatables =
            crate::cli::blocking(&ctx.cancel, move || migrate::load_repeatables(&dir)).await??;
        let mut all = all;
        if let Ok(env) = ctx.env() {
            migrate::replace_placeholders(&mut all, &mut repeatables, &env.migrate.placeholders)?;
        }
        let ops = Ops {
            dry_run: self.dry.dry_run,
            repeatables,
            out_of_order: matches!(
                self.command,
                Command::Migrate {
                    out_of_order: true,
                    ..
                }
            ),
        };
        match &self.command {
            Command::Lint {
                baseline,
                write_baseline,
            } => {
                let files = all.clone();
                let sizes = ops::table_sizes(&ctx, &mut report).await;
                let findings = crate::cli::blocking(&ctx.cancel, move || {
                    migrate::lint::lint_with_sizes(&files, sizes.as_ref())
                })
                .await?;
                if let Some(out) = write_baseline {
                    let text = serde_json::to_string_pretty(&findings).expect("json");
                    std::fs::write(out, text + "\n")
                        .map_err(|e| Error::io("write the lint baseline", out, e))?;
                    report.push(
                        crate::report::Check::ok("lint", "Baseline written").message(format!(
                            "{} finding(s) of {} file(s) in {}: `lint --baseline {}` judges only what is not in it",
                            findings.len(),
                            all.len(),
                            out.display(),
                            out.display()
                        )),
                    );
                    return Ok(report);
                }
                let findings = match baseline {
                    Some(path) => {
                        let text = std::fs::read_to_string(path)
                            .map_err(|e| Error::io("read the lint baseline", path, e))?;
                        let accepted: Vec<migrate::lint::Finding> = serde_json::from_str(&text)
                            .map_err(|e| {
                                Error::config(
                                    path.display().to_string(),
                                    format!(
                                        "not a lint baseline ({e}): write one with --write-baseline"
                                    ),
                                )
                            })?;
                        let (kept, dropped) = migrate::lint::without_baseline(findings, &accepted);
                        report.note(format!(
                            "{dropped} finding(s) accepted in the baseline {}",
                            path.display()
                        ));
                        kept
                    }
                    None => findings,
                };
                ops::lint_report(&mut report, &all, &findings);
                return Ok(report);
            }
            Command::Plan => {
                let (client, _) = ops::connect(&ctx).await?;
                let applied = history::applied(&client).await?;
                let pending: Vec<migrate::Migration> =
                    migrate::run::pending(&all, &applied, None, false)?
                        .into_iter()
                        .cloned()
                        .collect();
                let files = pending.clone();
                let sizes = ops::sizes_of(&client).await.ok();
                let findings = crate::cli::blocking(&ctx.cancel, move || {
                    migrate::lint::lint_with_sizes(&files, sizes.as_ref())
                })
                .await?;
                let refs: Vec<&migrate::Migration> = pending.iter().collect();
                ops::maintenance_plan(&mut report, &refs, &findings);
                return Ok(report);
            }
            Command::Info | Command::Validate | Command::Verify { .. } => {
                let (client, _) = ops::connect(&ctx).await?;
                let store = history::store(&client).await?;
                let applied = history::applied_in(&client, &store).await?;
                if store.is_flyway() {
                    report.note(format!("history: Flyway's {}, adopted", store.table()));
                }
                // A failed Flyway row stops migrate: said wherever the history is looked at.
                for f in history::flyway_failed(&client, &store).await? {
                    report.push(
                        crate::report::Check::fail(
                            "applied",
                            format!("{} failed", f.script),
                            format!("Flyway's history marks version {} failed", f.version.as_deref().unwrap_or("none")),
                        )
                        .hint("fix what it left in the database, then `db_migrate repair` removes the row"),
                    );
                }
                match &self.command {
                    Command::Info => {
                        ops::info(&mut report, &all, &applied);
                        ops::online_info(&mut report, &client).await?;
                    }
                    Command::Validate => ops::validate(&mut report, &all, &applied),
                    Command::Verify { expect } => {
                        let expected = expect
                            .clone()
                            .or_else(|| all.last().map(|m| m.version.clone()));
                        ops::verify(&mut report, expected, &applied);
                    }
                    _ => unreachable!(),
                }
            }
            Command::Backup { dir } => {
                let env = ctx.env()?;
                let url = env.database_url()?;
                let dir = dir
                    .clone()
                    .unwrap_or_else(|| env.migrate.backups_dir.clone());
                let start = Instant::now();
                let b = backup::take(&url, &dir, env.migrate.backup_timeout.0).await?;
                report.push(ops::backup_check(&b).took(start.elapsed()));
            }
            Command::Migrate {
                version,
                no_backup,
                no_wait,
                lock_timeout,
                statement_timeout,
                ..
            } => {
                ops.migrate(
                    &ctx,
                    &mut report,
                    &all,
                    version.as_ref(),
                    no_backup.as_deref(),
                    *no_wait,
                    *lock_timeout,
                    *statement_timeout,
                )
                .await?;
            }
            Command::Rollback {
                to_version,
                confirm,
            } => {
                if ctx.env_name == EnvName::Production && !confirm && !self.dry.dry_run {
                    return Err(Error::Usage("rollback in production needs --confirm (see the plan first with --dry-run)".into()));
                }
                ops.rollback(&ctx, &mut report, &all, to_version).await?;
            }
            Command::Rehearse => ops::rehearse(&ctx, &mut report, &all).await?,
            Command::Baseline { version } => {
                ops.baseline(&ctx, &mut report, version).await?;
            }
            Command::Repair => ops.repair(&ctx, &mut report).await?,
            Command::Cleanup { abandon } => ops.cleanup(&ctx, &mut report, *abandon).await?,
            Command::Refresh {
                source_environment,
                rules,
                no_backup,
            } => {
                ops.refresh(
                    &ctx,
                    &mut report,
                    &all,
                    *source_environment,
                    rules,
                    no_backup.as_deref(),
                )
                .await?
            }
        }
        Ok(report)
    }
}
