//! `smoke_tests`: every post-deployment check of the guide against the service contract.

use crate::cli::{CommonArgs, Context, DryRunArgs, Tool};
use crate::config::Color;
use crate::error::{Error, Result};
use crate::promotion;
use crate::report::{Check, Report};
use crate::smoke::{self, Group, Target};
use std::collections::BTreeSet;
use std::path::PathBuf;

/// Post-deployment smoke tests: health, order routing, market data, risk, positions, P&L, web
/// and (with --database-focused) database integrity. Orders use only the configured test
/// account, and every order is cancelled or flattened at the end — also on failure or Ctrl-C.
#[derive(Debug, clap::Parser)]
#[command(name = "smoke_tests", version)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,

    #[command(flatten)]
    pub dry: DryRunArgs,

    /// Colour to test [default: the colour HAProxy sends traffic to, else the first colour].
    #[arg(long, value_enum)]
    pub color: Option<Color>,

    /// Every service must report this version.
    #[arg(long, value_name = "VERSION")]
    pub expect_version: Option<String>,

    /// Add the database group: schema version, required tables, integrity, replication lag.
    #[arg(long)]
    pub database_focused: bool,

    /// Expected schema version [default: the newest migration in --migrations].
    #[arg(long, value_name = "VERSION")]
    pub expect_schema: Option<String>,

    /// Migrations directory, for the expected schema version.
    #[arg(long, value_name = "DIR", default_value = "migrations")]
    pub migrations: PathBuf,

    /// Run only these groups.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "GROUP")]
    pub only: Vec<Group>,

    /// Leave out these groups.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "GROUP")]
    pub skip: Vec<Group>,

    /// Where isolated servers are recorded (isolate_server); they are skipped and named.
    #[command(flatten)]
    pub journal: crate::journal::JournalArgs,
}

impl Args {
    fn groups(&self) -> BTreeSet<Group> {
        let mut g: BTreeSet<Group> = if self.only.is_empty() {
            Group::SERVICES.into()
        } else {
            self.only.iter().copied().collect()
        };
        if self.database_focused {
            g.insert(Group::Database);
        }
        for s in &self.skip {
            g.remove(s);
        }
        g
    }
}

/// The checks each group runs, for --dry-run.
fn plan(g: Group) -> &'static [&'static str] {
    match g {
        Group::Health => &[
            "<role> healthy (<url>) for every service",
            "PostgreSQL reachable",
            "Redis reachable",
            "Error rate during the run (<url>)",
        ],
        Group::Orders => &[
            "Limit order accepted and resting",
            "Cancel confirmed",
            "Market order filled",
            "Fills match the order",
        ],
        Group::Positions => &["Position moved by the filled quantity"],
        Group::Pnl => &["P&L consistent with fills and marks"],
        Group::Marketdata => &[
            "All feeds connected",
            "Message rates in range",
            "No stale data",
            "Feed latency acceptable",
        ],
        Group::Risk => &[
            "Position limit enforced",
            "Loss limit checked",
            "Invalid orders rejected",
        ],
        Group::Web => &["Web interface serves its page (<url>)"],
        Group::Database => &[
            "Schema version",
            "Required tables exist",
            "No orphaned foreign keys",
            "No invalid indexes",
            "All constraints validated",
            "Row counts",
            "Replication lag",
        ],
    }
}

impl Tool for Args {
    const NAME: &'static str = "smoke_tests";

    fn common(&self) -> &CommonArgs {
        &self.common
    }

