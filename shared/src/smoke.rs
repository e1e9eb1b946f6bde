//! smoke_tests' checks against the service contract. Independent groups run in parallel; the
//! order flow runs in sequence and is always followed by cleanup of the test account.

use crate::config::{Color, Environment, Role, Smoke};
use crate::contract::{Client, OrderRequest, OrderStatus, OrderType, Side};
use crate::http::{Http, HttpError};
use crate::report::{Check, Status};
use futures_util::future::join_all;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Group {
    Health,
    Orders,
    Positions,
    Pnl,
    Marketdata,
    Risk,
    Web,
    Database,
}

impl Group {
    /// Every group that checks the services themselves (all but the database's).
    pub const SERVICES: [Group; 7] = [
        Group::Health,
        Group::Orders,
        Group::Positions,
        Group::Pnl,
        Group::Marketdata,
        Group::Risk,
        Group::Web,
    ];
}

impl Group {
    pub fn name(self) -> &'static str {
        match self {
            Group::Health => "health",
            Group::Orders => "orders",
            Group::Positions => "positions",
            Group::Pnl => "pnl",
            Group::Marketdata => "marketdata",
            Group::Risk => "risk",
            Group::Web => "web",
            Group::Database => "database",
        }
    }
}

/// Everything the checks need about the target.
#[derive(Clone)]
pub struct Target {
    pub color: Color,
    pub env: Environment,
    pub http: Http,
    pub account: Option<String>,
    pub expect_version: Option<String>,
    pub timeout: Duration,
    pub run_id: String,
}

impl Target {
    fn smoke(&self) -> &Smoke {
        &self.env.smoke
    }
    fn urls(&self, role: Role) -> Vec<String> {
        self.env
            .urls(self.color, role)
            .iter()
            .map(|u| u.to_string())
            .collect()
    }
    fn client(&self, url: &str) -> Client {
        Client::new(url, self.http.clone())
    }
    fn first(&self, role: Role) -> Option<Client> {
        self.urls(role).first().map(|u| self.client(u))
    }
    /// A name for a service that stays the same from run to run (JUnit keys test history by
    /// name): its first role and its place in that role's list, e.g. `trading-engine #2`.
    /// The URL (ports change between stacks) goes into the message.
    pub fn label(&self, url: &str) -> String {
        Role::ALL
            .iter()
            .find_map(|r| {
                let urls = self.urls(*r);
                urls.iter()
                    .position(|u| u == url)
                    .map(|i| format!("{r} #{}", i + 1))
            })
            .unwrap_or_else(|| "service".into())
    }
    /// This target with one trading engine: the order flow and its cleanup run engine by engine.
    fn on_engine(&self, url: &str) -> Target {
        let mut t = self.clone();
        if let (Some(roles), Ok(u)) = (t.env.services.get_mut(&self.color), url::Url::parse(url)) {
            roles.insert(Role::TradingEngine, vec![crate::config::HttpUrl(u)]);
        }
        t
    }
    /// Every distinct service URL of the colour.
    pub fn all_urls(&self) -> Vec<String> {
        let set: BTreeSet<String> = Role::ALL.iter().flat_map(|r| self.urls(*r)).collect();
        set.into_iter().collect()
    }
}

fn timed(start: Instant, c: Check) -> Check {
    c.took(start.elapsed())
}

fn http_fail(group: &str, name: &str, e: &HttpError) -> Check {
    let hint = if e.is_unreachable() {
        "the service is down or unreachable: check it is running and the URL in the config"
    } else if e.status() == Some(503) {
        "the service refuses work: is it stopped or in maintenance? (maintenance_mode --status)"
    } else {
        "see the service's log for this request"
    };
    Check::fail(group, name, e.to_string()).hint(hint)
}

/// At most this many servers of one role are checked at once: a fleet of dozens is not a burst.
const SERVERS_AT_ONCE: usize = 8;

