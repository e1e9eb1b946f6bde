//! Blue-green cutover on real HAProxy instances: new traffic moves in one runtime-API
//! transaction per instance, the old colour drains until HAProxy's counters and the services'
//! in-flight counters say zero (never a fixed sleep), the new colour is watched with the metric
//! judge against a snapshot taken just before the switch, and rollback is one prepared
//! transaction away. Every step is journaled before and after it runs.

pub mod ops;

use crate::config::{Color, Role};
use crate::contract::FeedSource;
use crate::error::Result;
use crate::fleet::{Ctx, StepFailure, StepResult, admin_all, health, live_colors, trading_off};
use crate::journal::{Entry, Journal};
use crate::lb;
use crate::lb::agreed;
use crate::report::{Check, Report};
use crate::telemetry::Every;
use std::time::{Duration, Instant};

pub const RUN_STEPS: &[&str] = &[
    "stop_new_orders",
    "drain",
    "switch",
    "standby",
    "feeds",
    "activate",
    "watch",
];
/// The journal record of the strategies the old colour ran before the switch: the new colour
/// takes them over, and a rollback gives them back.
pub const STRATEGIES_STEP: &str = "strategies";

/// Strategy name → its state (only active ones are carried over).
pub type Strategies = std::collections::BTreeMap<String, crate::contract::Strategy>;
/// The journal step that keeps the baseline a run sampled before its switch (for `--resume`):
/// a record of state, not a stage of the run.
pub const BASELINE_STEP: &str = "baseline";
/// The journal record of what a cutover deploys (detail: a [`Release`] as JSON).
pub const RELEASE_STEP: &str = "release";

/// What a cutover puts live, journaled once per run so the deployment report can name it:
/// the version (`--expect-version`), the CI build, the commit and the change ticket.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Release {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_ticket: Option<String>,
    /// The reason the deployment policy was overridden, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_override: Option<String>,
}

pub const ROLLBACK_STEPS: &[&str] = &[
    "stop_trading",
    "switch_back",
    "reactivate",
    "drain_new",
    "watch_old",
    "stop_new",
];

const POLL: Duration = Duration::from_millis(20);

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

// ---------------------------------------------------------------- the steps

pub struct Runner<'a> {
    pub ctx: &'a Ctx,
    pub journal: &'a Journal,
    pub run_id: String,
    pub action: &'static str,
    pub from: Color,
    pub to: Color,
    pub report: &'a mut Report,
}

impl Runner<'_> {
    pub async fn note(&self, step: &str, state: &str, detail: &str) -> Result<()> {
        self.journal
            .write(&Entry {
                run_id: self.run_id.clone(),
                environment: self.ctx.env_name.clone(),
                action: self.action.into(),
                from_color: self.from.to_string(),
                to_color: self.to.to_string(),
                step: step.into(),
                state: state.into(),
                detail: detail.into(),
                at: String::new(),
                deployment_id: String::new(),
            })
            .await
    }

    /// Journal `started`, run, journal `done`/`failed`, and report the step as a check.
    pub async fn step<F, Fut>(&mut self, name: &str, f: F) -> Result<bool>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = StepResult>,
    {
        self.note(name, "started", "").await?;
        let start = Instant::now();
        let r = f().await;
        let took = start.elapsed();
        crate::fault::crash_point(name);
        match r {
            Ok((msg, data)) => {
                self.note(name, "done", &msg).await?;
                tracing::info!("{} {name}: {msg}", self.action);
                self.report.push(
                    Check::ok(self.action, name)
                        .message(msg)
                        .data(data)
                        .took(took),
                );
                Ok(true)
            }
            Err(StepFailure(msg)) => {
                self.note(name, "failed", &msg).await?;
                tracing::error!("{} {name}: {msg}", self.action);
                self.report
                    .push(Check::fail(self.action, name, msg).took(took));
                Ok(false)
            }
        }
    }

    pub async fn finish(&self, detail: &str) -> Result<()> {
        self.note("finished", "finished", detail).await
    }
}

