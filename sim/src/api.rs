//! HTTP routes of the service contract (docs/service-contract.md) plus `/sim/faults`.

use crate::Role;
use crate::state::{
    AppState, Faults, FeedSource, OrderError, OrderRequest, RiskLimits, Strategy, lock,
};
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rand::Rng;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

type S = State<Arc<AppState>>;

fn err(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, Json(json!({ "error": msg.into() }))).into_response()
}

pub fn router(state: Arc<AppState>) -> Router {
    let role = state.cfg.role;
    let has = |r: Role| role == Role::All || role == r;
    let mut business = Router::new();
    if has(Role::TradingEngine) || has(Role::Oms) {
        business = business
            .route("/orders", post(place_order).get(list_orders))
            .route("/orders/{id}", get(get_order).delete(cancel_order))
            .route("/positions", get(positions))
            .route("/pnl", get(pnl));
    }
    if has(Role::RiskEngine) {
        business = business
            .route("/check", post(risk_check))
            .route("/limits", get(limits));
    }
    if has(Role::Marketdata) {
        business = business
            .route("/feeds", get(feeds))
            .route("/ticks", get(ticks));
    }
    if has(Role::Web) {
        business = business.route("/", get(web_page));
    }
    let business = business.layer(from_fn_with_state(state.clone(), business_mw));
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/admin/state", get(admin_state))
        .route("/admin/inflight", get(admin_inflight))
        .route("/admin/orders/stop", post(admin_stop_orders))
        .route("/admin/orders/resume", post(admin_resume_orders))
        .route("/admin/orders/cancel-all", post(admin_cancel_all))
        .route("/admin/trading/activate", post(admin_trading_on))
        .route("/admin/trading/deactivate", post(admin_trading_off))
        .route("/admin/strategies/{name}", post(admin_strategy))
        .route("/admin/feeds", post(admin_feeds))
        .route(
            "/admin/maintenance",
            post(admin_maint_on).delete(admin_maint_off),
        )
        .route("/admin/config/reload", post(admin_reload))
        // The guide's own path for the same reload (§8: `POST /api/config/reload`).
        .route("/api/config/reload", post(admin_reload))
        .route("/admin/config", get(admin_config))
        .route(
            "/sim/faults",
            get(get_faults).post(set_faults).delete(clear_faults),
        )
        .route("/sim/price", post(set_price))
        .merge(business)
        .layer(from_fn_with_state(state.clone(), observe_mw))
        .with_state(state)
}

/// Latency histogram and status counters for every route.
async fn observe_mw(State(st): S, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let start = Instant::now();
    let resp = next.run(req).await;
    let code = resp.status().as_u16();
    let label = crate::metrics::RouteLabel {
        route: route.clone(),
    };
    st.metrics
        .latency
        .get_or_create(&label)
        .observe(start.elapsed().as_secs_f64());
    st.metrics
        .requests
        .get_or_create(&crate::metrics::RouteCodeLabel {
            route,
            code: code.to_string(),
        })
        .inc();
    if code >= 500 {
        st.metrics.errors.get_or_create(&label).inc();
    }
    resp
}

/// Decrements in-flight on drop, so a client that hangs up mid-request is not counted forever.
struct InflightGuard(Arc<AppState>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::SeqCst);
        self.0.metrics.inflight.dec();
    }
}

/// Business routes: counted in flight (drain waits on this) and subject to injected faults.
/// Whether the service accepted new orders when the request arrived: a request already in
/// flight when orders are stopped still completes (that is what draining waits for).
#[derive(Clone, Copy)]
struct AcceptingAtArrival(bool);

async fn business_mw(State(st): S, mut req: Request, next: Next) -> Response {
    req.extensions_mut()
        .insert(AcceptingAtArrival(st.accepting.load(Ordering::SeqCst)));
    st.inflight.fetch_add(1, Ordering::SeqCst);
    st.metrics.inflight.inc();
    let _guard = InflightGuard(st.clone());
    let stall = *lock(&st.stall_until);
    if let Some(until) = stall {
        let now = Instant::now();
        if until > now {
            tokio::time::sleep(until - now).await;
        }
    }
    let f = st.faults();
    if let Some(ms) = f.latency_ms.filter(|ms| *ms > 0) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(rate) = f.error_rate.filter(|r| *r > 0.0)
        && rand::rng().random_bool(rate.min(1.0))
    {
        return err(
            StatusCode::INTERNAL_SERVER_ERROR,
            "injected fault: error_rate",
        );
    }
    next.run(req).await
}

// ---------- ops ----------