/// Run `check` on every server of `role` (bounded concurrency), in the config's order. With more
/// than one server each check is named after its server (`… (marketdata #2)`, a JUnit case per
/// server and check) and a failure's message starts with the server's URL: it says which one.
async fn on_every<'a, F, Fut>(t: &'a Target, role: Role, none: Check, check: F) -> Vec<Check>
where
    F: Fn(Client) -> Fut,
    Fut: std::future::Future<Output = Vec<Check>> + 'a,
{
    use futures_util::StreamExt;
    let urls = t.urls(role);
    if urls.is_empty() {
        return vec![none];
    }
    let many = urls.len() > 1;
    let runs: Vec<_> = urls
        .into_iter()
        .map(|u| {
            let fut = check(t.client(&u));
            let label = t.label(&u);
            async move { (u, label, fut.await) }
        })
        .collect();
    let done: Vec<_> = futures_util::stream::iter(runs)
        .buffered(SERVERS_AT_ONCE)
        .collect()
        .await;
    done.into_iter()
        .flat_map(|(url, label, checks)| named_for(checks, &url, &label, many))
        .collect()
}

/// With more than one server in a role, a check carries its server's name and a failure its URL.
fn named_for(checks: Vec<Check>, url: &str, label: &str, many: bool) -> Vec<Check> {
    checks
        .into_iter()
        .map(|mut c| {
            if many {
                c.name = format!("{} ({label})", c.name);
                if c.status == Status::Fail {
                    c.message = Some(format!("{url}: {}", c.message.unwrap_or_default()));
                }
            }
            c
        })
        .collect()
}

// ---------------------------------------------------------------- health

pub async fn health(t: &Target) -> Vec<Check> {
    let mut futs = vec![];
    for role in Role::ALL {
        for (i, url) in t.urls(role).into_iter().enumerate() {
            let t = t.clone();
            futs.push(async move {
                let start = Instant::now();
                // Stable across runs (JUnit history); the URL goes into the message.
                let name = format!("{role} #{} healthy", i + 1);
                let c = match t.client(&url).health().await {
                    Err(e) => http_fail("health", &name, &e),
                    Ok(h) => {
                        let mut problems = vec![];
                        if h.status != "ok" {
                            problems.push(format!("status {}", h.status));
                        }
                        if !h.ready {
                            problems.push("not ready".to_string());
                        }
                        if h.color != t.color.as_str() {
                            problems.push(format!("reports colour {} (expected {})", h.color, t.color));
                        }
                        if let Some(v) = &t.expect_version
                            && &h.version != v
                        {
                            problems.push(format!("runs version {} (expected {v})", h.version));
                        }
                        problems.extend(h.details.iter().map(|d| format!("reports: {d}")));
                        if problems.is_empty() {
                            Check::ok("health", name).message(format!("{url}: {} {} {}", h.service, h.version, h.color))
                        } else {
                            Check::fail("health", name, format!("{url}: {}", problems.join("; ")))
                                .hint("check the service's log; a wrong version means the deploy did not land")
                        }
                    }
                };
                timed(start, c)
            });
        }
    }
    let mut out = join_all(futs).await;
    if t.env.database.is_some() {
        out.push(postgres(t).await);
    }
    if let Some(r) = &t.env.redis {
        out.push(redis(&r.address, t.timeout).await);
    }
    out
}

async fn postgres(t: &Target) -> Check {
    let start = Instant::now();
    let name = "PostgreSQL reachable";
    let url = match t.env.database_url() {
        Ok(u) => u,
        Err(e) => {
            return Check::fail("health", name, e.to_string())
                .hint("export the database URL variable");
        }
    };
    let c = match crate::db::connect(&url, t.timeout).await {
        Ok(client) => {
            match tokio::time::timeout(t.timeout, client.query_one("select version()", &[])).await {
                Ok(Ok(row)) => {
                    let v: String = row.get(0);
                    Check::ok("health", name)
                        .message(v.split(" on ").next().unwrap_or(&v).to_string())
                }
                Ok(Err(e)) => Check::fail("health", name, crate::redact::redact(&e.to_string())),
                Err(_) => Check::fail(
                    "health",
                    name,
                    format!("query timed out after {:?}", t.timeout),
                ),
            }
        }
        Err(e) => {
            Check::fail("health", name, e.to_string()).hint("is PostgreSQL up and the URL right?")
        }
    };
    timed(start, c)
}

async fn redis(addr: &str, timeout: Duration) -> Check {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let start = Instant::now();
    let name = "Redis reachable";
    let ping = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(b"PING\r\n").await?;
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&buf[..n]).trim().to_string())
    };
    let c = match tokio::time::timeout(timeout, ping).await {
        Ok(Ok(r)) if r == "+PONG" => Check::ok("health", name).message(format!("{addr} PONG")),
        Ok(Ok(r)) if r.starts_with("-NOAUTH") => {
            Check::ok("health", name).message(format!("{addr} (auth required)"))
        }
        Ok(Ok(r)) => Check::fail("health", name, format!("{addr} answered `{r}` to PING")),
        Ok(Err(e)) => Check::fail("health", name, format!("{addr}: {e}")).hint("is Redis up?"),
        Err(_) => Check::fail(
            "health",
            name,
            format!("{addr}: no answer within {timeout:?}"),
        ),
    };
    timed(start, c)
}

