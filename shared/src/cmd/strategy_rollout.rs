//! `strategy_rollout`: staged strategy activation (guide §5 Phase 4: "Do NOT enable all
//! strategies at once!"), journaled so an interrupted rollout can be resumed or reversed.

use crate::cli::{CommonArgs, Context, DryRunArgs, Tool};
use crate::config::{Color, Role, parse_duration};
use crate::contract::{Client, Strategy};
use crate::cutover::{self as co, Ctx};
use crate::error::{Error, Result, Signal};
use crate::journal::{Entry, Journal, JournalArgs};
use crate::report::{Check, Report};
use crate::watch::{self, Failed};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const ACTION: &str = "strategy_rollout";

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
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Plan {
    strategies: Vec<String>,
    steps: Vec<u8>,
    hold_ms: u64,
    color: Color,
}

impl Plan {
    fn step_name(s: &str, p: u8) -> String {
        format!("{s} at {p}%")
    }
}

/// Journal step names besides `"{strategy} at {p}%"`.
const PLAN: &str = "plan";
const FINISHED: &str = "finished";
fn before_step(s: &str) -> String {
    format!("{s} before")
}

impl Tool for Args {
    const NAME: &'static str = "strategy_rollout";

    fn common(&self) -> &CommonArgs {
        &self.common
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
        let env = ctx.env()?.clone();
        let token = env.admin_token()?;
        let c = Ctx::new(
            ctx.env_name.as_str(),
            env.clone(),
            Some(token),
            ctx.timeout,
            ctx.cancel.child_token(),
            self.dry.dry_run,
        );
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
        let journal = Journal::open(
            Self::NAME,
            ctx.env_name.as_str(),
            &env,
            ctx.timeout,
            self.journal.dir(&ctx)?,
            c.cancel.clone(),
        )
        .await?;
        let result = async {
            if self.reverse {
                return reverse(&c, &ctx, &journal, &mut report).await;
            }
            let (plan, run_id, done) = if self.resume {
                interrupted(&ctx, &journal).await?
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
                journal: &journal,
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
        }
        .await;
        journal.release().await?;
        result?;
        Ok(report)
    }
}

fn engines(c: &Ctx, color: Color, ctx: &Context) -> Result<Vec<Client>> {
    let e = c.clients(color, &[Role::TradingEngine]);
    if e.is_empty() {
        return Err(Error::config(
            ctx.config.path.display().to_string(),
            format!("no trading-engine service for {color}"),
        ));
    }
    Ok(e)
}

fn plan_report(plan: &Plan, done: &BTreeSet<String>, engines: &[Client], report: &mut Report) {
    for s in &plan.strategies {
        for &p in &plan.steps {
            let step = Plan::step_name(s, p);
            if done.contains(&step) {
                report.push(Check::skip("plan", step, "done in the interrupted run"));
                continue;
            }
            let calls: Vec<_> = engines
                .iter()
                .map(|e| {
                    format!(
                        "POST {}/admin/strategies/{s} {{\"active\":true,\"size_pct\":{p}}}",
                        e.base()
                    )
                })
                .collect();
            report.push(Check::skip(
                "plan",
                step,
                format!(
                    "dry run: {}; hold {:?} and judge errors, latency, fill rate, risk alerts and P&L trend",
                    calls.join("; "),
                    Duration::from_millis(plan.hold_ms)
                ),
            ));
        }
    }
}

/// The environment's last rollout, if it was interrupted: its plan, run id and finished steps.
async fn interrupted(ctx: &Context, journal: &Journal) -> Result<(Plan, String, BTreeSet<String>)> {
    let last = journal.last_run(ctx.env_name.as_str(), &[ACTION]).await?;
    let Some(first) = last.first() else {
        return Err(Error::Usage(format!(
            "no strategy rollout on {} in the journal: nothing to resume",
            ctx.env_name
        )));
    };
    let run_id = first.run_id.clone();
    if let Some(end) = last.iter().find(|e| e.step == FINISHED) {
        let what = match end.state.as_str() {
            "finished" => "finished: nothing to resume".to_string(),
            "failed" => "failed its judgement and was set back: investigate, then start a new rollout or --reverse".to_string(),
            "reversed" => "was reversed: start a new rollout".to_string(),
            // Interrupted runs may be resumed (again).
            _ => String::new(),
        };
        if !what.is_empty() {
            return Err(Error::Usage(format!("the last rollout {run_id} {what}")));
        }
    }
    let plan = plan_of(&last, &run_id)?;
    let done = last
        .iter()
        .filter(|e| e.state == "done" && e.step.contains(" at "))
        .map(|e| e.step.clone())
        .collect();
    Ok((plan, run_id, done))
}

/// The plan a rollout journaled before its first step.
fn plan_of(run: &[Entry], run_id: &str) -> Result<Plan> {
    run.iter()
        .find(|e| e.step == PLAN)
        .and_then(|e| serde_json::from_str(&e.detail).ok())
        .ok_or_else(|| {
            Error::Conflict(format!(
                "the journal of {run_id} has no readable plan: set the strategies by hand (POST /admin/strategies/NAME)"
            ))
        })
}

/// Put every strategy of the last rollout back as it was before, last strategy first.
async fn reverse(c: &Ctx, ctx: &Context, journal: &Journal, report: &mut Report) -> Result<()> {
    let last = journal.last_run(ctx.env_name.as_str(), &[ACTION]).await?;
    let Some(first) = last.first() else {
        return Err(Error::Usage(format!(
            "no strategy rollout on {} in the journal: nothing to reverse",
            ctx.env_name
        )));
    };
    if last
        .iter()
        .any(|e| e.step == FINISHED && e.state == "reversed")
    {
        return Err(Error::Usage(format!(
            "the last rollout {} is already reversed",
            first.run_id
        )));
    }
    let plan = plan_of(&last, &first.run_id)?;
    let engines = engines(c, plan.color, ctx)?;
    let befores: Vec<(String, Strategy)> = plan
        .strategies
        .iter()
        .rev()
        .filter_map(|s| {
            last.iter()
                .find(|e| e.step == before_step(s))
                .and_then(|e| serde_json::from_str(&e.detail).ok())
                .map(|b| (s.clone(), b))
        })
        .collect();
    let note = |step: String, state: &str, detail: String| Entry {
        run_id: first.run_id.clone(),
        environment: ctx.env_name.to_string(),
        action: ACTION.into(),
        from_color: plan.color.to_string(),
        to_color: plan.color.to_string(),
        step,
        state: state.into(),
        detail,
        at: String::new(),
    };
    for (s, before) in &befores {
        let what = if before.active {
            format!("{s} back to {}%", before.size_pct)
        } else {
            format!("{s} deactivated")
        };
        if c.dry_run {
            report.push(Check::skip(
                "reverse",
                what,
                format!(
                    "dry run: POST …/admin/strategies/{s} {} on {} engine(s)",
                    serde_json::to_string(before).expect("json"),
                    engines.len()
                ),
            ));
            continue;
        }
        for e in &engines {
            e.set_strategy(s, before)
                .await
                .map_err(|er| Error::unreachable(e.base().to_string(), er))?;
        }
        journal
            .write(&note(format!("reverse {s}"), "done", what.clone()))
            .await?;
        report.push(Check::ok("reverse", what));
    }
    if befores.is_empty() {
        report.note(format!(
            "{} changed no strategy: nothing to put back",
            first.run_id
        ));
    }
    if !c.dry_run {
        journal
            .write(&note(FINISHED.into(), "reversed", String::new()))
            .await?;
    }
    Ok(())
}

struct Rollout<'a> {
    c: &'a Ctx,
    ctx: &'a Context,
    journal: &'a Journal,
    run_id: String,
    plan: &'a Plan,
    engines: &'a [Client],
    tick: Duration,
}

