//! The guide's §10 emergency procedures. `stop`: the kill switch — every trading server of
//! every colour at once refuses new orders, cancels every working order and switches trading
//! and strategies off, then the load balancers serve the maintenance page. It never waits for a
//! drain or a lock (a cutover holding the lock is exactly when it may be needed), tries every
//! server even when some fail, and bounds each server by one deadline, so a dead or stalled
//! server costs that deadline once and is named for an operator to stop by hand.

use crate::config::{Color, Environment, Role};
use crate::contract::Client;
use crate::error::Result;
use crate::fleet::{Fleet, Server, Status};
use crate::journal::{Entry, Journal};
use crate::lb;
use crate::report::{Check, Report};
use std::time::{Duration, Instant};

/// What one server confirmed after the stop.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Stopped {
    /// Working orders this stop cancelled.
    pub cancelled: usize,
    /// Strategies switched off.
    pub strategies: Vec<String>,
}

/// The servers that hold orders or run strategies.
pub const TRADING: &[Role] = &[Role::TradingEngine, Role::Oms];

/// Stop every trading server of `colors` (all at once), then put the maintenance page on every
/// web server of those colours and on every load balancer; one check per server and per load
/// balancer in `report`.
///
/// Isolated servers (`isolated`, read from the journal meanwhile) are stopped too (cheap insurance: an isolated server may keep working
/// orders by policy); one that cannot be reached is out of service already, so it is skipped
/// with its isolation named, not failed.
pub async fn stop(
    env: &Environment,
    fleet: &Fleet,
    isolated: impl std::future::Future<Output = Vec<crate::fleet::Isolation>>,
    colors: &[Color],
    reason: &str,
    report: &mut Report,
) {
    let in_scope = |roles: &[Role]| {
        fleet
            .all()
            .into_iter()
            .filter(|s| colors.contains(&s.color) && s.serves(roles))
            .collect::<Vec<_>>()
    };
    stop_trading(fleet, isolated, &in_scope(TRADING), report).await;
    let web = in_scope(&[Role::Web]);
    let reason = reason.to_string();
    let pages = fleet
        .each("maintenance page", &web, |c| {
            let reason = reason.clone();
            async move {
                c.set_maintenance(Some(&reason))
                    .await
                    .map_err(|e| e.to_string())
            }
        })
        .await;
    for r in &pages.results {
        let name = format!("Maintenance page on {} ({})", r.server.name, r.server.color);
        report.push(match &r.status {
            Status::Reached(_) => Check::ok("emergency stop", name),
            Status::Failed(why) => Check::warn("emergency stop", name, why.clone())
                .hint("the page only informs users: orders are already refused"),
            Status::Skipped(why) => Check::skip("emergency stop", name, why.clone()),
        });
    }

    // Every load balancer at once, each bounded by the same deadline.
    let lbs = futures_util::future::join_all(env.load_balancers.iter().filter_map(|l| {
        let map = l.maintenance_map.as_ref()?;
        let cmd = format!("set map {} maintenance on", map.display());
        Some(async move {
            let t = Instant::now();
            let r = lb::transaction(&l.runtime_api, &[cmd], fleet.deadline()).await;
            (l.name.clone(), r, t.elapsed())
        })
    }))
    .await;
    for (name, r, took) in lbs {
        let check = format!("Maintenance page on load balancer {name}");
        report.push(match r {
            Ok(_) => Check::ok("emergency stop", check).took(took),
            Err(e) => Check::warn("emergency stop", check, e.to_string())
                .hint(
                    "set it by hand: `set map <maintenance_map> maintenance on` on its runtime API",
                )
                .took(took),
        });
    }
}