    async fn run(self, ctx: Context) -> Result<Report> {
        let env = ctx.env()?.clone();
        let groups = self.groups();
        let trades = [Group::Orders, Group::Positions, Group::Pnl]
            .iter()
            .any(|g| groups.contains(g));
        // Production safety: orders only ever use the configured test account.
        if trades
            && env
                .test_account
                .as_deref()
                .is_none_or(|a| a.trim().is_empty())
        {
            return Err(Error::config(
                ctx.config.path.display().to_string(),
                format!(
                    "environments.{}.test_account is not set: smoke_tests trades only with the test account",
                    ctx.env_name
                ),
            ));
        }
        let color = crate::lb::target_color(&env, self.color, ctx.timeout).await?;
        let mut report = ctx.report();
        if self.dry.dry_run {
            for g in &groups {
                for name in plan(*g) {
                    report.push(Check::skip(
                        g.name(),
                        *name,
                        format!("dry run: would check {color}"),
                    ));
                }
            }
            report.note(format!(
                "dry run against {color}; account {}",
                env.test_account.clone().unwrap_or_default()
            ));
            return Ok(report);
        }
        let http = crate::http::Http::new(env.timeouts.connect.0, ctx.timeout);
        // Isolated servers are out of service: not checked, and said so.
        let mut env = env;
        let fleet = crate::fleet::Fleet::new(&env, http.clone(), ctx.timeout);
        let isolated: Vec<_> = crate::fleet::isolated(
            ctx.env_name.as_str(),
            &env,
            ctx.timeout,
            &self.journal.dir(&ctx)?,
        )
        .await
        .into_iter()
        .filter(|i| fleet.by_name(&i.server).is_some_and(|s| s.color == color))
        .collect();
        let names: Vec<String> = isolated.iter().map(|i| i.server.clone()).collect();
        crate::fleet::without(&mut env, &fleet, &names);
        for i in &isolated {
            report.push(Check::skip(
                "health",
                format!("{} isolated", i.server),
                format!(
                    "out of service since {} (isolate_server): not checked",
                    i.since
                ),
            ));
        }
        let target = Target {
            color,
            http,
            account: env.test_account.clone(),
            expect_version: self.expect_version.clone(),
            timeout: ctx.timeout,
            run_id: format!(
                "{:x}",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_micros()
            ),
            env,
        };
        tracing::info!(
            "smoke tests against {color}: {}",
            groups
                .iter()
                .map(|g| g.name())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let before = if groups.contains(&Group::Health) {
            smoke::scrape_counts(&target).await
        } else {
            vec![]
        };
        let created = tokio::sync::Mutex::new(smoke::Created::default());
        let t = &target;
        let g = &groups;
        let work = async {
            let health = async {
                if g.contains(&Group::Health) {
                    smoke::health(t).await
                } else {
                    vec![]
                }
            };
            let flow = async {
                if trades {
                    smoke::order_flow(t, g, &created).await
                } else {
                    vec![]
                }
            };
            let md = async {
                if g.contains(&Group::Marketdata) {
                    smoke::marketdata(t).await
                } else {
                    vec![]
                }
            };
            let risk = async {
                if g.contains(&Group::Risk) {
                    smoke::risk(t).await
                } else {
                    vec![]
                }
            };
            let web = async {
                if g.contains(&Group::Web) {
                    smoke::web(t).await
                } else {
                    vec![]
                }
            };
            let db = async {
                if g.contains(&Group::Database) {
                    crate::dbcheck::checks(t, self.expect_schema.as_deref(), &self.migrations).await
                } else {
                    vec![]
                }
            };
            let (a, b, c, d, e, f) = tokio::join!(health, flow, md, risk, web, db);
            [a, b, c, d, e, f].concat()
        };
        let checks = tokio::select! {
            c = work => Some(c),
            _ = ctx.cancel.cancelled() => None,
        };
        // Cleanup runs whatever happened above, bounded so a dead target cannot hang it.
        if trades {
            let created = created.lock().await;
            let bound = ctx.timeout * 4;
            let c = match tokio::time::timeout(bound, smoke::cleanup(t, &created)).await {
                Ok(c) => c,
                Err(_) => Check::fail(
                    "cleanup",
                    "Test account clean after the run",
                    format!(
                        "cleanup did not finish within {bound:?}; {} order(s) created: {}",
                        created.order_ids.len(),
                        created.order_ids.join(", ")
                    ),
                ),
            };
            if checks.is_none() {
                tracing::warn!(
                    "interrupted; cleanup: {}",
                    c.message.clone().unwrap_or_default()
                );
            }
            let checks = checks.ok_or(Error::Interrupted(crate::error::Signal::Int))?;
            push_all(&mut report, checks);
            report.push(c);
        } else {
            push_all(
                &mut report,
                checks.ok_or(Error::Interrupted(crate::error::Signal::Int))?,
            );
        }
        if groups.contains(&Group::Health) {
            let after = smoke::scrape_counts(t).await;
            push_all(
                &mut report,
                smoke::error_rate_checks(t, &before, &after, t.env.smoke.max_error_ratio),
            );
        }
        report.note(format!("tested the {color} colour"));
        // The verdict goes into the environment's journal: a config is promoted to production
        // only after a full smoke run passed here with it deployed (crate::promotion).
        let failed = report.exit_code() != 0;
        let full = Group::SERVICES.iter().all(|g| groups.contains(g));
        let state = promotion::smoke(
            ctx.env_name.as_str(),
            color.as_str(),
            !failed && full,
            format!(
                "{}{}",
                if failed { "failed" } else { "passed" },
                if full {
                    ""
                } else {
                    " (not every group: not a promotion)"
                }
            ),
        );
        let recorded = async {
            let dir = self.journal.dir(&ctx)?;
            let j = crate::journal::Journal::open_unlocked(
                ctx.env_name.as_str(),
                &target.env,
                ctx.timeout,
                &dir,
            )
            .await?;
            j.write(&state).await
        };
        if let Err(e) = recorded.await {
            tracing::warn!("smoke result not journaled (a config promotion will not see it): {e}");
        }
        Ok(report)
    }
}

fn push_all(r: &mut Report, checks: Vec<Check>) {
    for c in checks {
        r.push(c);
    }
}
