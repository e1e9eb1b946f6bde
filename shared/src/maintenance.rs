//! Maintenance mode: stop new orders → complete in-flight work (counters, with a deadline after
//! which working orders are cancelled) → stop strategies → maintenance page (services and, where
//! configured, HAProxy itself). The state is always read from the services and HAProxy.

use crate::config::{Color, Role};
use crate::cutover::{self as co};
use crate::error::Result;
use crate::fleet::{self, Ctx};
use crate::lb;
use crate::report::{Check, Report};
use std::time::{Duration, Instant};

/// What the services and load balancers say right now.
#[derive(Debug, Default)]
pub struct State {
    /// (url, maintenance reason) of web services.
    pub pages: Vec<(String, Option<String>)>,
    /// (url, accepting orders, trading active) of trading services.
    pub trading: Vec<(String, bool, bool)>,
    /// (load balancer, page on).
    pub lb_pages: Vec<(String, bool)>,
    /// Servers that did not answer: `name (url): why`. Their state is unknown, so the colour
    /// is neither fully on nor fully off.
    pub unreachable: Vec<String>,
}

impl State {
    pub fn fully_on(&self) -> bool {
        self.unreachable.is_empty()
            && self.pages.iter().all(|(_, m)| m.is_some())
            && self.trading.iter().all(|(_, acc, _)| !acc)
            && self.lb_pages.iter().all(|(_, on)| *on)
    }
    pub fn fully_off(&self) -> bool {
        self.unreachable.is_empty()
            && self.pages.iter().all(|(_, m)| m.is_none())
            && self.trading.iter().all(|(_, acc, _)| *acc)
            && self.lb_pages.iter().all(|(_, on)| !on)
    }
}

/// Every server of `color` asked at once (isolated ones skipped); one that does not answer is
/// listed, not fatal: the others' state is still the truth about them.
pub async fn read(ctx: &Ctx, color: Color) -> Result<State> {
    let mut st = State::default();
    let ask = |roles: &'static [Role]| {
        let servers = ctx.fleet.select(Some(color), roles);
        async move {
            ctx.fleet
                .each("read state", &servers, |c| async move {
                    c.admin_state().await.map_err(|e| e.to_string())
                })
                .await
        }
    };
    let (web, trading) = tokio::join!(ask(&[Role::Web]), ask(&[Role::TradingEngine, Role::Oms]));
    for (s, a) in web.reached() {
        st.pages.push((s.url.clone(), a.maintenance.clone()));
    }
    for (s, a) in trading.reached() {
        st.trading
            .push((s.url.clone(), a.accepting_orders, a.trading_active));
    }
    for (s, why) in web.failed().into_iter().chain(trading.failed()) {
        st.unreachable
            .push(format!("{} ({}): {why}", s.name, s.url));
    }
    st.unreachable.dedup();
    for l in &ctx.env.load_balancers {
        if let Some(map) = &l.maintenance_map {
            let out = lb::command(
                &l.runtime_api,
                &format!("show map {}", map.display()),
                ctx.timeout,
            )
            .await?;
            let on = out.lines().any(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                f.len() >= 3 && f[1] == "maintenance" && f[2] == "on"
            });
            st.lb_pages.push((l.name.clone(), on));
        }
    }
    Ok(st)
}

async fn set_lb_page(ctx: &Ctx, on: bool) -> Result<usize> {
    let mut n = 0;
    for l in &ctx.env.load_balancers {
        if let Some(map) = &l.maintenance_map {
            let v = if on { "on" } else { "off" };
            lb::transaction(
                &l.runtime_api,
                &[format!("set map {} maintenance {v}", map.display())],
                ctx.timeout,
            )
            .await?;
            n += 1;
        }
    }
    Ok(n)
}

fn step(
    report: &mut Report,
    name: &str,
    start: Instant,
    r: std::result::Result<String, fleet::StepFailure>,
) -> bool {
    match r {
        Ok(m) => {
            tracing::info!("{name}: {m}");
            report.push(
                Check::ok("maintenance", name)
                    .message(m)
                    .took(start.elapsed()),
            );
            true
        }
        Err(m) => {
            report.push(Check::fail("maintenance", name, m).took(start.elapsed()));
            false
        }
    }
}