/// The kill switch's core on `trading` (all at once, each bounded): orders refused, working
/// orders cancelled, trading and strategies off, read back; one check per server. Isolated
/// servers (`isolated`, read meanwhile) that do not answer are skipped, not failed.
pub async fn stop_trading(
    fleet: &Fleet,
    isolated: impl std::future::Future<Output = Vec<crate::fleet::Isolation>>,
    trading: &[&Server],
    report: &mut Report,
) {
    let started = Instant::now();
    // The journal is read while the servers stop: the stop never waits for it.
    let (out, isolated) = tokio::join!(
        fleet.each(
            "emergency stop",
            trading,
            |c| async move { stop_one(&c).await }
        ),
        isolated
    );
    tracing::info!("{} (in {:.1?})", out.summary(), started.elapsed());
    for r in &out.results {
        let name = format!("Stop {} ({})", r.server.name, r.server.color);
        report.push(match &r.status {
            Status::Reached(s) => Check::ok("emergency stop", name)
                .message(format!(
                    "orders refused, {} working order(s) cancelled, 0 left; trading off{} (read back)",
                    s.cancelled,
                    if s.strategies.is_empty() {
                        String::new()
                    } else {
                        format!(", strategies off: {}", s.strategies.join(", "))
                    }
                ))
                .data(serde_json::json!({ "server": r.server.name, "url": r.server.url, "stopped": s }))
                .took(r.took),
            Status::Failed(why) if isolated.iter().any(|i| i.server == r.server.name) => {
                Check::skip(
                    "emergency stop",
                    name,
                    format!("isolated and not answering ({why}): out of service already"),
                )
            }
            Status::Failed(why) => Check::fail("emergency stop", name, why.clone())
                .hint(format!(
                    "NOT STOPPED: stop {} ({}) by hand now (stop its trading service or cut it off the network); docs/runbook.md#emergency-stop",
                    r.server.name, r.server.url
                ))
                .data(serde_json::json!({ "server": r.server.name, "url": r.server.url }))
                .took(r.took),
            Status::Skipped(why) => Check::skip(
                "emergency stop",
                name,
                format!("{why}: already out of service"),
            ),
        });
    }
}

/// One server: refuse orders first (nothing new can arrive), then cancel what works, then
/// trading and strategies off; read back, including a second cancel that must find nothing.
async fn stop_one(c: &Client) -> std::result::Result<Stopped, String> {
    let e = |what: &str| {
        let what = what.to_string();
        move |err: crate::http::HttpError| format!("{what}: {err}")
    };
    c.stop_orders().await.map_err(e("stop new orders"))?;
    let cancelled = c
        .cancel_all_orders()
        .await
        .map_err(e("cancel working orders"))?
        .len();
    let strategies = crate::fleet::trading_off(c)
        .await
        .map_err(e("trading and strategies off"))?;
    let after = c.admin_state().await.map_err(e("read back"))?;
    let left = c
        .cancel_all_orders()
        .await
        .map_err(e("read back working orders"))?
        .len();
    let on = after.active_strategies();
    if after.accepting_orders || after.trading_active || !on.is_empty() || left > 0 {
        return Err(format!(
            "read back: accepting_orders={} trading_active={} strategies on {on:?}, {left} working order(s) appeared after the stop",
            after.accepting_orders, after.trading_active
        ));
    }
    Ok(Stopped {
        cancelled,
        strategies,
    })
}

/// The per-server deadline's default: a healthy server answers its five admin calls in
/// milliseconds; a stalled one must not hold the kill switch longer than this.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(5);

/// What `isolate_server` does with the working orders of the server it isolates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WorkingOrders {
    /// Cancel them (named in the report): nothing trades on a server out of service.
    Cancel,
    /// Leave them working on the server (named in the report); they are not matched while it
    /// takes no traffic, so decide before returning it.
    Keep,
}

fn isolation_entry(env_name: &str, s: &Server, state: &str, detail: &str) -> Entry {
    Entry {
        run_id: format!("isolate-{:x}", crate::cutover::now_ms()),
        environment: env_name.into(),
        action: crate::fleet::ISOLATE_ACTION.into(),
        from_color: s.color.to_string(),
        to_color: s.color.to_string(),
        step: s.name.clone(),
        state: state.into(),
        detail: detail.into(),
        at: String::new(),
        deployment_id: String::new(),
    }
}

/// `state` on the server in every backend of each of its load balancers, all at once.
async fn set_lb_state(
    env: &Environment,
    s: &Server,
    state: &str,
    timeout: Duration,
) -> Vec<(String, std::result::Result<(), String>)> {
    futures_util::future::join_all(
        env.load_balancers
            .iter()
            .filter(|l| s.load_balancers.contains(&l.name))
            .map(|l| async move {
                let cmds = lb::server_commands(l, &s.name, state);
                let r = lb::transaction(&l.runtime_api, &cmds, timeout)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string());
                (l.name.clone(), r)
            }),
    )
    .await
}