/// 5xx and total business requests of each service, for the error rate between two scrapes.
pub async fn scrape_counts(t: &Target) -> Vec<(String, Option<(f64, f64)>)> {
    join_all(t.all_urls().into_iter().map(|u| {
        let c = t.client(&u);
        async move {
            let counts = c.metric_totals().await.ok().map(|t| (t.errors, t.requests));
            (u, counts)
        }
    }))
    .await
}

pub fn error_rate_checks(
    t: &Target,
    before: &[(String, Option<(f64, f64)>)],
    after: &[(String, Option<(f64, f64)>)],
    max_ratio: f64,
) -> Vec<Check> {
    after
        .iter()
        .filter_map(|(url, a)| {
            let b = before.iter().find(|(u, _)| u == url)?.1?;
            let a = (*a)?;
            let (errors, total) = (a.0 - b.0, a.1 - b.1);
            let name = format!("Error rate during the run ({})", t.label(url));
            let ratio = if total > 0.0 { errors / total } else { 0.0 };
            let data = serde_json::json!({"errors": errors, "requests": total, "ratio": ratio, "max_ratio": max_ratio});
            Some(if total < 1.0 {
                // Nothing to judge is not "0 failed": say so instead of a green tick.
                Check::warn(
                    "health",
                    name,
                    format!("no request reached {url} during the run: its error rate was not judged"),
                )
                .hint("check that the smoke checks route to it (config services list)")
                .data(data)
            } else if ratio > max_ratio {
                Check::fail(
                    "health",
                    name,
                    format!("{url}: {errors} of {total} requests answered 5xx ({:.1} %, limit {:.1} %)", ratio * 100.0, max_ratio * 100.0),
                )
                .hint("see the service's log and http_request_errors_total by route")
                .data(data)
            } else {
                Check::ok("health", name).message(format!("{url}: {errors} of {total} requests failed")).data(data)
            })
        })
        .collect()
}

// ---------------------------------------------------------------- market data

/// Market data on every marketdata server of the colour.
pub async fn marketdata(t: &Target) -> Vec<Check> {
    let none = Check::skip(
        "marketdata",
        "Market data feeds",
        "no marketdata service configured for this colour",
    );
    on_every(t, Role::Marketdata, none, |md| marketdata_on(t, md)).await
}

async fn marketdata_on(t: &Target, md: Client) -> Vec<Check> {
    let s = t.smoke();
    let start = Instant::now();
    let feeds = match md.feeds().await {
        Ok(f) => f,
        Err(e) => return vec![http_fail("marketdata", "All feeds connected", &e)],
    };
    let took = start.elapsed();
    let g = "marketdata";
    if feeds.is_empty() {
        return vec![
            Check::fail(g, "All feeds connected", "the service lists no feeds").took(took),
        ];
    }
    let mut out = vec![];
    let bad: Vec<_> = feeds
        .iter()
        .filter(|f| !f.connected)
        .map(|f| f.name.clone())
        .collect();
    out.push(if bad.is_empty() {
        Check::ok(g, "All feeds connected").message(format!("{} feed(s)", feeds.len()))
    } else {
        Check::fail(
            g,
            "All feeds connected",
            format!("disconnected: {}", bad.join(", ")),
        )
        .hint("check the feed handler's upstream connection")
    });
    let rate_bad: Vec<_> = feeds
        .iter()
        .filter(|f| {
            f.msgs_per_s < s.min_msgs_per_s || s.max_msgs_per_s.is_some_and(|m| f.msgs_per_s > m)
        })
        .map(|f| format!("{} at {:.0} msg/s", f.name, f.msgs_per_s))
        .collect();
    let range = match s.max_msgs_per_s {
        Some(m) => format!("{}–{m} msg/s", s.min_msgs_per_s),
        None => format!("≥ {} msg/s", s.min_msgs_per_s),
    };
    out.push(if rate_bad.is_empty() {
        Check::ok(g, "Message rates in range").message(range)
    } else {
        Check::fail(
            g,
            "Message rates in range",
            format!("{} (expected {range})", rate_bad.join(", ")),
        )
        .hint("a feed with no messages is stale or disconnected upstream")
    });
    let stale: Vec<_> = feeds
        .iter()
        .filter(|f| f.last_msg_age_ms > s.max_feed_age_ms)
        .map(|f| format!("{} last message {} ms ago", f.name, f.last_msg_age_ms))
        .collect();
    out.push(if stale.is_empty() {
        Check::ok(g, "No stale data").message(format!("every feed ≤ {} ms old", s.max_feed_age_ms))
    } else {
        Check::fail(
            g,
            "No stale data",
            format!(
                "stale: {} (limit {} ms)",
                stale.join(", "),
                s.max_feed_age_ms
            ),
        )
        .hint("the upstream stopped publishing: check the feed handler and its source")
    });
    let slow: Vec<_> = feeds
        .iter()
        .filter(|f| f.latency_us > s.max_feed_latency_us)
        .map(|f| format!("{} {} µs", f.name, f.latency_us))
        .collect();
    out.push(if slow.is_empty() {
        Check::ok(g, "Feed latency acceptable")
            .message(format!("every feed ≤ {} µs", s.max_feed_latency_us))
    } else {
        Check::fail(
            g,
            "Feed latency acceptable",
            format!("{} (limit {} µs)", slow.join(", "), s.max_feed_latency_us),
        )
        .hint("measure it with measure_latency --metrics marketdata")
    });
    out.into_iter().map(|c| c.took(took)).collect()
}