pub async fn enable(
    ctx: &Ctx,
    color: Color,
    reason: &str,
    deadline: Duration,
    report: &mut Report,
) -> Result<()> {
    let st = read(ctx, color).await?;
    if st.fully_on() {
        report.push(
            Check::ok("maintenance", "Maintenance mode")
                .message(format!("{color} is already in maintenance: nothing to do")),
        );
        return Ok(());
    }
    let t = Instant::now();
    let ok = step(
        report,
        "Stop new orders",
        t,
        fleet::admin_all(
            ctx,
            color,
            &[Role::TradingEngine, Role::Oms],
            "stopped new orders",
            |c| async move { c.stop_orders().await },
        )
        .await
        .map(|x| x.0),
    );
    if !ok {
        return Ok(());
    }
    let t = Instant::now();
    let drained = co::drain(ctx, color, deadline).await.map(|(m, d)| {
        if d.get("forced").is_some() {
            format!("{m} (deadline policy)")
        } else {
            m
        }
    });
    step(report, "Complete in-flight orders", t, drained);
    let t = Instant::now();
    step(
        report,
        "Stop trading strategies",
        t,
        fleet::admin_all(
            ctx,
            color,
            &[Role::TradingEngine, Role::Oms],
            "trading deactivated",
            |c| async move { c.set_trading(false).await },
        )
        .await
        .map(|x| x.0),
    );
    let t = Instant::now();
    let web = ctx.clients(color, &[Role::Web]);
    let r = async {
        let reason = reason.to_string();
        fleet::admin_all(ctx, color, &[Role::Web], "maintenance page on", |c| {
            let reason = reason.clone();
            async move { c.set_maintenance(Some(&reason)).await }
        })
        .await?;
        let n = set_lb_page(ctx, true).await.map_err(|e| e.to_string())?;
        Ok(format!(
            "maintenance page on {} web service(s) and {n} load balancer(s): {reason}",
            web.len()
        ))
    }
    .await;
    step(report, "Serve the maintenance page", t, r);
    Ok(())
}

pub async fn disable(
    ctx: &Ctx,
    color: Color,
    resume_strategies: bool,
    report: &mut Report,
) -> Result<()> {
    let st = read(ctx, color).await?;
    if st.fully_off() && !resume_strategies {
        report.push(
            Check::ok("maintenance", "Maintenance mode")
                .message(format!("{color} is not in maintenance: nothing to do")),
        );
        return Ok(());
    }
    let t = Instant::now();
    let web = ctx.clients(color, &[Role::Web]);
    let r = async {
        let n = set_lb_page(ctx, false).await.map_err(|e| e.to_string())?;
        fleet::admin_all(
            ctx,
            color,
            &[Role::Web],
            "maintenance page off",
            |c| async move { c.set_maintenance(None).await },
        )
        .await?;
        Ok(format!(
            "maintenance page off on {} web service(s) and {n} load balancer(s)",
            web.len()
        ))
    }
    .await;
    step(report, "Remove the maintenance page", t, r);
    let t = Instant::now();
    step(
        report,
        "Accept orders again",
        t,
        fleet::admin_all(
            ctx,
            color,
            &[Role::TradingEngine, Role::Oms],
            "orders resumed",
            |c| async move { c.resume_orders().await },
        )
        .await
        .map(|x| x.0),
    );
    let t = Instant::now();
    if resume_strategies {
        step(
            report,
            "Resume trading",
            t,
            fleet::admin_all(
                ctx,
                color,
                &[Role::TradingEngine, Role::Oms],
                "trading activated",
                |c| async move { c.set_trading(true).await },
            )
            .await
            .map(|x| x.0),
        );
    } else {
        report.push(Check::skip("maintenance", "Resume trading", "strategies stay stopped: activate them in stages (strategy_rollout) or pass --resume-strategies"));
    }
    Ok(())
}

pub async fn status(ctx: &Ctx, color: Color, report: &mut Report) -> Result<()> {
    let st = read(ctx, color).await?;
    // Names stay the same from run to run (JUnit history); the URL goes into the message.
    for (i, (url, m)) in st.pages.iter().enumerate() {
        report.push(
            Check::ok("status", format!("web #{}", i + 1)).message(match m {
                Some(r) => format!("{url}: maintenance page ON: {r}"),
                None => format!("{url}: serving normally"),
            }),
        );
    }
    for (i, (url, acc, active)) in st.trading.iter().enumerate() {
        report.push(
            Check::ok("status", format!("trading #{}", i + 1)).message(format!(
                "{url}: {}; trading {}",
                if *acc {
                    "accepting orders"
                } else {
                    "NOT accepting orders"
                },
                if *active { "active" } else { "stopped" }
            )),
        );
    }
    for u in &st.unreachable {
        let name = u.split(' ').next().unwrap_or(u);
        report.push(
            Check::fail("status", format!("server {name}"), u.clone())
                .hint("its state is unknown: check the server, or isolate it (isolate_server)"),
        );
    }
    for (name, on) in &st.lb_pages {
        report.push(
            Check::ok("status", format!("load balancer {name}")).message(if *on {
                "maintenance page ON"
            } else {
                "maintenance page off"
            }),
        );
    }
    report.push(if st.fully_on() {
        Check::ok("status", "Maintenance mode").message(format!("{color}: ON"))
    } else if st.fully_off() {
        Check::ok("status", "Maintenance mode").message(format!("{color}: off"))
    } else {
        Check::fail(
            "status",
            "Maintenance mode",
            format!("{color} is partly in maintenance (see the lines above)"),
        )
        .hint("finish it with maintenance_mode --enable, or undo it with --disable")
    });
    Ok(())
}
