//! `strategy_rollout`: staged strategy activation (guide §5 Phase 4: "Do NOT enable all
//! strategies at once!"), journaled so an interrupted rollout can be resumed or reversed.

use crate::cli::{CommonArgs, Context, DryRunArgs, Tool};
use crate::config::{Color, parse_duration};
use crate::cutover::{self as co};
use crate::error::{Error, Result};
use crate::fleet::Ctx;
use crate::journal::JournalArgs;
use crate::report::Report;
use crate::rollout::{FINISHED, PLAN, Plan, Rollout, engines, interrupted, plan_report, reverse};
use crate::watch;
use std::collections::BTreeSet;
use std::time::Duration;

/// Activate a strategy in steps (10 % → 50 % → 100 %), holding each step and judging it with
/// compare_metrics' judge (errors, latency, fill rate, risk alerts, P&L trend) against the
/// snapshot taken before activation; then the next strategy. A failed judgement sets the
/// strategy back to its last good size and exits 1. Every step is journaled: `--resume`
/// continues an interrupted rollout, `--reverse` puts every strategy it touched back as it was.
#[derive(Debug, clap::Parser)]
#[command(name = "strategy_rollout", version)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,

    #[command(flatten)]
    pub dry: DryRunArgs,

    /// The first (lowest-risk) strategy.
    #[arg(long, value_name = "NAME", required_unless_present_any = ["resume", "reverse"])]
    pub strategy: Option<String>,

    /// Size steps in percent.
    #[arg(long, value_delimiter = ',', default_value = "10,50,100")]
    pub steps: Vec<u8>,

    /// How long to hold and judge each step.
    #[arg(long, value_parser = parse_duration, allow_hyphen_values = true, default_value = "5m", value_name = "DURATION")]
    pub hold: Duration,

    /// Then these strategies, one at a time, each through the same steps.
    #[arg(long, value_delimiter = ',', value_name = "NAME,…")]
    pub then: Vec<String>,

    /// Continue the environment's interrupted rollout from its journal (same strategies, steps,
    /// hold and colour; finished steps are not repeated).
    #[arg(long, conflicts_with_all = ["strategy", "then", "reverse"])]
    pub resume: bool,

    /// Put every strategy the environment's last rollout touched back to the size it had
    /// before that rollout, last strategy first.
    #[arg(long, conflicts_with_all = ["strategy", "then"])]
    pub reverse: bool,

    /// Colour whose trading services to act on [default: the live colour, else the first].
    #[arg(long, value_enum)]
    pub color: Option<Color>,

    /// Sampling interval of the judge.
    #[arg(long, value_parser = parse_duration, allow_hyphen_values = true, default_value = "500ms", value_name = "DURATION")]
    pub tick: Duration,

    /// Sample this long before the first activation (the judge's baseline).
    #[arg(long, value_parser = parse_duration, allow_hyphen_values = true, default_value = "5s", value_name = "DURATION")]
    pub baseline_window: Duration,

    #[command(flatten)]
    pub journal: JournalArgs,
}

/// What a rollout will do; journaled first so `--resume` repeats exactly this.
impl Tool for Args {
    const NAME: &'static str = "strategy_rollout";

    fn common(&self) -> &CommonArgs {
        &self.common
    }

    fn changes(&self) -> bool {
        !self.dry.dry_run
    }

    async fn run(self, ctx: Context) -> Result<Report> {
        if self.steps.is_empty()
            || self.steps.iter().any(|s| *s == 0 || *s > 100)
            || self.steps.windows(2).any(|w| w[0] >= w[1])
        {
            return Err(Error::Usage(
                "--steps must be increasing percentages between 1 and 100, e.g. 10,50,100".into(),
            ));
        }
        let mut c = Ctx::for_tool(&ctx, self.dry.dry_run)?;
        let env = c.env.clone();
        c.load_isolation(&self.journal.dir(&ctx)?).await;
        let mut report = ctx.report();
        let new_plan = |color| Plan {
            strategies: self
                .strategy
                .iter()
                .chain(self.then.iter())
                .cloned()
                .collect(),
            steps: self.steps.clone(),
            hold_ms: self.hold.as_millis() as u64,
            color,
        };
        if !self.reverse {
            watch::check_baseline_window(self.baseline_window, self.tick)?;
        }
        // A new rollout's dry run needs no journal (nor its lock).
        if self.dry.dry_run && !self.resume && !self.reverse {
            let color = crate::lb::target_color(&env, self.color, ctx.timeout).await?;
            let engines = engines(&c, color, &ctx)?;
            plan_report(&new_plan(color), &BTreeSet::new(), &engines, &mut report);
            return Ok(report);
        }
        let journal = self.journal.lock(&ctx, c.cancel.clone()).await?;
        journal.hold(async |journal| {
            if self.reverse {
                return reverse(&c, &ctx, journal, &mut report).await;
            }
            let (plan, run_id, done) = if self.resume {
                interrupted(&ctx, journal).await?
            } else {
                let color = crate::lb::target_color(&env, self.color, ctx.timeout).await?;
                (
                    new_plan(color),
                    format!("rollout-{}", co::now_ms()),
                    BTreeSet::new(),
                )
            };
            let engines = engines(&c, plan.color, &ctx)?;
            if self.dry.dry_run {
                plan_report(&plan, &done, &engines, &mut report);
                return Ok(());
            }
            let r = Rollout {
                c: &c,
                ctx: &ctx,
                journal,
                run_id,
                plan: &plan,
                engines: &engines,
                tick: self.tick,
            };
            if self.resume {
                report.note(format!(
                    "resuming {}; done: {}",
                    r.run_id,
                    if done.is_empty() {
                        "nothing".to_string()
                    } else {
                        done.iter().cloned().collect::<Vec<_>>().join(", ")
                    }
                ));
            } else {
                r.note(PLAN, "started", serde_json::to_string(&plan).expect("json"))
                    .await?;
            }
            let outcome = r
                .run(&done, self.baseline_window, &mut report)
                .await
                .inspect_err(|_| {
                    tracing::warn!(
                        "rollout {} interrupted; `strategy_rollout --resume` continues it, `--reverse` undoes it",
                        r.run_id
                    )
                });
            let state = match &outcome {
                Ok(true) => "finished",
                Ok(false) => "failed",
                Err(_) => "interrupted",
            };
            r.note(FINISHED, state, String::new()).await.ok();
            outcome.map(|_| ())
        })
        .await?;
        Ok(report)
    }
}