// ---------------------------------------------------------------- risk

fn req(
    t: &Target,
    symbol: &str,
    side: Side,
    qty: i64,
    ty: OrderType,
    price: Option<f64>,
    tag: &str,
) -> OrderRequest {
    OrderRequest {
        account: t.account.clone().unwrap_or_default(),
        symbol: symbol.into(),
        side,
        qty,
        order_type: ty,
        price,
        client_order_id: format!("smoke-{}-{tag}", t.run_id),
        strategy: None,
    }
}

/// The risk checks on every risk-engine server of the colour.
pub async fn risk(t: &Target) -> Vec<Check> {
    let none = Check::skip(
        "risk",
        "Risk checks",
        "no risk-engine service configured for this colour",
    );
    on_every(t, Role::RiskEngine, none, |rc| risk_on(t, rc)).await
}

async fn risk_on(t: &Target, rc: Client) -> Vec<Check> {
    let g = "risk";
    let acc = t.account.clone().unwrap_or_default();
    let sym = t.smoke().symbol.clone();
    let start = Instant::now();
    let limits = match rc.limits().await {
        Ok(l) => l,
        Err(e) => return vec![http_fail(g, "Position limit enforced", &e)],
    };
    let mut out = vec![];
    let limit = limits.limits.get(&acc).or(limits.default.as_ref()).cloned();
    // Position limit: an order one past the limit must be refused (asked of /check only: a
    // smoke test never sends an over-limit order to a production engine).
    let name = "Position limit enforced";
    out.push(match &limit {
        None => Check::fail(g, name, format!("no limit applies to {acc}")).hint("configure a limit for the test account"),
        Some(l) => match rc.risk_check(&req(t, &sym, Side::Buy, l.max_position_size + 1, OrderType::Market, None, "risk-pos")).await {
            Ok(d) if !d.allowed => Check::ok(g, name).message(format!(
                "{} over {} refused: {}",
                l.max_position_size + 1,
                l.max_position_size,
                d.reason.unwrap_or_default()
            )),
            Ok(_) => Check::fail(g, name, format!("an order of {} (limit {}) was allowed", l.max_position_size + 1, l.max_position_size))
                .hint("the risk engine is not enforcing limits: do not trade; check its limits file and reload"),
            Err(e) => http_fail(g, name, &e),
        },
    });
    let name = "Loss limit checked";
    out.push(match &limit {
        None => Check::fail(g, name, format!("no limit applies to {acc}")),
        Some(_) if !limits.enforced => {
            Check::fail(g, name, "the risk engine reports limits are not enforced")
                .hint("do not trade; restore enforcement and reload the limits")
        }
        Some(l) if l.max_loss_per_day <= 0.0 => Check::fail(g, name, "no daily loss limit set"),
        Some(l) => match rc
            .risk_check(&req(
                t,
                &sym,
                Side::Buy,
                1,
                OrderType::Market,
                None,
                "risk-loss",
            ))
            .await
        {
            Ok(d) if d.allowed => Check::ok(g, name)
                .message(format!("daily loss limit {} enforced", l.max_loss_per_day)),
            Ok(d) => Check::fail(
                g,
                name,
                format!("a 1-lot order is refused: {}", d.reason.unwrap_or_default()),
            )
            .hint("the test account has hit its loss limit; flatten it and check P&L"),
            Err(e) => http_fail(g, name, &e),
        },
    });
    let name = "Invalid orders rejected";
    let invalid = [
        (
            "zero quantity",
            req(t, &sym, Side::Buy, 0, OrderType::Market, None, "inv-0"),
        ),
        (
            "negative quantity",
            req(t, &sym, Side::Buy, -1, OrderType::Market, None, "inv-1"),
        ),
        (
            "unknown symbol",
            req(
                t,
                "NO_SUCH_SYMBOL",
                Side::Buy,
                1,
                OrderType::Market,
                None,
                "inv-2",
            ),
        ),
        (
            "bad price",
            req(t, &sym, Side::Buy, 1, OrderType::Limit, Some(-1.0), "inv-3"),
        ),
    ];
    let mut accepted = vec![];
    let mut err = None;
    for (what, o) in &invalid {
        match rc.risk_check(o).await {
            Ok(d) if d.allowed => accepted.push(*what),
            Ok(_) => {}
            Err(e) => err = Some(e),
        }
    }
    out.push(match (err, accepted.is_empty()) {
        (Some(e), _) => http_fail(g, name, &e),
        (None, true) => {
            Check::ok(g, name).message("zero/negative quantity, unknown symbol, bad price")
        }
        (None, false) => Check::fail(g, name, format!("allowed: {}", accepted.join(", ")))
            .hint("the risk engine's validation is broken: do not trade"),
    });
    let took = start.elapsed();
    out.into_iter().map(|c| c.took(took)).collect()
}