/// New traffic to `to`, `from` draining: one transaction per HAProxy instance.
pub async fn switch_traffic(ctx: &Ctx, from: Color, to: Color) -> StepResult {
    let decided = now_ms();
    let mut done = vec![];
    for l in &ctx.env.load_balancers {
        let cmds = lb::switch_commands(l, from, to);
        if let Err(e) = lb::transaction(&l.runtime_api, &cmds, ctx.timeout).await {
            // Put the instances already switched back, so no instance disagrees.
            for d in &done {
                let back = lb::switch_commands(d, to, from);
                let _ = lb::transaction(&d.runtime_api, &back, ctx.timeout).await;
            }
            return Err(
                format!("{}: {e}; instances already switched were put back", l.name).into(),
            );
        }
        done.push(l.clone());
    }
    let applied = now_ms();
    Ok((
        format!(
            "new traffic → {to} on {} instance(s) in {} ms; {from} draining",
            done.len(),
            applied - decided
        ),
        serde_json::json!({ "switch_decided_unix_ms": decided, "switch_applied_unix_ms": applied }),
    ))
}

/// Wait until `color` has nothing in flight: HAProxy scur+qcur and the services' counters.
/// Returns when it was detected (unix ms). After `deadline`, cancels working orders and kills
/// remaining sessions, saying so.
pub async fn drain(ctx: &Ctx, color: Color, deadline: Duration) -> StepResult {
    let start = Instant::now();
    let clients = ctx.clients(color, &[Role::TradingEngine, Role::Oms]);
    let mut note = Every::new(Duration::from_secs(5));
    loop {
        let mut sessions = 0;
        for l in &ctx.env.load_balancers {
            sessions += lb::sessions(l, color, ctx.timeout)
                .await
                .map_err(|e| e.to_string())?;
        }
        let mut inflight = 0;
        let mut open = 0;
        for c in &clients {
            match c.inflight().await {
                Ok(i) => {
                    inflight += i.inflight_requests;
                    open += i.open_orders;
                }
                Err(e) if e.is_unreachable() => {} // a dead service has nothing in flight
                Err(e) => return Err(format!("{}: {e}", c.base()).into()),
            }
        }
        if sessions == 0 && inflight == 0 && open == 0 {
            let at = now_ms();
            return Ok((
                format!(
                    "{color} drained in {} ms (HAProxy sessions 0, in-flight 0, open orders 0)",
                    start.elapsed().as_millis()
                ),
                serde_json::json!({ "drain_done_unix_ms": at }),
            ));
        }
        if start.elapsed() >= deadline {
            let mut cancelled = vec![];
            for c in &clients {
                if let Ok(v) = c.cancel_all_orders().await {
                    cancelled.extend(v.into_iter().map(|o| o.order_id));
                }
            }
            for l in &ctx.env.load_balancers {
                for b in &l.backends {
                    for s in l.servers.get(&color).into_iter().flatten() {
                        let _ = lb::command(
                            &l.runtime_api,
                            &format!("shutdown sessions server {b}/{s}"),
                            ctx.timeout,
                        )
                        .await;
                    }
                }
            }
            return Ok((
                format!(
                    "drain deadline {deadline:?} reached with {sessions} session(s), {inflight} in flight: cancelled working orders [{}], shut the remaining sessions",
                    cancelled.join(", ")
                ),
                serde_json::json!({ "drain_done_unix_ms": now_ms(), "cancelled": cancelled, "forced": true }),
            ));
        }
        if note.due() {
            tracing::info!(
                "draining {color}: {sessions} HAProxy session(s), {inflight} in flight, {open} open order(s)"
            );
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = ctx.cancel.cancelled() => return Err("interrupted while draining".into()),
        }
    }
}

/// `from` out of rotation (maint) everywhere, then read back that `to` is live everywhere.
pub async fn finalize_switch(ctx: &Ctx, from: Color, to: Color) -> StepResult {
    for l in &ctx.env.load_balancers {
        lb::transaction(&l.runtime_api, &lb::maint_commands(l, from), ctx.timeout)
            .await
            .map_err(|e| format!("{}: {e}", l.name))?;
    }
    let live = live_colors(ctx).await.map_err(|e| e.to_string())?;
    match agreed(&live) {
        Ok(c) if c == to => Ok((
            format!("{to} live on every instance (read back), {from} in maintenance"),
            serde_json::json!({}),
        )),
        Ok(c) => Err(format!("read back: {c} is live, expected {to}").into()),
        Err(e) => Err(format!("read back: {e}").into()),
    }
}

