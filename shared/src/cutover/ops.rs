//! The cutover tool's operations below the flags: status, idle, verify, the run with its
//! prepare/resume logic and watch, the rollback, and their dry-run plans. `cmd/cutover.rs` only
//! turns flags into these calls.

use crate::config::{Color, Role};
use crate::cutover::{self as co, BASELINE_STEP, Ctx, Runner, STRATEGIES_STEP, Strategies};
use crate::error::{Error, Result};
use crate::journal::Journal;
use crate::metrics;
use crate::report::{Check, Report};
use crate::smoke::{self, Group, Target};
use crate::watch;
use std::collections::BTreeSet;
use std::time::Duration;

/// The journal actions whose history `cutover rollback` and `--resume` read.
pub const CUTOVER_ACTIONS: &[&str] = &["cutover", "rollback"];

/// The live colour on every load balancer and whether they agree, whether the journal's last
/// run finished (or who runs it now), and whether the live colour trades and the idle one not.
pub async fn status(
    c: &Ctx,
    env: &crate::config::Environment,
    timeout: Duration,
    journal_dir: &std::path::Path,
    report: &mut Report,
) -> Result<()> {
    let live = crate::fleet::live_colors(c).await?;
    for (name, color) in &live {
        report.push(match color {
            Some(col) => {
                Check::ok("status", format!("{name} live colour")).message(col.to_string())
            }
            None => Check::fail(
                "status",
                format!("{name} live colour"),
                "no single colour is live (both or neither)",
            ),
        });
    }
    let agreed = crate::lb::agreed(&live);
    report.push(match &agreed {
        Ok(col) => Check::ok("status", "Load balancers agree").message(format!("{col} is live")),
        Err(e) => Check::fail("status", "Load balancers agree", e.to_string())
            .hint("finish or roll back the cutover: cutover rollback"),
    });
    let entries = Journal::read(&c.env_name, env, timeout, journal_dir).await?;
    let holder = Journal::holder(&c.env_name, env, timeout, journal_dir).await?;
    report.push(last_run_check(&entries, holder.as_ref()));
    // Isolated servers are out of service until returned: said here so none is forgotten.
    for i in crate::fleet::isolated_in(&entries) {
        report.push(
            Check::warn(
                "status",
                format!("{} isolated", i.server),
                format!("out of service since {}: {}", i.since, i.reason),
            )
            .hint(format!(
                "once fixed: isolate_server -e {} {} --return",
                c.env_name, i.server
            )),
        );
    }
    if let Ok(live) = agreed {
        for ch in trading_checks(c, live).await {
            report.push(ch);
        }
    }
    Ok(())
}

/// The idle colour (the one no load balancer sends traffic to); with `expect`, a conflict unless
/// that colour is the idle one.
pub async fn idle(c: &Ctx, expect: Option<Color>, report: &mut Report) -> Result<()> {
    let live = crate::lb::agreed(&crate::fleet::live_colors(c).await?).map_err(|e| {
        Error::Conflict(format!(
            "{e}: no colour is idle until the cutover is finished or rolled back (`cutover status`)"
        ))
    })?;
    let idle = live.other();
    if let Some(want) = expect
        && want != idle
    {
        return Err(Error::Conflict(format!(
            "{want} is live: deploying to it would restart the servers taking orders; deploy to the idle colour, {idle}"
        )));
    }
    report.push(
        Check::ok("idle", "Idle colour")
            .message(format!("{idle} ({live} is live)"))
            .data(serde_json::json!({ "idle": idle.as_str(), "live": live.as_str() })),
    );
    Ok(())
}