// ---------------------------------------------------------------- web

pub async fn web(t: &Target) -> Vec<Check> {
    let urls = t.urls(Role::Web);
    if urls.is_empty() {
        return vec![Check::skip(
            "web",
            "Web interface",
            "no web service configured for this colour",
        )];
    }
    join_all(urls.into_iter().enumerate().map(|(i, u)| {
        let c = t.client(&u);
        async move {
            let start = Instant::now();
            let name = format!("Web interface serves its page (web #{})", i + 1);
            let check = match c.web_page().await {
                Ok((200, body)) if !body.trim().is_empty() => {
                    Check::ok("web", name).message(u.clone())
                }
                Ok((200, _)) => Check::fail("web", name, "HTTP 200 with an empty page"),
                Ok((503, body)) if body.to_lowercase().contains("maintenance") => Check::warn(
                    "web",
                    name,
                    "maintenance mode is on: the page says so",
                )
                .hint(
                    "expected inside a maintenance window; end it with maintenance_mode --disable",
                ),
                Ok((code, _)) => Check::fail("web", name, format!("HTTP {code}")),
                Err(e) => http_fail("web", &name, &e),
            };
            check.took(start.elapsed())
        }
    }))
    .await
}

// ---------------------------------------------------------------- order flow

/// What the order flow created, so cleanup can undo exactly that and more.
#[derive(Default, Debug)]
pub struct Created {
    pub order_ids: Vec<String>,
}

/// The order flow's steps in order: a step after a failed one is skipped (saying which failed),
/// and only the groups asked for are reported.
struct Steps<'a> {
    out: Vec<Check>,
    broken: Option<String>,
    wanted: &'a BTreeSet<Group>,
}

impl Steps<'_> {
    async fn run(&mut self, group: Group, name: &str, body: impl AsyncFnOnce() -> Check) {
        let start = Instant::now();
        let c = match &self.broken {
            Some(why) => Check::skip(group.name(), name, format!("skipped: {why}")),
            None => body().await,
        };
        if c.status == Status::Fail && self.broken.is_none() {
            self.broken = Some(format!("`{name}` failed"));
        }
        if self.wanted.contains(&group) {
            self.out.push(c.took(start.elapsed()));
        }
    }
}