async fn health(State(st): S) -> Response {
    let maintenance = lock(&st.admin).maintenance.is_some();
    let mut details = vec![];
    if let Some(e) = lock(&st.last_reload_error).clone() {
        details.push(format!("last config reload failed: {e}"));
    }
    for (c, f) in lock(&st.components).iter() {
        if let Some(e) = &f.last_reload_error {
            details.push(format!("last {c} config reload failed: {e}"));
        }
    }
    let status = if maintenance {
        "maintenance"
    } else if details.is_empty() {
        "ok"
    } else {
        "degraded"
    };
    let roles: Vec<&str> = match st.cfg.role {
        Role::All => vec!["trading-engine", "oms", "risk-engine", "marketdata", "web"],
        r => vec![r.name()],
    };
    Json(json!({
        "service": "trading_sim",
        "version": st.version(),
        "color": st.cfg.color,
        "status": status,
        "ready": st.accepting.load(Ordering::SeqCst) && !maintenance,
        "roles": roles,
        "details": details,
        "contract": crate::state::CONTRACT_VERSION,
        "uptime_s": st.started.elapsed().as_secs(),
    }))
    .into_response()
}

async fn metrics(State(st): S) -> Response {
    st.metrics.refresh_process();
    let marks = lock(&st.market).marks();
    {
        let book = lock(&st.book);
        let accounts: std::collections::BTreeSet<String> =
            book.positions.keys().map(|(a, _)| a.clone()).collect();
        let total: f64 = accounts
            .iter()
            .map(|a| {
                let (r, u) = book.pnl(a, &marks);
                r + u
            })
            .sum();
        st.metrics.pnl.set(total);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        st.metrics.encode(),
    )
        .into_response()
}

// ---------- orders ----------

async fn place_order(
    State(st): S,
    arrival: Option<axum::Extension<AcceptingAtArrival>>,
    body: Result<Json<OrderRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let accepting = arrival.is_none_or(|axum::Extension(a)| a.0);
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return err(StatusCode::BAD_REQUEST, e.body_text()),
    };
    match st.place(req, accepting) {
        Ok(o) => Json(o).into_response(),
        Err(OrderError::Invalid(m)) => err(StatusCode::BAD_REQUEST, m),
        Err(OrderError::NotAccepting(m)) => err(StatusCode::SERVICE_UNAVAILABLE, m),
    }
}

#[derive(Deserialize)]
struct AccountQuery {
    account: String,
}

async fn list_orders(State(st): S, Query(q): Query<AccountQuery>) -> Response {
    let book = lock(&st.book);
    let mut orders: Vec<_> = book
        .orders
        .values()
        .filter(|o| o.account == q.account)
        .cloned()
        .collect();
    orders.sort_by(|a, b| a.order_id.cmp(&b.order_id));
    Json(orders).into_response()
}

async fn get_order(State(st): S, Path(id): Path<String>) -> Response {
    match lock(&st.book).orders.get(&id) {
        Some(o) => Json(o.clone()).into_response(),
        None => err(StatusCode::NOT_FOUND, format!("no order {id}")),
    }
}

async fn cancel_order(State(st): S, Path(id): Path<String>) -> Response {
    match st.cancel(&id) {
        Ok(o) => Json(o).into_response(),
        Err((code, m)) => err(
            StatusCode::from_u16(code).unwrap_or(StatusCode::CONFLICT),
            m,
        ),
    }
}

async fn positions(State(st): S, Query(q): Query<AccountQuery>) -> Response {
    let marks = lock(&st.market).marks();
    let book = lock(&st.book);
    let positions: Vec<_> = book
        .positions
        .iter()
        .filter(|((acc, _), _)| *acc == q.account)
        .map(|((_, sym), p)| {
            let mark = marks.get(sym).copied().unwrap_or(0.0);
            json!({
                "symbol": sym,
                "qty": p.qty,
                "avg_price": p.avg_price,
                "realized_pnl": p.realized,
                "unrealized_pnl": p.qty as f64 * (mark - p.avg_price),
                "mark": mark,
            })
        })
        .collect();
    Json(json!({ "account": q.account, "positions": positions })).into_response()
}

async fn pnl(State(st): S, Query(q): Query<AccountQuery>) -> Response {
    let marks = lock(&st.market).marks();
    let (realized, unrealized) = lock(&st.book).pnl(&q.account, &marks);
    Json(json!({
        "account": q.account,
        "realized": realized,
        "unrealized": unrealized,
        "total": realized + unrealized,
    }))
    .into_response()
}

// ---------- risk ----------