/// smoke_tests' checks on the idle colour before a switch, its test account cleaned up.
pub async fn verify(
    c: &Ctx,
    to: Color,
    expect_version: Option<String>,
    config_path: &std::path::Path,
    report: &mut Report,
) -> Result<()> {
    let target = smoke_target(c, to, expect_version);
    let groups: BTreeSet<Group> = Group::SERVICES.into();
    if c.env.test_account.is_none() {
        return Err(Error::config(
            config_path.display().to_string(),
            "test_account is not set: verify sends test orders",
        ));
    }
    let created = tokio::sync::Mutex::new(smoke::Created::default());
    let (h, f, m, r) = tokio::join!(
        smoke::health(&target),
        smoke::order_flow(&target, &groups, &created),
        smoke::marketdata(&target),
        smoke::risk(&target)
    );
    for ch in [h, f, m, r].concat() {
        report.push(ch);
    }
    report.push(smoke::cleanup(&target, &*created.lock().await).await);
    Ok(())
}

/// Back to the previous colour (`to`, else the journal's last cutover's origin) under the held
/// lock: refused when that colour was decommissioned since.
/// Between a cutover's run id and the CI build it belongs to.
pub const BUILD_MARK: &str = "@";

/// Why a failed build's rollback has nothing to do: the journal's last cutover-or-rollback run
/// is not a switch this build made (or it stopped before traffic could move). None: roll back.
fn not_switched_by(last: &[crate::journal::Entry], build: &str) -> Option<String> {
    let Some(e) = last.first() else {
        return Some("the journal has no cutover".into());
    };
    if e.action != "cutover" {
        return Some(format!("the last run, {}, is already a rollback", e.run_id));
    }
    if !e.run_id.ends_with(&format!("{BUILD_MARK}{build}")) {
        return Some(format!(
            "the last cutover, {}, is not build {build}'s: this build moved no traffic",
            e.run_id
        ));
    }
    // The first step that can move traffic (as --resume judges it).
    if !last.iter().any(|x| x.step == "stop_new_orders") {
        return Some(format!(
            "build {build}'s cutover {} stopped before moving traffic",
            e.run_id
        ));
    }
    None
}

pub async fn rollback(
    c: &Ctx,
    journal: &Journal,
    to: Option<Color>,
    if_switched_by: Option<&str>,
    report: &mut Report,
) -> Result<bool> {
    let last = journal.last_run(&c.env_name, CUTOVER_ACTIONS).await?;
    if let Some(why) = if_switched_by.and_then(|b| not_switched_by(&last, b)) {
        report.push(Check::skip(
            "rollback",
            "Rollback needed",
            format!("{why}: nothing rolled back, traffic left where it is"),
        ));
        return Ok(true);
    }
    let (good, bad) = match (to, last.first()) {
        (Some(g), _) => (g, g.other()),
        (None, Some(e)) if e.action == "cutover" => {
            let g = parse_color(&e.from_color)?;
            (g, g.other())
        }
        (None, Some(e)) => {
            let g = parse_color(&e.to_color)?;
            (g, g.other())
        }
        (None, None) => {
            return Err(Error::Usage(
                "no cutover in the journal: pass --to blue|green".into(),
            ));
        }
    };
    // A decommissioned colour has nothing to switch back to.
    if let Some(d) =
        crate::lifecycle::decommissioned_since_switch(journal, &c.env_name, good).await?
    {
        return Err(Error::Conflict(format!(
            "{good} was decommissioned at {} ({}): there is nothing to switch back to; redeploy the previous release to {good} (the idle colour), then `cutover run --to {good}`",
            d.at, d.run_id
        )));
    }
    // The strategies to give back: the ones the rolled-back run recorded, else the
    // ones the bad colour runs now (it took them over).
    let strategies = match recorded_strategies(&last) {
        Some(s) => s,
        None => co::active_strategies(c, bad).await.unwrap_or_default(),
    };
    let run_id = format!("rollback-{}", co::now_ms());
    let mut r = Runner {
        ctx: c,
        journal,
        run_id,
        action: "rollback",
        from: bad,
        to: good,
        report,
    };
    r.note(
        STRATEGIES_STEP,
        "done",
        &serde_json::to_string(&strategies).expect("json"),
    )
    .await?;
    co::rollback(&mut r, good, bad, &[], &strategies).await
}