pub async fn set_feeds(ctx: &Ctx, color: Color) -> StepResult {
    admin_all(
        ctx,
        color,
        &[Role::Marketdata],
        "feeds → production",
        |c| async move { c.set_feed_source(FeedSource::Production).await },
    )
    .await
}

/// `color` takes orders and trades, running `strategies` (the ones the colour it replaces ran);
/// read back.
pub async fn activate(ctx: &Ctx, color: Color, strategies: &Strategies) -> StepResult {
    let clients = ctx.clients(color, &[Role::TradingEngine, Role::Oms]);
    admin_all(
        ctx,
        color,
        &[Role::TradingEngine, Role::Oms],
        "resume orders",
        |c| async move { c.resume_orders().await },
    )
    .await?;
    admin_all(
        ctx,
        color,
        &[Role::TradingEngine, Role::Oms],
        "trading activated",
        |c| async move { c.set_trading(true).await },
    )
    .await?;
    let engines = ctx.clients(color, &[Role::TradingEngine]);
    for c in &engines {
        for (name, st) in strategies.iter().filter(|(_, s)| s.active) {
            c.set_strategy(name, st)
                .await
                .map_err(|e| format!("strategy {name} on {}: {e}", c.base()))?;
        }
    }
    for c in &clients {
        let st = c
            .admin_state()
            .await
            .map_err(|e| format!("read back {}: {e}", c.base()))?;
        if !st.trading_active || !st.accepting_orders {
            return Err(format!(
                "read back {}: trading_active={} accepting_orders={}",
                c.base(),
                st.trading_active,
                st.accepting_orders
            )
            .into());
        }
    }
    Ok((
        format!(
            "{color} takes orders and trades on {} service(s) (read back); strategies: {}",
            clients.len(),
            describe_strategies(strategies)
        ),
        serde_json::json!({ "strategies": strategies }),
    ))
}

/// `MM_EQ_001 100%, STAT_ARB_PAIRS_001 50%`, or `none`.
pub fn describe_strategies(s: &Strategies) -> String {
    let on: Vec<String> = s
        .iter()
        .filter(|(_, s)| s.active)
        .map(|(n, s)| format!("{n} {}%", s.size_pct))
        .collect();
    if on.is_empty() {
        "none".into()
    } else {
        on.join(", ")
    }
}

/// The strategies active on any of `color`'s trading engines (the largest size wins).
pub async fn active_strategies(
    ctx: &Ctx,
    color: Color,
) -> std::result::Result<Strategies, StepFailure> {
    let mut out = Strategies::new();
    for c in ctx.clients(color, &[Role::TradingEngine]) {
        let st = c
            .admin_state()
            .await
            .map_err(|e| format!("{}: {e}", c.base()))?;
        for (name, s) in st.strategies.into_iter().filter(|(_, s)| s.active) {
            let keep = out.get(&name).is_none_or(|o| o.size_pct < s.size_pct);
            if keep {
                out.insert(name, s);
            }
        }
    }
    Ok(out)
}

/// `color` becomes a standby: refuses orders, trading off, every strategy off — read back on
/// each service. A service that cannot be reached is named, not failed on: it trades nothing
/// while down, and the cutover must not be undone for a colour that is gone.
pub async fn standby(ctx: &Ctx, color: Color) -> StepResult {
    let clients = ctx.clients(color, &[Role::TradingEngine, Role::Oms]);
    let mut down = vec![];
    let mut stopped = 0;
    for c in &clients {
        // A service that is down is listed, not fatal: it trades nothing while down.
        match c.admin_state().await {
            Ok(_) => {}
            Err(e) if e.is_unreachable() => {
                down.push(c.base().to_string());
                continue;
            }
            Err(e) => return Err(format!("{}: {e}", c.base()).into()),
        }
        let fail = |e: crate::http::HttpError| format!("{}: {e}", c.base());
        c.stop_orders().await.map_err(fail)?;
        trading_off(c).await.map_err(fail)?;
        let after = c.admin_state().await.map_err(fail)?;
        let still = after.active_strategies();
        if after.trading_active || after.accepting_orders || !still.is_empty() {
            return Err(format!(
                "read back {}: still trading_active={} accepting_orders={} strategies on {still:?}",
                c.base(),
                after.trading_active,
                after.accepting_orders
            )
            .into());
        }
        stopped += 1;
    }
    let mut msg = format!(
        "{color} is a standby: orders refused, trading and strategies off on {stopped}/{} service(s) (read back)",
        clients.len()
    );
    if !down.is_empty() {
        tracing::warn!(
            "{color} standby: unreachable {down:?}; check they stay off when they return"
        );
        msg.push_str(&format!(
            "; unreachable (not trading while down, check before restarting): {}",
            down.join(", ")
        ));
    }
    Ok((msg, serde_json::json!({ "unreachable": down })))
}