/// Take one server out of service (guide §10 "isolate_server.sh"): every load balancer drains
/// it, then puts it in maintenance once its sessions reach 0 (or `drain_deadline` passes);
/// the service stops taking orders and its working orders are cancelled or kept per `orders`;
/// the isolation is journaled, and every tool skips the server until `--return`. A server
/// that does not answer (the usual reason to isolate it) is isolated all the same: HAProxy is
/// what keeps traffic away from it.
pub async fn isolate(
    ctx: &crate::fleet::Ctx,
    journal: &Journal,
    s: &Server,
    orders: WorkingOrders,
    reason: &str,
    drain_deadline: Duration,
    report: &mut Report,
) -> Result<()> {
    let env = &ctx.env;
    if s.load_balancers.is_empty() {
        report.note(format!(
            "{} is no load balancer's server: no client traffic to move",
            s.name
        ));
    }
    // 1. No new traffic: drain on every load balancer.
    let t = Instant::now();
    for (l, r) in set_lb_state(env, s, "drain", ctx.timeout).await {
        report.push(match r {
            Ok(()) => Check::ok("isolate", format!("Drain {} on {l}", s.name)).took(t.elapsed()),
            Err(e) => Check::fail("isolate", format!("Drain {} on {l}", s.name), e)
                .hint("fix the load balancer's runtime API and run isolate_server again"),
        });
    }
    if report.outcome == crate::report::Outcome::Fail {
        return Ok(());
    }
    // 2. Sessions done (or the deadline), then maintenance.
    let t = Instant::now();
    let names = vec![s.name.clone()];
    let mine: Vec<&crate::config::LoadBalancer> = env
        .load_balancers
        .iter()
        .filter(|l| s.load_balancers.contains(&l.name))
        .collect();
    let left = lb::wait_drained(
        mine,
        |_| names.clone(),
        &s.name,
        drain_deadline,
        ctx.timeout,
    )
    .await;
    let drained = if left == 0 {
        format!("sessions drained in {:.1?}", t.elapsed())
    } else {
        format!(
            "deadline {} passed with sessions left: put in maintenance anyway",
            humantime::format_duration(drain_deadline)
        )
    };
    for (l, r) in set_lb_state(env, s, "maint", ctx.timeout).await {
        report.push(match r {
            Ok(()) => Check::ok("isolate", format!("Maintenance for {} on {l}", s.name))
                .message(drained.clone())
                .took(t.elapsed()),
            Err(e) => Check::fail("isolate", format!("Maintenance for {} on {l}", s.name), e),
        });
    }
    // 3. The service: no new orders; working orders per policy.
    let c = ctx.fleet.client(s);
    let t = Instant::now();
    let service = async {
        c.stop_orders().await.map_err(|e| e.to_string())?;
        match orders {
            WorkingOrders::Cancel => {
                let gone = c.cancel_all_orders().await.map_err(|e| e.to_string())?;
                Ok::<_, String>(format!(
                    "orders refused; {} working order(s) cancelled{}",
                    gone.len(),
                    order_ids(&gone)
                ))
            }
            WorkingOrders::Keep => {
                Ok("orders refused; working orders kept (--working-orders keep)".into())
            }
        }
    };
    let name = format!("Stop orders on {}", s.name);
    report.push(match tokio::time::timeout(ctx.timeout, service).await {
        Ok(Ok(m)) => Check::ok("isolate", name).message(m).took(t.elapsed()),
        Ok(Err(e)) => Check::warn("isolate", name, format!("not answering ({e}): it takes no orders while down"))
            .hint("check it stays out of service when it comes back (isolate_server --return health-checks it first)"),
        Err(_) => Check::warn("isolate", name, "no answer within the timeout: it takes no orders while stalled")
            .hint("check it stays out of service when it comes back"),
    });
    if report.outcome == crate::report::Outcome::Fail {
        return Ok(());
    }
    let detail = serde_json::json!({ "reason": reason, "url": s.url, "orders": format!("{orders:?}").to_lowercase() });
    journal
        .write(&isolation_entry(
            &ctx.env_name,
            s,
            "isolated",
            &detail.to_string(),
        ))
        .await?;
    report.push(
        Check::ok("isolate", format!("{} isolated", s.name)).message(format!(
            "journaled; every tool skips it until `isolate_server {} --return`",
            s.name
        )),
    );
    Ok(())
}