/// Whether the journal's last cutover or rollback finished: an interrupted one is not a state to
/// call healthy, whatever HAProxy says.
pub fn last_run_check(
    entries: &[crate::journal::Entry],
    holder: Option<&crate::journal::Holder>,
) -> Check {
    const NAME: &str = "Last cutover finished";
    let last = crate::journal::last_of(entries.to_vec(), CUTOVER_ACTIONS);
    let Some(first) = last.first() else {
        return Check::ok("status", NAME).message("no cutover in the journal");
    };
    let what = format!(
        "{} ({} {} → {})",
        first.run_id, first.action, first.from_color, first.to_color
    );
    if let Some(end) = last.iter().find(|e| e.state == "finished") {
        return Check::ok("status", NAME).message(format!("{what}: {} at {}", end.detail, end.at));
    }
    let step = last
        .iter()
        .rev()
        .find(|e| {
            co::RUN_STEPS.contains(&e.step.as_str())
                || co::ROLLBACK_STEPS.contains(&e.step.as_str())
        })
        .map_or("before its first step".to_string(), |e| {
            format!("at {} ({})", e.step, e.state)
        });
    match holder {
        Some(h) if h.tool == "cutover" => {
            Check::ok("status", NAME).message(format!("{what} in progress, {step}, run by {h}"))
        }
        _ => {
            let resume = if first.action == "cutover" {
                format!(
                    "cutover run --to {} --resume continues it; cutover rollback returns to {}",
                    first.to_color, first.from_color
                )
            } else {
                format!("cutover rollback --to {} finishes it", first.to_color)
            };
            Check::fail("status", NAME, format!("{what} was interrupted {step}")).hint(resume)
        }
    }
}

/// The live colour trades and takes orders; the standby trades nothing (no strategy, trading
/// off). A standby that cannot be read is said, not passed.
pub async fn trading_checks(c: &Ctx, live: Color) -> Vec<Check> {
    let mut out = vec![];
    for (color, name) in [
        (live, format!("{live} (live) trades")),
        (
            live.other(),
            format!("{} (standby) does not trade", live.other()),
        ),
    ] {
        let mut bad = vec![];
        let mut unread = vec![];
        let clients = c.clients(color, &[Role::TradingEngine, Role::Oms]);
        for cl in &clients {
            match cl.admin_state().await {
                Err(e) => unread.push(format!("{}: {e}", cl.base())),
                Ok(st) => {
                    let on = st.active_strategies();
                    if color == live && (!st.trading_active || !st.accepting_orders) {
                        bad.push(format!(
                            "{}: trading_active={} accepting_orders={}",
                            cl.base(),
                            st.trading_active,
                            st.accepting_orders
                        ));
                    }
                    if color != live && (st.trading_active || !on.is_empty()) {
                        bad.push(format!(
                            "{}: trading_active={} strategies on {on:?}",
                            cl.base(),
                            st.trading_active
                        ));
                    }
                }
            }
        }
        out.push(if !bad.is_empty() {
            Check::fail("status", name, bad.join("; ")).hint(if color == live {
                "the live colour does not trade: maintenance_mode --status, or finish the cutover"
            } else {
                "the standby trades beside the live colour: cutover rollback, or stop it (POST /admin/trading/deactivate)"
            })
        } else if !unread.is_empty() {
            Check::skip("status", name, format!("cannot read: {}", unread.join("; ")))
        } else {
            Check::ok("status", name).message(format!("{} service(s) read", clients.len()))
        });
    }
    out
}

/// The strategies a run journaled before it changed anything.
pub fn recorded_strategies(entries: &[crate::journal::Entry]) -> Option<Strategies> {
    entries
        .iter()
        .find(|x| x.step == STRATEGIES_STEP && x.state == "done")
        .and_then(|x| serde_json::from_str(&x.detail).ok())
}

pub fn parse_color(s: &str) -> Result<Color> {
    match s {
        "blue" => Ok(Color::Blue),
        "green" => Ok(Color::Green),
        other => Err(Error::Conflict(format!(
            "journal names an unknown colour `{other}`"
        ))),
    }
}