/// The rollback: stop trading on `bad` → traffic back to `good` (one prepared transaction per
/// instance) → reactivate `good` → drain `bad` → watch `good` → stop `bad`.
pub async fn rollback(
    r: &mut Runner<'_>,
    good: Color,
    bad: Color,
    skip: &[String],
    strategies: &Strategies,
) -> Result<bool> {
    let ctx = r.ctx;
    // Prepared before anything else, so the decision costs one transaction.
    let prepared: Vec<(crate::config::RuntimeApi, Vec<String>)> = ctx
        .env
        .load_balancers
        .iter()
        .map(|l| (l.runtime_api.clone(), lb::switch_commands(l, bad, good)))
        .collect();
    let done = |s: &str| skip.iter().any(|x| x == s);
    let mut ok = true;
    if !done("stop_trading") {
        // Best effort: a dead colour cannot be told anything; the switch must still happen.
        let clients = ctx.clients(bad, &[Role::TradingEngine, Role::Oms]);
        r.step("stop_trading", || async {
            let mut n = 0;
            for c in &clients {
                if trading_off(c).await.is_ok() {
                    n += 1;
                }
            }
            // The colour we return to must take orders the moment traffic arrives.
            admin_all(
                ctx,
                good,
                &[Role::TradingEngine, Role::Oms],
                "resume orders",
                |c| async move { c.resume_orders().await },
            )
            .await?;
            Ok((
                format!(
                    "trading and strategies off on {n}/{} {bad} service(s); {good} accepts orders",
                    clients.len()
                ),
                serde_json::json!({}),
            ))
        })
        .await?;
    }
    if !done("switch_back") {
        ok &= r
            .step("switch_back", || async {
                let decided = now_ms();
                for (api, cmds) in &prepared {
                    lb::transaction(api, cmds, ctx.timeout).await.map_err(|e| e.to_string())?;
                }
                let applied = now_ms();
                Ok((format!("new traffic → {good} in {} ms", applied - decided), serde_json::json!({ "rollback_decided_unix_ms": decided, "rollback_applied_unix_ms": applied })))
            })
            .await?;
        if !ok {
            return Ok(false);
        }
    }
    if !done("reactivate") {
        ok &= r
            .step("reactivate", || async {
                activate(ctx, good, strategies).await
            })
            .await?;
    }
    if !done("drain_new") {
        ok &= r
            .step("drain_new", || async {
                let (m, d) = drain(ctx, bad, Duration::from_secs(30)).await?;
                for l in &ctx.env.load_balancers {
                    lb::transaction(&l.runtime_api, &lb::maint_commands(l, bad), ctx.timeout)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Ok((format!("{m}; {bad} in maintenance"), d))
            })
            .await?;
    }
    if !done("watch_old") {
        ok &= r
            .step("watch_old", || async {
                for _ in 0..3 {
                    health(ctx, good, None)
                        .await
                        .map_err(|e| format!("{good} unhealthy after rollback: {e}"))?;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let live = live_colors(ctx).await.map_err(|e| e.to_string())?;
                match agreed(&live) {
                    Ok(c) if c == good => Ok((
                        format!("{good} live everywhere and healthy"),
                        serde_json::json!({}),
                    )),
                    Ok(c) => Err(format!("{c} is live, expected {good}").into()),
                    Err(e) => Err(e.into()),
                }
            })
            .await?;
    }
    if !done("stop_new") {
        ok &= r
            .step("stop_new", || async { standby(ctx, bad).await })
            .await?;
    }
    r.finish(if ok {
        "rolled back"
    } else {
        "rollback incomplete"
    })
    .await?;
    Ok(ok)
}