impl Rollout<'_> {
    async fn note(&self, step: &str, state: &str, detail: String) -> Result<()> {
        self.journal
            .write(&Entry {
                run_id: self.run_id.clone(),
                environment: self.ctx.env_name.to_string(),
                action: ACTION.into(),
                from_color: self.plan.color.to_string(),
                to_color: self.plan.color.to_string(),
                step: step.into(),
                state: state.into(),
                detail,
                at: String::new(),
            })
            .await
    }

    async fn set(&self, s: &str, st: &Strategy) -> Result<()> {
        for e in self.engines {
            e.set_strategy(s, st)
                .await
                .map_err(|er| Error::unreachable(e.base().to_string(), er))?;
        }
        Ok(())
    }

    /// Ok(true): every step held; Ok(false): a step failed its judgement and was set back.
    async fn run(
        &self,
        done: &BTreeSet<String>,
        baseline_window: Duration,
        report: &mut Report,
    ) -> Result<bool> {
        let (c, color) = (self.c, self.plan.color);
        let hold = Duration::from_millis(self.plan.hold_ms);
        // The judge's baseline: the colour before this run changes anything.
        let base = watch::baseline(c.clients(color, &Role::ALL), baseline_window, self.tick)
            .await
            .map_err(|e| Error::unreachable("trading services", e))?;
        for s in &self.plan.strategies {
            let mut last_good: Option<u8> = self
                .plan
                .steps
                .iter()
                .copied()
                .filter(|p| done.contains(&Plan::step_name(s, *p)))
                .max();
            if self
                .plan
                .steps
                .iter()
                .all(|p| done.contains(&Plan::step_name(s, *p)))
            {
                continue;
            }
            // What --reverse restores, recorded before the first change (once per run).
            if last_good.is_none() {
                let now = self.engines[0]
                    .admin_state()
                    .await
                    .map_err(|e| Error::unreachable(self.engines[0].base().to_string(), e))?;
                let before = now.strategies.get(s).cloned().ok_or_else(|| {
                    Error::Usage(format!(
                        "{} has no strategy {s} (it knows: {})",
                        self.engines[0].base(),
                        now.strategies
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?;
                self.note(
                    &before_step(s),
                    "done",
                    serde_json::to_string(&before).expect("json"),
                )
                .await?;
            }
            for &p in &self.plan.steps {
                let step = Plan::step_name(s, p);
                if done.contains(&step) {
                    continue;
                }
                self.note(&step, "started", String::new()).await?;
                let t = Instant::now();
                self.set(
                    s,
                    &Strategy {
                        active: true,
                        size_pct: p,
                    },
                )
                .await?;
                let held = watch::observe(
                    c,
                    color,
                    c.clients(color, &Role::ALL),
                    &base,
                    hold,
                    self.tick,
                    &step,
                )
                .await;
                let why = match held {
                    Ok(w) => {
                        self.note(&step, "done", String::new()).await?;
                        report.push(
                            Check::ok("rollout", step)
                                .message(format!("held {hold:?}: {}", w.summary()))
                                .data(serde_json::to_value(&w).unwrap_or_default())
                                .took(t.elapsed()),
                        );
                        last_good = Some(p);
                        continue;
                    }
                    Err(Failed::Interrupted) => return Err(Error::Interrupted(Signal::Int)),
                    Err(Failed::Unreadable(e)) => {
                        return Err(Error::unreachable("trading services", e));
                    }
                    Err(Failed::Unhealthy(e)) => format!("unhealthy: {e}"),
                    Err(Failed::Regressed(e)) => e,
                };
                // Back to the last good size, or off if the first step failed.
                let back = Strategy {
                    active: last_good.is_some(),
                    size_pct: last_good.unwrap_or(0),
                };
                let set_back = self.set(s, &back).await;
                let restored = match (last_good, &set_back) {
                    (_, Err(e)) => format!("setting {s} back FAILED: {e}"),
                    (Some(g), Ok(())) => format!("{s} set back to {g}%"),
                    (None, Ok(())) => format!("{s} deactivated"),
                };
                self.note(&step, "failed", format!("{why}; {restored}"))
                    .await?;
                report.push(
                    Check::fail("rollout", step, format!("{why}; {restored}"))
                        .hint("investigate before retrying; later strategies were not started")
                        .took(t.elapsed()),
                );
                return Ok(false);
            }
        }
        Ok(true)
    }
}