pub fn smoke_target(c: &Ctx, color: Color, expect_version: Option<String>) -> Target {
    Target {
        color,
        env: c.env.clone(),
        http: c.http.clone(),
        account: c.env.test_account.clone(),
        expect_version,
        timeout: c.timeout,
        run_id: format!("cutover-{:x}", co::now_ms()),
    }
}

pub async fn warmup(c: &Ctx, to: Color, rounds: u32, report: &mut Report) {
    use futures_util::StreamExt;
    let target = smoke_target(c, to, None);
    let start = std::time::Instant::now();
    // Every server once (one process may serve several roles), up to 8 at once; a server that
    // fails is not asked again, so a dead one costs one deadline, not one per round.
    let mut seen = BTreeSet::new();
    let clients: Vec<_> = c
        .clients(to, &Role::ALL)
        .into_iter()
        .filter(|cl| seen.insert(cl.base().to_string()))
        .collect();
    let feeds: BTreeSet<String> = c
        .clients(to, &[Role::Marketdata])
        .iter()
        .map(|cl| cl.base().to_string())
        .collect();
    let symbol = c.env.smoke.symbol.clone();
    let results: Vec<(u32, Option<String>)> = futures_util::stream::iter(clients)
        .map(|cl| {
            let md = feeds.contains(cl.base());
            let symbol = symbol.clone();
            async move {
                let mut n = 0u32;
                for _ in 0..rounds {
                    if let Err(e) = cl.health().await {
                        return (n, Some(format!("{}: {e}", cl.base())));
                    }
                    n += 1;
                    if md && cl.feeds().await.is_ok() && cl.ticks(&symbol).await.is_ok() {
                        n += 1;
                    }
                }
                (n, None)
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let ok: u32 = results.iter().map(|(n, _)| n).sum();
    let failed: Vec<String> = results.into_iter().filter_map(|(_, e)| e).collect();
    report.push(if failed.is_empty() {
        Check::ok("warmup", "Connections and caches warmed").message(format!(
            "{ok} requests to {} server(s) in {} ms",
            seen.len(),
            start.elapsed().as_millis()
        ))
    } else {
        Check::fail(
            "warmup",
            "Connections and caches warmed",
            format!(
                "{} of {} server(s) failed: {}",
                failed.len(),
                seen.len(),
                failed.join("; ")
            ),
        )
        .hint("a server of the idle colour is down or unhealthy: fix or redeploy it before the cutover")
    });
    if c.env.test_account.is_some() {
        let groups: BTreeSet<Group> = [Group::Orders].into();
        let created = tokio::sync::Mutex::new(smoke::Created::default());
        for ch in smoke::order_flow(&target, &groups, &created).await {
            report.push(ch);
        }
        report.push(smoke::cleanup(&target, &*created.lock().await).await);
    }
}

/// A dry run's plan: one check per step (JUnit names must be unique and stable), holding every
/// command that step would send, in order.
#[derive(Default)]
struct PlanSteps(Vec<(String, Vec<String>)>);

impl PlanSteps {
    fn push(&mut self, step: &str, what: String) {
        match self.0.iter_mut().find(|(s, _)| s == step) {
            Some((_, w)) => w.push(what),
            None => self.0.push((step.to_string(), vec![what])),
        }
    }
    fn into_report(self, report: &mut Report) {
        for (step, what) in self.0 {
            report.push(Check::skip(
                "plan",
                step,
                format!("dry run: {}", what.join(" · ")),
            ));
        }
    }
}

pub fn plan_run(c: &Ctx, from: Color, to: Color, report: &mut Report) {
    let mut plan = PlanSteps::default();
    let mut push = |step: &str, what: String| plan.push(step, what);
    push(
        "prepare",
        format!("GET /health on every {to} service; sample {from}'s /metrics for the baseline"),
    );
    for l in &c.env.load_balancers {
        push(
            "stop_new_orders",
            format!(
                "{} runtime API `{}`",
                l.runtime_api,
                crate::lb::switch_commands(l, from, to).join("; ")
            ),
        );
    }
    for cl in c.clients(from, &[Role::TradingEngine, Role::Oms]) {
        push(
            "stop_new_orders",
            format!("POST {}/admin/orders/stop", cl.base()),
        );
    }
    push(
        "drain",
        format!("poll `show stat` scur+qcur of {from}'s servers and GET /admin/inflight until 0"),
    );
    for cl in c.clients(from, &[Role::TradingEngine, Role::Oms]) {
        push(
            "standby",
            format!(
                "POST {0}/admin/trading/deactivate and /admin/strategies/NAME {{\"active\":false}} per active strategy; read back {0}/admin/state",
                cl.base()
            ),
        );
    }
    for l in &c.env.load_balancers {
        push(
            "switch",
            format!(
                "{} runtime API `{}`; read back `show servers state`",
                l.runtime_api,
                crate::lb::maint_commands(l, from).join("; ")
            ),
        );
    }
    for cl in c.clients(to, &[Role::Marketdata]) {
        push(
            "feeds",
            format!(
                "POST {}/admin/feeds {{\"source\":\"production\"}}",
                cl.base()
            ),
        );
    }
    for cl in c.clients(to, &[Role::TradingEngine, Role::Oms]) {
        push(
            "activate",
            format!(
                "POST {0}/admin/orders/resume; POST {0}/admin/trading/activate; POST {0}/admin/strategies/NAME for each strategy {from} ran",
                cl.base()
            ),
        );
    }
    push(
        "watch",
        format!(
            "GET /health and /metrics of {to} every tick; judge error rate, throughput, latency, fill rate, risk rejections and P&L against the baseline and the absolute limits"
        ),
    );
    plan.into_report(report);
}

pub fn plan_rollback(c: &Ctx, good: Color, bad: Color, report: &mut Report) {
    let mut plan = PlanSteps::default();
    let mut push = |step: &str, what: String| plan.push(step, what);
    for cl in c.clients(bad, &[Role::TradingEngine, Role::Oms]) {
        push(
            "stop_trading",
            format!("POST {}/admin/trading/deactivate", cl.base()),
        );
    }
    for l in &c.env.load_balancers {
        push(
            "switch_back",
            format!(
                "{} runtime API `{}`",
                l.runtime_api,
                crate::lb::switch_commands(l, bad, good).join("; ")
            ),
        );
    }
    push(
        "reactivate",
        format!("POST /admin/orders/resume and /admin/trading/activate on {good}"),
    );
    push(
        "drain_new",
        format!(
            "poll {bad} until idle, then `{}`",
            c.env
                .load_balancers
                .iter()
                .map(|l| crate::lb::maint_commands(l, bad).join("; "))
                .collect::<Vec<_>>()
                .join(" | ")
        ),
    );
    push(
        "watch_old",
        format!("GET /health of {good}; read back the live colour"),
    );
    push("stop_new", format!("POST /admin/orders/stop on {bad}"));
    plan.into_report(report);
}

#[allow(clippy::too_many_arguments)]
pub async fn run(
    c: &Ctx,
    journal: &Journal,
    to: Color,
    watch: Duration,
    expect_version: Option<&str>,
    drain_deadline: Duration,
    baseline_window: Duration,
    tick: Duration,
    resume: bool,
    release: &co::Release,
    report: &mut Report,
) -> Result<()> {
    let from = to.other();
    let mut done: Vec<String> = vec![];
    // The CI build rides in the run id: every entry carries it, and no journal schema changes.
    let mut run_id = match release.build.as_deref() {
        Some(b) => format!("cutover-{}{BUILD_MARK}{b}", co::now_ms()),
        None => format!("cutover-{}", co::now_ms()),
    };
    // The baseline the interrupted run sampled from the old colour before its switch.
    let mut saved_baseline: Option<metrics::Snapshot> = None;
    let mut saved_strategies: Option<Strategies> = None;
    // Whether the interrupted run may have moved traffic: its first step started.
    let mut switched_already = false;
    if resume {
        let last = journal.last_run(&c.env_name, CUTOVER_ACTIONS).await?;
        match last.first() {
            Some(e) if e.action == "cutover" && !last.iter().any(|x| x.state == "finished") => {
                if e.to_color != to.as_str() {
                    return Err(Error::Conflict(format!(
                        "the interrupted cutover goes to {}, not {to}",
                        e.to_color
                    )));
                }
                run_id = e.run_id.clone();
                saved_baseline = last
                    .iter()
                    .find(|x| x.step == BASELINE_STEP && x.state == "done")
                    .and_then(|x| serde_json::from_str(&x.detail).ok());
                saved_strategies = recorded_strategies(&last);
                // A step with `started` but no `done` may have acted: it is redone (every step
                // is idempotent), and traffic may already have moved.
                switched_already = last.iter().any(|x| x.step == "stop_new_orders");
                done = last
                    .iter()
                    .filter(|x| x.state == "done")
                    .map(|x| x.step.clone())
                    .collect();
                report.note(format!(
                    "resuming {run_id}; done: {}",
                    if done.is_empty() {
                        "nothing".into()
                    } else {
                        done.join(", ")
                    }
                ));
            }
            _ => {
                return Err(Error::Conflict(
                    "nothing to resume: the journal's last run finished".into(),
                ));
            }
        }
    }
    // Prepare: nothing changes until every precondition holds.
    let live = crate::fleet::live_colors(c).await?;
    if !switched_already {
        match crate::lb::agreed(&live) {
            Err(e) => {
                report.push(
                    Check::fail("cutover", "prepare", format!("{e}; nothing changed"))
                        .hint("fix the load balancers or run cutover rollback"),
                );
                return Ok(());
            }
            Ok(l) if l == to => {
                // Nothing to do only for a retry of the run that did it: the journal's last
                // cutover finished on `to`, which runs the expected version. Otherwise the
                // pipeline deployed to the live colour (or chose the wrong one): a conflict,
                // never a green build without a switch.
                let last = journal.last_run(&c.env_name, CUTOVER_ACTIONS).await?;
                let finished_here = last
                    .first()
                    .is_some_and(|e| e.action == "cutover" && e.to_color == to.as_str())
                    && last.iter().any(|x| x.state == "finished");
                let on_version = match expect_version {
                    Some(v) => crate::fleet::health(c, to, Some(v)).await.is_ok(),
                    None => false,
                };
                if finished_here && on_version {
                    report.push(Check::ok("cutover", "prepare").message(format!(
                        "{to} is already live on {}: the journal's last cutover ({}) finished there; nothing to do",
                        expect_version.unwrap_or_default(),
                        last.first().map_or("", |e| e.run_id.as_str())
                    )));
                    return Ok(());
                }
                return Err(Error::Conflict(format!(
                    "{to} is already live: nothing to cut over to; deploy the release to the idle colour ({from}, as `cutover idle` says) and cut over to that"
                )));
            }
            Ok(_) => {}
        }
        if let Err(e) = crate::fleet::health(c, to, expect_version).await {
            report.push(
                Check::fail(
                    "cutover",
                    "prepare",
                    format!("{to} is not ready: {e}; nothing changed, {from} stays live"),
                )
                .hint("fix or redeploy the new colour, then cutover verify"),
            );
            return Ok(());
        }
    }
    // A resumed run judges against the baseline its first attempt sampled (journaled), never
    // an empty one; a run that had not switched yet samples the still-live colour now.
    let (base, base_from) = match saved_baseline {
        Some(b) => (
            b,
            format!("baseline from the journal ({from}, sampled before the switch)"),
        ),
        None if switched_already => {
            // The old colour no longer takes traffic: sampling it now would read idle. The
            // watch then judges by the absolute limits alone, and says so.
            tracing::warn!(
                "no journaled baseline for {run_id}: the watch judges {to} by the absolute limits alone"
            );
            (
                watch::no_baseline(),
                "no baseline in the journal: absolute limits only".to_string(),
            )
        }
        None => (
            watch::baseline(c.all(from), baseline_window, tick)
                .await
                .map_err(|e| Error::unreachable(format!("{from} services"), e))?,
            format!("baseline sampled from {from}"),
        ),
    };
    // The strategies the old colour runs, recorded before anything changes: the new colour
    // takes them over once the old one is a standby, and a rollback gives them back.
    let strategies = match saved_strategies {
        Some(s) => s,
        None if switched_already => Strategies::new(),
        None => co::active_strategies(c, from)
            .await
            .map_err(|e| Error::unreachable(format!("{from} services"), e))?,
    };
    report.push(Check::ok("cutover", "prepare").message(format!(
        "{to} healthy{}; {base_from}; rollback prepared",
        expect_version
            .map(|v| format!(" at {v}"))
            .unwrap_or_default()
    )));
    let mut r = Runner {
        ctx: c,
        journal,
        run_id,
        action: "cutover",
        from,
        to,
        report,
    };
    let is = |s: &str| done.iter().any(|d| d == s);
    if !is(co::RELEASE_STEP) {
        r.note(
            co::RELEASE_STEP,
            "done",
            &serde_json::to_string(release).expect("json"),
        )
        .await?;
    }
    if !is(BASELINE_STEP) {
        r.note(
            BASELINE_STEP,
            "done",
            &serde_json::to_string(&base).expect("json"),
        )
        .await?;
    }
    if !is(STRATEGIES_STEP) {
        r.note(
            STRATEGIES_STEP,
            "done",
            &serde_json::to_string(&strategies).expect("json"),
        )
        .await?;
    }
    let mut ok = true;
    if !is("stop_new_orders") {
        ok = r
            .step("stop_new_orders", || async {
                // The new colour must take orders the moment traffic arrives.
                crate::fleet::admin_all(
                    c,
                    to,
                    &[Role::TradingEngine, Role::Oms],
                    "resume orders",
                    |cl| async move { cl.resume_orders().await },
                )
                .await?;
                let (m, d) = co::switch_traffic(c, from, to).await?;
                // Guard for clients that bypass the load balancer.
                let mut n = 0;
                for cl in c.clients(from, &[Role::TradingEngine, Role::Oms]) {
                    if cl.stop_orders().await.is_ok() {
                        n += 1;
                    }
                }
                Ok((
                    format!("{m}; {from} refuses new orders on {n} service(s)"),
                    d,
                ))
            })
            .await?;
    }
    if ok && !is("drain") {
        ok = r
            .step("drain", || async {
                co::drain(c, from, drain_deadline).await
            })
            .await?;
    }
    if ok && !is("switch") {
        ok = r
            .step("switch", || async {
                co::finalize_switch(c, from, to).await
            })
            .await?;
    }
    if ok && !is("standby") {
        // Before the new colour trades: the two never run the same strategy at once.
        ok = r
            .step("standby", || async { co::standby(c, from).await })
            .await?;
    }
    if ok && !is("feeds") {
        ok = r
            .step("feeds", || async { co::set_feeds(c, to).await })
            .await?;
    }
    if ok && !is("activate") {
        ok = r
            .step("activate", || async {
                co::activate(c, to, &strategies).await
            })
            .await?;
    }
    if ok && !is("watch") {
        ok = r
            .step("watch", || async {
                watch::observe(c, to, c.all(to), &base, watch, tick, "watch")
                    .await
                    .map(|w| {
                        (
                            format!("{to} healthy for {watch:?}; {}", w.summary()),
                            serde_json::to_value(&w).unwrap_or_default(),
                        )
                    })
                    .map_err(|e| e.to_string().into())
            })
            .await?;
    }
    if ok {
        r.finish("cutover complete").await?;
        return Ok(());
    }
    if c.cancel.is_cancelled() {
        // Interrupted: leave the journal as it is; `--resume` or `rollback` continues.
        return Err(Error::Interrupted(crate::error::Signal::Int));
    }
    tracing::warn!("cutover failed: rolling back to {from}");
    r.action = "rollback";
    let rolled = co::rollback(&mut r, from, to, &[], &strategies).await?;
    r.report.note(if rolled {
        format!("rolled back automatically: {from} is live")
    } else {
        "automatic rollback incomplete: run cutover rollback".to_string()
    });
    Ok(())
}