/// Limit order rests → cancel confirmed → market order fills → fills match → position moves by
/// the filled quantity → P&L consistent. Later steps are skipped when an earlier one fails.
/// The order flow on every trading engine of the colour, one engine after another (they may
/// share the test account's position), each engine's checks named after it when there are more.
pub async fn order_flow(
    t: &Target,
    groups: &BTreeSet<Group>,
    created: &tokio::sync::Mutex<Created>,
) -> Vec<Check> {
    let urls = t.urls(Role::TradingEngine);
    if urls.len() <= 1 {
        return order_flow_on(t, groups, created).await;
    }
    let mut out = vec![];
    for url in &urls {
        let checks = order_flow_on(&t.on_engine(url), groups, created).await;
        out.extend(named_for(checks, url, &t.label(url), true));
    }
    out
}

async fn order_flow_on(
    t: &Target,
    groups: &BTreeSet<Group>,
    created: &tokio::sync::Mutex<Created>,
) -> Vec<Check> {
    let Some(te) = t.first(Role::TradingEngine) else {
        return vec![Check::skip(
            "orders",
            "Order routing",
            "no trading-engine service configured for this colour",
        )];
    };
    let acc = t.account.clone().unwrap_or_default();
    let s = t.smoke();
    let sym = s.symbol.clone();
    let mut steps = Steps {
        out: vec![],
        broken: None,
        wanted: groups,
    };
    // A far-from-market limit price that rests: 10 % under the last tick, or 1.0 without one.
    let mark = match t.first(Role::Marketdata) {
        Some(md) => md
            .ticks(&sym)
            .await
            .ok()
            .and_then(|v| v.last().map(|x| x.price)),
        None => None,
    };
    let limit_price = mark.map_or(1.0, |m| (m * 0.9 * 100.0).round() / 100.0);
    let before = te.positions(&acc).await.map(|p| p.qty(&sym));

    let mut resting_id = None;
    steps
        .run(
            Group::Orders,
            "Limit order accepted and resting",
            async || match te
                .place_order(&req(
                    t,
                    &sym,
                    Side::Buy,
                    s.qty,
                    OrderType::Limit,
                    Some(limit_price),
                    "limit",
                ))
                .await
            {
                Ok(o) => {
                    created.lock().await.order_ids.push(o.order_id.clone());
                    resting_id = Some(o.order_id.clone());
                    match o.status {
                        OrderStatus::Resting => {
                            Check::ok("orders", "Limit order accepted and resting").message(
                                format!("{} buy {} {sym} @ {limit_price}", o.order_id, s.qty),
                            )
                        }
                        st => Check::fail(
                            "orders",
                            "Limit order accepted and resting",
                            format!(
                                "order {} is {st:?}: {}",
                                o.order_id,
                                o.reason.unwrap_or_default()
                            ),
                        ),
                    }
                }
                Err(e) => http_fail("orders", "Limit order accepted and resting", &e),
            },
        )
        .await;
    steps
        .run(Group::Orders, "Cancel confirmed", async || {
            let id = resting_id.clone().unwrap_or_default();
            match te.cancel_order(&id).await {
                Ok(o) if o.status == OrderStatus::Cancelled => match te.order(&id).await {
                    Ok(again) if again.status == OrderStatus::Cancelled => {
                        Check::ok("orders", "Cancel confirmed").message(id)
                    }
                    Ok(again) => Check::fail(
                        "orders",
                        "Cancel confirmed",
                        format!(
                            "cancel answered, but the order reads back {:?}",
                            again.status
                        ),
                    ),
                    Err(e) => http_fail("orders", "Cancel confirmed", &e),
                },
                Ok(o) => Check::fail(
                    "orders",
                    "Cancel confirmed",
                    format!("order {id} is {:?} after cancel", o.status),
                ),
                Err(e) => http_fail("orders", "Cancel confirmed", &e),
            }
        })
        .await;
    let mut filled = None;
    steps
        .run(Group::Orders, "Market order filled", async || {
            match te
                .place_order(&req(
                    t,
                    &sym,
                    Side::Buy,
                    s.qty,
                    OrderType::Market,
                    None,
                    "market",
                ))
                .await
            {
                Ok(o) => {
                    created.lock().await.order_ids.push(o.order_id.clone());
                    let c = if o.status == OrderStatus::Filled && o.filled_qty == s.qty {
                        Check::ok("orders", "Market order filled").message(format!(
                            "{} {} @ {:.4}",
                            o.order_id,
                            o.filled_qty,
                            o.avg_price.unwrap_or(0.0)
                        ))
                    } else {
                        Check::fail(
                            "orders",
                            "Market order filled",
                            format!(
                                "order {} is {:?} with {} of {} filled: {}",
                                o.order_id,
                                o.status,
                                o.filled_qty,
                                s.qty,
                                o.reason.clone().unwrap_or_default()
                            ),
                        )
                    };
                    filled = Some(o);
                    c
                }
                Err(e) => http_fail("orders", "Market order filled", &e),
            }
        })
        .await;
    steps
        .run(Group::Orders, "Fills match the order", async || {
            let o = filled.clone().expect("set by the previous step");
            let qty: i64 = o.fills.iter().map(|f| f.qty).sum();
            let notional: f64 = o.fills.iter().map(|f| f.qty as f64 * f.price).sum();
            let avg = if qty > 0 { notional / qty as f64 } else { 0.0 };
            if qty != o.filled_qty {
                Check::fail(
                    "orders",
                    "Fills match the order",
                    format!("fills add up to {qty}, the order says {}", o.filled_qty),
                )
            } else if (avg - o.avg_price.unwrap_or(0.0)).abs() > 1e-6 * avg.max(1.0) {
                Check::fail(
                    "orders",
                    "Fills match the order",
                    format!("fills average {avg:.6}, the order says {:?}", o.avg_price),
                )
            } else {
                Check::ok("orders", "Fills match the order")
                    .message(format!("{} fill(s), {qty} @ {avg:.4}", o.fills.len()))
            }
        })
        .await;
    steps
        .run(
            Group::Positions,
            "Position moved by the filled quantity",
            async || {
                let o = filled.clone().expect("set by an earlier step");
                match (&before, te.positions(&acc).await) {
                    (Ok(b), Ok(after)) => {
                        let moved = after.qty(&sym) - b;
                        if moved == o.filled_qty {
                            Check::ok("positions", "Position moved by the filled quantity")
                                .message(format!("{sym} {b} → {}", after.qty(&sym)))
                        } else {
                            Check::fail(
                                "positions",
                                "Position moved by the filled quantity",
                                format!("{sym} moved by {moved}, filled {}", o.filled_qty),
                            )
                            .hint("positions and fills disagree: reconcile before trading")
                        }
                    }
                    (Err(e), _) => {
                        http_fail("positions", "Position moved by the filled quantity", e)
                    }
                    (_, Err(e)) => {
                        http_fail("positions", "Position moved by the filled quantity", &e)
                    }
                }
            },
        )
        .await;
    steps
        .run(
            Group::Pnl,
            "P&L consistent with fills and marks",
            async || match (te.pnl(&acc).await, te.positions(&acc).await) {
                (Ok(p), Ok(pos)) => {
                    let realized: f64 = pos.positions.iter().map(|x| x.realized_pnl).sum();
                    let from_marks: f64 = pos
                        .positions
                        .iter()
                        .map(|x| x.qty as f64 * (x.mark - x.avg_price))
                        .sum();
                    let tol = s.pnl_tolerance;
                    let problems: Vec<String> = [
                        ((p.total - (p.realized + p.unrealized)).abs() > 1e-6).then(|| {
                            format!(
                                "total {:.2} ≠ realized {:.2} + unrealized {:.2}",
                                p.total, p.realized, p.unrealized
                            )
                        }),
                        ((p.realized - realized).abs() > tol).then(|| {
                            format!("realized {:.2} but positions say {realized:.2}", p.realized)
                        }),
                        ((p.unrealized - from_marks).abs() > tol).then(|| {
                            format!(
                                "unrealized {:.2} but positions × marks give {from_marks:.2}",
                                p.unrealized
                            )
                        }),
                    ]
                    .into_iter()
                    .flatten()
                    .collect();
                    if problems.is_empty() {
                        Check::ok("pnl", "P&L consistent with fills and marks")
                            .message(format!("total {:.2} (tolerance {tol})", p.total))
                    } else {
                        Check::fail(
                            "pnl",
                            "P&L consistent with fills and marks",
                            problems.join("; "),
                        )
                        .hint("reconcile P&L before enabling strategies")
                    }
                }
                (Err(e), _) | (_, Err(e)) => {
                    http_fail("pnl", "P&L consistent with fills and marks", &e)
                }
            },
        )
        .await;
    if let Some(why) = steps.broken {
        tracing::warn!("order flow stopped early: {why}");
    }
    steps.out
}