fn order_ids(orders: &[crate::contract::Order]) -> String {
    if orders.is_empty() {
        return String::new();
    }
    format!(
        ": {}",
        orders
            .iter()
            .map(|o| o.order_id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Put an isolated server back (`isolate_server NAME --return`): only when it is healthy, runs
/// its colour's version and passes the smoke checks against it alone; then it trades as its
/// colour's other servers do, every load balancer makes it `ready`, and the return is journaled.
pub async fn restore(
    ctx: &crate::fleet::Ctx,
    journal: &Journal,
    s: &Server,
    report: &mut Report,
) -> Result<()> {
    let c = ctx.fleet.client(s);
    // 1. Healthy, at the colour's version (what its peers in service run).
    let t = Instant::now();
    let peers: Vec<&Server> = ctx
        .fleet
        .select(Some(s.color), &s.roles)
        .into_iter()
        .filter(|p| p.name != s.name && !ctx.fleet.is_isolated(p))
        .collect();
    let versions = ctx
        .fleet
        .each("version", &peers, |c| async move {
            c.health()
                .await
                .map(|h| h.version)
                .map_err(|e| e.to_string())
        })
        .await;
    let mut colour_versions: Vec<String> = versions
        .reached()
        .into_iter()
        .map(|(_, v)| v.clone())
        .collect();
    colour_versions.sort();
    colour_versions.dedup();
    let health = match tokio::time::timeout(ctx.timeout, c.health()).await {
        Ok(Ok(h)) => Ok(h),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within the timeout".to_string()),
    };
    let check = format!("{} healthy at its colour's version", s.name);
    let ok = match (&health, colour_versions.as_slice()) {
        (Err(e), _) => {
            report.push(Check::fail("return", check, format!("not healthy: {e}")).hint(format!(
                "fix or restart {} and run `isolate_server {} --return` again; it stays isolated",
                s.name, s.name
            )));
            false
        }
        (Ok(h), _) if h.status != "ok" => {
            report.push(Check::fail("return", check, format!("status {}", h.status)));
            false
        }
        (Ok(h), [v]) if &h.version != v => {
            report.push(
                Check::fail(
                    "return",
                    check,
                    format!("runs {}, its colour runs {v}", h.version),
                )
                .hint(format!("deploy {v} to {} first; it stays isolated", s.name)),
            );
            false
        }
        (Ok(_), [_]) => {
            report.push(Check::ok("return", check).took(t.elapsed()));
            true
        }
        (Ok(_), vs) => {
            report.push(Check::fail(
                "return",
                check,
                format!(
                    "its colour's servers in service run {vs:?}: no one version to compare with"
                ),
            ));
            false
        }
    };
    if !ok {
        return Ok(());
    }
    // 2. Smoke checks against it alone, orders open on it only for them (it takes no client
    // traffic: every load balancer still has it in maintenance).
    let mut target = crate::cutover::ops::smoke_target(ctx, s.color, None);
    for (role, urls) in target.env.services.entry(s.color).or_default().iter_mut() {
        *urls = if s.roles.contains(role) {
            urls.iter()
                .filter(|u| u.to_string() == s.url)
                .cloned()
                .collect()
        } else {
            vec![]
        };
    }
    let peer_state = match peers.first() {
        Some(p) => ctx.fleet.client(p).admin_state().await.ok(),
        None => None,
    };
    let _ = c.resume_orders().await;
    let mut smoke = crate::smoke::health(&target).await;
    if s.roles.contains(&Role::TradingEngine) {
        let created = tokio::sync::Mutex::new(crate::smoke::Created::default());
        let groups = [crate::smoke::Group::Orders].into_iter().collect();
        smoke.extend(crate::smoke::order_flow(&target, &groups, &created).await);
        smoke.push(crate::smoke::cleanup(&target, &*created.lock().await).await);
    }
    let failed: Vec<String> = smoke
        .iter()
        .filter(|c| c.status == crate::report::Status::Fail)
        .map(|c| format!("{}: {}", c.name, c.message.as_deref().unwrap_or("failed")))
        .collect();
    let check = format!("Smoke checks on {} alone", s.name);
    if !failed.is_empty() {
        let _ = c.stop_orders().await;
        report.push(
            Check::fail("return", check, failed.join("; ")).hint(format!(
                "{} stays isolated; fix it and run `isolate_server {} --return` again",
                s.name, s.name
            )),
        );
        return Ok(());
    }
    report.push(Check::ok("return", check).message(format!("{} check(s) passed", smoke.len())));
    // 3. Trade as the colour does: a standby colour's server goes back refusing orders.
    if let Some(p) = &peer_state {
        let set = async {
            if !p.accepting_orders {
                c.stop_orders().await?;
            }
            c.set_trading(p.trading_active).await?;
            for (name, st) in p.strategies.iter().filter(|(_, st)| st.active) {
                c.set_strategy(name, st).await?;
            }
            Ok::<_, crate::http::HttpError>(())
        };
        if let Err(e) = set.await {
            let _ = c.stop_orders().await;
            report.push(Check::fail(
                "return",
                format!("{} trades as its colour", s.name),
                e.to_string(),
            ));
            return Ok(());
        }
        report.push(
            Check::ok("return", format!("{} trades as its colour", s.name)).message(format!(
                "accepting orders {}, trading {}, strategies {:?}",
                p.accepting_orders,
                p.trading_active,
                p.active_strategies()
            )),
        );
    }
    // 4. Traffic back: ready on every load balancer (only where its colour is live; a standby
    // colour's servers stay in maintenance until a cutover).
    let live = crate::lb::target_color(&ctx.env, None, ctx.timeout)
        .await
        .ok();
    if live == Some(s.color) {
        for (l, r) in set_lb_state(&ctx.env, s, "ready", ctx.timeout).await {
            report.push(match r {
                Ok(()) => Check::ok("return", format!("{} ready on {l}", s.name)),
                Err(e) => Check::fail("return", format!("{} ready on {l}", s.name), e)
                    .hint("run isolate_server --return again once the load balancer answers"),
            });
        }
        if report.outcome == crate::report::Outcome::Fail {
            return Ok(());
        }
    } else {
        report.note(format!(
            "{} stays in maintenance on the load balancers: its colour {} is not live (a cutover makes it ready)",
            s.name, s.color
        ));
    }
    journal
        .write(&isolation_entry(&ctx.env_name, s, "returned", ""))
        .await?;
    report.push(Check::ok("return", format!("{} back in service", s.name)).message("journaled"));
    Ok(())
}

/// The guide's §10 "total deployment failure": traffic back to the previous colour whatever
/// the journal says. The live colour is read from the load balancers (a cutover killed after
/// its switch reads as the new colour live, the old one draining); `to` overrides it. The
/// previous colour's healthy servers take orders first, then every load balancer switches in
/// one transaction (its unhealthy servers stay out), the failed colour drains (bounded) and is
/// emergency-stopped. Answers (failed, restored) colours once traffic has moved.
pub async fn rollback(
    ctx: &crate::fleet::Ctx,
    to: Option<Color>,
    drain_deadline: Duration,
    report: &mut Report,
) -> Result<(Color, Color)> {
    use crate::error::Error;
    let t = Instant::now();
    let live = crate::fleet::live_colors(ctx).await?;
    let target = match (to, crate::lb::agreed(&live)) {
        (Some(c), _) => c,
        (None, Ok(live)) => live.other(),
        (None, Err(why)) => {
            return Err(Error::Conflict(format!(
                "{why}: the colour to return to is not clear from the load balancers; pass --to blue|green"
            )));
        }
    };
    let failed = target.other();
    report.push(
        Check::ok("emergency rollback", "Live state")
            .message(format!(
                "{}: traffic goes back to {target}, {failed} is stopped",
                live.iter()
                    .map(|(n, c)| format!("{n}: {}", c.map_or("none".into(), |c| c.to_string())))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .took(t.elapsed()),
    );

    // 1. The previous colour: which servers answer healthy (they get the traffic).
    let t = Instant::now();
    let health = crate::fleet::health_of(ctx, target).await;
    let down: Vec<String> = health
        .failed()
        .iter()
        .map(|(s, _)| s.name.clone())
        .collect();
    let healthy_engines = health
        .reached()
        .iter()
        .filter(|(s, _)| s.roles.contains(&Role::TradingEngine))
        .count();
    if healthy_engines == 0 {
        return Err(Error::Conflict(format!(
            "nothing to roll back to: no trading engine of {target} answers healthy ({}); redeploy the previous release to {target} or stop trading (emergency_stop)",
            health.summary()
        )));
    }
    let mut versions: Vec<&String> = health.reached().into_iter().map(|(_, v)| v).collect();
    versions.sort();
    versions.dedup();
    report.push(if down.is_empty() {
        Check::ok("emergency rollback", format!("{target} healthy"))
            .message(format!("{} (version {versions:?})", health.summary()))
            .took(t.elapsed())
    } else {
        Check::warn("emergency rollback", format!("{target} healthy"), health.summary())
            .hint("the servers that did not answer get no traffic; isolate them (isolate_server) and fix them")
            .took(t.elapsed())
    });
    // The run's view of the environment without the servers that are down.
    let mut c = ctx.fleet.clone();
    c = c.with_isolated(down.clone());
    let mut env = ctx.env.clone();
    crate::fleet::without(&mut env, &ctx.fleet, &down);

    // 2. It takes orders and trades before any traffic arrives.
    let t = Instant::now();
    let trading: Vec<&Server> = c.select(Some(target), TRADING);
    let on = c
        .each("orders and trading on", &trading, |cl| async move {
            cl.resume_orders().await.map_err(|e| e.to_string())?;
            cl.set_trading(true).await.map_err(|e| e.to_string())
        })
        .await;
    report.push(if on.all_reached() {
        Check::ok("emergency rollback", format!("{target} takes orders"))
            .message(format!(
                "{}; strategies stay as they are (reactivate with strategy_rollout)",
                on.summary()
            ))
            .took(t.elapsed())
    } else {
        Check::warn(
            "emergency rollback",
            format!("{target} takes orders"),
            on.summary(),
        )
        .took(t.elapsed())
    });

    // 3. The switch: one transaction per load balancer, all at once.
    let t = Instant::now();
    let switched = futures_util::future::join_all(env.load_balancers.iter().map(|l| async move {
        let cmds = lb::switch_commands(l, failed, target);
        let r = lb::transaction(&l.runtime_api, &cmds, ctx.timeout).await;
        let back = lb::live_color(l, ctx.timeout).await;
        (l.name.clone(), r, back)
    }))
    .await;
    let mut moved = true;
    for (name, r, back) in switched {
        report.push(match (r, back) {
            (Ok(_), Ok(Some(c))) if c == target => {
                Check::ok("emergency rollback", format!("Traffic on {target} at {name}"))
                    .message("switched and read back")
                    .took(t.elapsed())
            }
            (Ok(_), back) => {
                moved = false;
                Check::fail(
                    "emergency rollback",
                    format!("Traffic on {target} at {name}"),
                    format!("switched but read back {back:?}"),
                )
                .hint("check `show servers state` on its runtime API; run emergency_rollback again")
            }
            (Err(e), _) => {
                moved = false;
                Check::fail("emergency rollback", format!("Traffic on {target} at {name}"), e.to_string())
                    .hint("fix the load balancer's runtime API and run emergency_rollback again; if trading must stop now: emergency_stop")
            }
        });
    }
    if !moved {
        return Ok((failed, target));
    }

    // 4. The failed colour drains (bounded), leaves the load balancers, and stops.
    let t = Instant::now();
    let left = lb::wait_drained(
        &env.load_balancers,
        |l| l.servers.get(&failed).cloned().unwrap_or_default(),
        failed.as_str(),
        drain_deadline,
        ctx.timeout,
    )
    .await;
    for l in &env.load_balancers {
        if let Err(e) =
            lb::transaction(&l.runtime_api, &lb::maint_commands(l, failed), ctx.timeout).await
        {
            report.push(Check::warn(
                "emergency rollback",
                format!("{failed} in maintenance at {}", l.name),
                e.to_string(),
            ));
        }
    }
    report.push(
        Check::ok("emergency rollback", format!("{failed} drained"))
            .message(if left == 0 {
                format!("no session left after {:.1?}", t.elapsed())
            } else {
                format!(
                    "{left} session(s) left at the {} deadline: cut",
                    humantime::format_duration(drain_deadline)
                )
            })
            .took(t.elapsed()),
    );
    let failed_trading = ctx.fleet.select(Some(failed), TRADING);
    stop_trading(&ctx.fleet, async { vec![] }, &failed_trading, report).await;
    Ok((failed, target))
}
