//! Staged strategy activation (guide §5 Phase 4): the plan a rollout journals first, each
//! step held and judged, resume from the journal and reverse — the domain behind
//! `strategy_rollout` (cmd/ turns flags into a plan and calls this).

use crate::cli::Context;
use crate::config::{Color, Role};
use crate::contract::{Client, Strategy};
use crate::error::{Error, Result, Signal};
use crate::fleet::Ctx;
use crate::journal::{Entry, Journal};
use crate::report::{Check, Report};
use crate::watch::{self, Failed};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// The journal action of a rollout.
pub const ACTION: &str = "strategy_rollout";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub strategies: Vec<String>,
    pub steps: Vec<u8>,
    pub hold_ms: u64,
    pub color: Color,
}

impl Plan {
    pub fn step_name(s: &str, p: u8) -> String {
        format!("{s} at {p}%")
    }
}

/// Journal step names besides `"{strategy} at {p}%"`.
pub const PLAN: &str = "plan";
pub const FINISHED: &str = "finished";
pub fn before_step(s: &str) -> String {
    format!("{s} before")
}

pub fn engines(c: &Ctx, color: Color, ctx: &Context) -> Result<Vec<Client>> {
    let e = c.clients(color, &[Role::TradingEngine]);
    if e.is_empty() {
        return Err(Error::config(
            ctx.config.path.display().to_string(),
            format!("no trading-engine service for {color}"),
        ));
    }
    Ok(e)
}

pub fn plan_report(plan: &Plan, done: &BTreeSet<String>, engines: &[Client], report: &mut Report) {
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
pub async fn interrupted(
    ctx: &Context,
    journal: &Journal,
) -> Result<(Plan, String, BTreeSet<String>)> {
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
pub fn plan_of(run: &[Entry], run_id: &str) -> Result<Plan> {
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
pub async fn reverse(c: &Ctx, ctx: &Context, journal: &Journal, report: &mut Report) -> Result<()> {
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
        deployment_id: String::new(),
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

pub struct Rollout<'a> {
    pub c: &'a Ctx,
    pub ctx: &'a Context,
    pub journal: &'a Journal,
    pub run_id: String,
    pub plan: &'a Plan,
    pub engines: &'a [Client],
    pub tick: Duration,
}

impl Rollout<'_> {
    pub async fn note(&self, step: &str, state: &str, detail: String) -> Result<()> {
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
                deployment_id: String::new(),
            })
            .await
    }

    pub async fn set(&self, s: &str, st: &Strategy) -> Result<()> {
        for e in self.engines {
            e.set_strategy(s, st)
                .await
                .map_err(|er| Error::unreachable(e.base().to_string(), er))?;
        }
        Ok(())
    }

    /// Ok(true): every step held; Ok(false): a step failed its judgement and was set back.
    pub async fn run(
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