async fn risk_check(
    State(st): S,
    body: Result<Json<OrderRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return err(StatusCode::BAD_REQUEST, e.body_text()),
    };
    if let Err(OrderError::Invalid(m) | OrderError::NotAccepting(m)) = st.validate(&req) {
        return Json(json!({ "allowed": false, "reason": m })).into_response();
    }
    match st.risk_check(&req) {
        Ok(()) => Json(json!({ "allowed": true, "reason": null })).into_response(),
        Err(reason) => Json(json!({ "allowed": false, "reason": reason })).into_response(),
    }
}

fn limits_json(st: &AppState) -> serde_json::Value {
    let l = st.limits.read().unwrap_or_else(|e| e.into_inner());
    json!({
        "limits": l.limits,
        "default": l.default,
        "enforced": st.faults().risk_ignore_limits != Some(true),
    })
}

async fn limits(State(st): S) -> Response {
    Json(limits_json(&st)).into_response()
}

// ---------- market data ----------

async fn feeds(State(st): S) -> Response {
    let latency_fault_us = st.faults().latency_ms.unwrap_or(0) * 1000;
    let source = lock(&st.admin).feed_source;
    let market = lock(&st.market);
    let now = Instant::now();
    let mut rng = rand::rng();
    let out: Vec<_> = market
        .feeds
        .iter()
        .map(|(name, f)| {
            let fresh: Vec<_> = f
                .window
                .iter()
                .filter(|t| now.duration_since(**t) <= Duration::from_secs(1))
                .collect();
            json!({
                "name": name,
                "connected": true,
                "source": source,
                "msgs_per_s": fresh.len() as f64,
                "last_msg_age_ms": now.duration_since(f.last_msg).as_millis() as u64,
                "latency_us": 60 + rng.random_range(0..40) + latency_fault_us,
            })
        })
        .collect();
    Json(out).into_response()
}

#[derive(Deserialize)]
struct SymbolQuery {
    symbol: String,
}

async fn ticks(State(st): S, Query(q): Query<SymbolQuery>) -> Response {
    let market = lock(&st.market);
    let Some(quote) = market.quotes.get(&q.symbol) else {
        return err(
            StatusCode::NOT_FOUND,
            format!("unknown symbol `{}`", q.symbol),
        );
    };
    let ticks: Vec<_> = quote
        .history
        .iter()
        .map(|(price, seq, ns)| {
            json!({ "symbol": q.symbol, "price": price, "seq": seq, "published_unix_ns": ns })
        })
        .collect();
    Json(ticks).into_response()
}

// ---------- web ----------

async fn web_page(State(st): S) -> Response {
    if let Some(reason) = lock(&st.admin).maintenance.clone() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Html(format!(
                "<!doctype html><title>Maintenance</title><h1>Scheduled maintenance</h1><p>{}</p>",
                html_escape(&reason)
            )),
        )
            .into_response();
    }
    Html(format!(
        "<!doctype html><title>Trading Dashboard</title><h1>Trading Dashboard</h1><p>{} {} ({})</p>",
        "trading_sim",
        html_escape(&st.version()),
        html_escape(&st.cfg.color)
    ))
    .into_response()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

// ---------- admin ----------