/// Leave the test account with no open order and a flat position: cancel every open order,
/// flatten every position. Runs after every flow — passed, failed, timed out or interrupted.
pub async fn cleanup(t: &Target, created: &Created) -> Check {
    let urls = t.urls(Role::TradingEngine);
    if urls.len() <= 1 {
        return cleanup_on(t, created).await;
    }
    // Every engine the flow ran on is cleaned; one check, failing if any engine is not clean.
    let start = Instant::now();
    let mut worst = Status::Ok;
    let mut parts = vec![];
    let mut hint = None;
    for url in &urls {
        let c = cleanup_on(&t.on_engine(url), created).await;
        if c.status == Status::Fail {
            worst = Status::Fail;
        }
        hint = hint.or(c.hint.clone());
        parts.push(format!(
            "{}: {}",
            t.label(url),
            c.message.unwrap_or_default()
        ));
    }
    let name = "Test account clean after the run";
    let msg = parts.join("; ");
    match worst {
        Status::Fail => {
            let c = Check::fail("cleanup", name, msg);
            match hint {
                Some(h) => c.hint(h),
                None => c,
            }
        }
        _ => Check::ok("cleanup", name).message(msg),
    }
    .took(start.elapsed())
}

async fn cleanup_on(t: &Target, created: &Created) -> Check {
    let start = Instant::now();
    let name = "Test account clean after the run";
    let Some(te) = t.first(Role::TradingEngine) else {
        return Check::skip("cleanup", name, "no trading-engine service");
    };
    let acc = t.account.clone().unwrap_or_default();
    let mut cancelled = vec![];
    let mut flattened = vec![];
    let mut problems = vec![];
    match te.orders(&acc).await {
        Ok(orders) => {
            for o in orders.iter().filter(|o| o.status.is_open()) {
                match te.cancel_order(&o.order_id).await {
                    Ok(_) => cancelled.push(o.order_id.clone()),
                    Err(e) if e.status() == Some(409) => {} // filled meanwhile: flattened below
                    Err(e) => problems.push(format!("cancel {}: {e}", o.order_id)),
                }
            }
        }
        Err(e) => problems.push(format!("list orders: {e}")),
    }
    match te.positions(&acc).await {
        Ok(p) => {
            for pos in p.positions.iter().filter(|p| p.qty != 0) {
                let side = if pos.qty > 0 { Side::Sell } else { Side::Buy };
                let o = req(
                    t,
                    &pos.symbol,
                    side,
                    pos.qty.abs(),
                    OrderType::Market,
                    None,
                    &format!("flatten-{}", pos.symbol),
                );
                match te.place_order(&o).await {
                    Ok(x) if x.status == OrderStatus::Filled => {
                        flattened.push(format!("{} {:+}", pos.symbol, -pos.qty))
                    }
                    Ok(x) => problems.push(format!(
                        "flatten {}: order {:?} {}",
                        pos.symbol,
                        x.status,
                        x.reason.unwrap_or_default()
                    )),
                    Err(e) => problems.push(format!("flatten {}: {e}", pos.symbol)),
                }
            }
        }
        Err(e) => problems.push(format!("read positions: {e}")),
    }
    // Read back: the account must be clean now.
    if problems.is_empty() {
        let open = te
            .orders(&acc)
            .await
            .map(|v| v.iter().filter(|o| o.status.is_open()).count());
        let flat = te
            .positions(&acc)
            .await
            .map(|p| p.positions.iter().all(|x| x.qty == 0));
        match (open, flat) {
            (Ok(0), Ok(true)) => {}
            (Ok(n), Ok(f)) => problems.push(format!("after cleanup: {n} open order(s), flat: {f}")),
            (Err(e), _) | (_, Err(e)) => problems.push(format!("read back: {e}")),
        }
    }
    let summary = format!(
        "created {} order(s); cancelled {}; flattened {}",
        created.order_ids.len(),
        if cancelled.is_empty() {
            "none".to_string()
        } else {
            cancelled.join(", ")
        },
        if flattened.is_empty() {
            "nothing".to_string()
        } else {
            flattened.join(", ")
        }
    );
    tracing::info!("cleanup of {acc}: {summary}");
    let c = if problems.is_empty() {
        Check::ok("cleanup", name).message(summary)
    } else {
        Check::fail(
            "cleanup",
            name,
            format!("{}; {summary}", problems.join("; ")),
        )
        .hint(format!(
            "check the test account {acc} by hand: open orders and positions"
        ))
    };
    c.took(start.elapsed())
}