/// The error response when the request lacks the admin token, `None` when it may proceed.
fn unauthorized(st: &AppState, headers: &HeaderMap) -> Option<Response> {
    let Some(token) = &st.cfg.admin_token else {
        return Some(err(
            StatusCode::SERVICE_UNAVAILABLE,
            "admin API disabled: start the service with an admin token",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    (given != Some(token.as_str()))
        .then(|| err(StatusCode::UNAUTHORIZED, "missing or wrong bearer token"))
}

fn admin_json(st: &AppState) -> Response {
    let mut a = lock(&st.admin).clone();
    a.accepting_orders = st.accepting.load(Ordering::SeqCst);
    Json(a).into_response()
}

macro_rules! admin_handler {
    ($name:ident, |$st:ident| $body:block) => {
        async fn $name(State($st): S, headers: HeaderMap) -> Response {
            if let Some(r) = unauthorized(&$st, &headers) {
                return r;
            }
            $body
            admin_json(&$st)
        }
    };
}

admin_handler!(admin_state, |st| {});
admin_handler!(admin_stop_orders, |st| {
    st.accepting.store(false, Ordering::SeqCst);
});
admin_handler!(admin_resume_orders, |st| {
    st.accepting.store(true, Ordering::SeqCst);
});
admin_handler!(admin_trading_on, |st| {
    lock(&st.admin).trading_active = true;
});
admin_handler!(admin_trading_off, |st| {
    let mut a = lock(&st.admin);
    a.trading_active = false;
    // Deactivating trading stops every strategy; sizes are kept for a staged restart.
    for s in a.strategies.values_mut() {
        s.active = false;
    }
});
admin_handler!(admin_maint_off, |st| {
    lock(&st.admin).maintenance = None;
});

/// Cancel every working order (maintenance's deadline policy); answers the cancelled orders.
async fn admin_cancel_all(State(st): S, headers: HeaderMap) -> Response {
    if let Some(r) = unauthorized(&st, &headers) {
        return r;
    }
    let ids: Vec<String> = {
        let book = lock(&st.book);
        book.orders
            .values()
            .filter(|o| o.status == crate::state::OrderStatus::Resting)
            .map(|o| o.order_id.clone())
            .collect()
    };
    let cancelled: Vec<_> = ids.iter().filter_map(|id| st.cancel(id).ok()).collect();
    Json(cancelled).into_response()
}

async fn admin_inflight(State(st): S, headers: HeaderMap) -> Response {
    if let Some(r) = unauthorized(&st, &headers) {
        return r;
    }
    Json(json!({
        "open_orders": lock(&st.book).open_orders(),
        "inflight_requests": st.inflight.load(Ordering::SeqCst),
        "accepting_orders": st.accepting.load(Ordering::SeqCst),
    }))
    .into_response()
}

async fn admin_strategy(
    State(st): S,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Result<Json<Strategy>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if let Some(r) = unauthorized(&st, &headers) {
        return r;
    }
    let Json(s) = match body {
        Ok(b) => b,
        Err(e) => return err(StatusCode::BAD_REQUEST, e.body_text()),
    };
    if s.size_pct > 100 {
        return err(
            StatusCode::BAD_REQUEST,
            "size_pct must be between 0 and 100",
        );
    }
    {
        let mut a = lock(&st.admin);
        if s.active && !a.trading_active {
            return err(
                StatusCode::CONFLICT,
                "trading is deactivated; activate trading first",
            );
        }
        a.strategies.insert(name, s);
    }
    admin_json(&st)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedReq {
    source: FeedSource,
}

async fn admin_feeds(
    State(st): S,
    headers: HeaderMap,
    body: Result<Json<FeedReq>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if let Some(r) = unauthorized(&st, &headers) {
        return r;
    }
    match body {
        Ok(Json(f)) => lock(&st.admin).feed_source = f.source,
        Err(e) => return err(StatusCode::BAD_REQUEST, e.body_text()),
    }
    admin_json(&st)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct MaintReq {
    reason: Option<String>,
}

async fn admin_maint_on(
    State(st): S,
    headers: HeaderMap,
    body: Option<Json<MaintReq>>,
) -> Response {
    if let Some(r) = unauthorized(&st, &headers) {
        return r;
    }
    let reason = body
        .and_then(|Json(b)| b.reason)
        .unwrap_or_else(|| "maintenance in progress".into());
    lock(&st.admin).maintenance = Some(reason);
    admin_json(&st)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReloadReq {
    /// Which config to re-read [default: risk-limits].
    component: Option<String>,
}

async fn admin_reload(State(st): S, headers: HeaderMap, body: Option<Json<ReloadReq>>) -> Response {
    if let Some(r) = unauthorized(&st, &headers) {
        return r;
    }
    if !st.cfg.reload_supported {
        return err(
            StatusCode::NOT_IMPLEMENTED,
            "this service reads its config at start only; restart it to apply a new file",
        );
    }
    let component = body
        .and_then(|Json(b)| b.component)
        .unwrap_or_else(|| "risk-limits".into());
    if component != "risk-limits" {
        return reload_component(&st, &component);
    }
    let Some(path) = st.cfg.risk_limits.clone() else {
        return err(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no risk limits file configured (start with --risk-limits FILE)",
        );
    };
    match RiskLimits::load(&path) {
        Ok((l, digest)) => {
            *st.limits.write().unwrap_or_else(|e| e.into_inner()) = l;
            *lock(&st.limits_loaded) = Some((digest, crate::state::now_unix_ms()));
            *lock(&st.last_reload_error) = None;
            Json(limits_json(&st)).into_response()
        }
        Err(e) => {
            // Keep serving the old limits: a bad file must never replace good limits.
            *lock(&st.last_reload_error) = Some(e.clone());
            err(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("reload failed, old limits kept: {e}"),
            )
        }
    }
}

/// Re-read another component's file; a bad one keeps the old in use (and says so).
fn reload_component(st: &AppState, component: &str) -> Response {
    let mut all = lock(&st.components);
    let Some(f) = all.get_mut(component) else {
        return err(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "this service reads no `{component}` config (start with --config {component}=FILE)"
            ),
        );
    };
    match crate::state::load_component(&f.path) {
        Ok(sha256) => {
            f.sha256 = sha256;
            f.loaded_at_unix_ms = crate::state::now_unix_ms();
            f.last_reload_error = None;
            let f = file_json(component, f);
            drop(all);
            Json(f).into_response()
        }
        Err(e) => {
            f.last_reload_error = Some(e.clone());
            err(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("reload failed, old {component} config kept: {e}"),
            )
        }
    }
}

fn file_json(component: &str, f: &crate::state::LoadedFile) -> serde_json::Value {
    json!({
        "component": component,
        "path": f.path,
        "sha256": f.sha256,
        "loaded_at_unix_ms": f.loaded_at_unix_ms,
        "last_reload_error": f.last_reload_error,
    })
}

/// The configuration in use (contract 1.3): per file, the SHA-256 of the bytes loaded, when,
/// from where, and the last failed reload — so "the file changed but the service did not" shows.
async fn admin_config(State(st): S, headers: HeaderMap) -> Response {
    if let Some(r) = unauthorized(&st, &headers) {
        return r;
    }
    let mut files: Vec<serde_json::Value> =
        match (&st.cfg.risk_limits, lock(&st.limits_loaded).clone()) {
            (Some(path), Some((sha256, at))) => vec![json!({
                "component": "risk-limits",
                "path": path,
                "sha256": sha256,
                "loaded_at_unix_ms": at,
                "last_reload_error": lock(&st.last_reload_error).clone(),
            })],
            _ => vec![],
        };
    files.extend(lock(&st.components).iter().map(|(c, f)| file_json(c, f)));
    Json(json!({ "files": files })).into_response()
}

// ---------- fault injection ----------

async fn get_faults(State(st): S) -> Response {
    let mut f = st.faults();
    // A stall is shown while it lasts.
    f.stall_ms = lock(&st.stall_until).and_then(|u| {
        let now = Instant::now();
        (u > now).then(|| (u - now).as_millis() as u64)
    });
    Json(f).into_response()
}

async fn set_faults(
    State(st): S,
    body: Result<Json<Faults>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(new) = match body {
        Ok(b) => b,
        Err(e) => return err(StatusCode::BAD_REQUEST, e.body_text()),
    };
    if let Some(r) = new.error_rate
        && !(0.0..=1.0).contains(&r)
    {
        return err(
            StatusCode::BAD_REQUEST,
            "error_rate must be between 0 and 1",
        );
    }
    if let Some(ms) = new.stall_ms {
        *lock(&st.stall_until) = Some(Instant::now() + Duration::from_millis(ms));
    }
    let crash = new.crash == Some(true);
    {
        let mut f = st.faults.write().unwrap_or_else(|e| e.into_inner());
        f.merge(Faults {
            stall_ms: None,
            ..new
        });
    }
    tracing::warn!("faults now: {:?}", st.faults());
    if crash {
        let token = st.crash.clone();
        tokio::spawn(async move {
            // Let this answer reach the client first.
            tokio::time::sleep(Duration::from_millis(20)).await;
            token.cancel();
        });
    }
    get_faults(State(st)).await
}

async fn clear_faults(State(st): S) -> Response {
    *st.faults.write().unwrap_or_else(|e| e.into_inner()) = Faults::default();
    *lock(&st.stall_until) = None;
    Json(Faults::default()).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceReq {
    symbol: String,
    price: f64,
}

/// Move a symbol's price now (tests use it to cross resting orders deterministically).
async fn set_price(
    State(st): S,
    body: Result<Json<PriceReq>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(p) = match body {
        Ok(b) => b,
        Err(e) => return err(StatusCode::BAD_REQUEST, e.body_text()),
    };
    if !(p.price.is_finite() && p.price > 0.0) {
        return err(StatusCode::BAD_REQUEST, "price must be positive");
    }
    let marks = {
        let mut m = lock(&st.market);
        let Some(q) = m.quotes.get_mut(&p.symbol) else {
            return err(
                StatusCode::NOT_FOUND,
                format!("unknown symbol `{}`", p.symbol),
            );
        };
        q.price = p.price;
        m.marks()
    };
    st.match_resting(&marks);
    Json(json!({ "symbol": p.symbol, "price": p.price })).into_response()
}
