//! Typed client of the service contract (docs/service-contract.md, version [`VERSION`]).
//! The tools rely on nothing else about the firm's services.

use crate::http::{Http, HttpError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Contract version this client speaks; services report theirs in `/health`.
pub const VERSION: &str = "1.4";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub service: String,
    pub version: String,
    pub color: String,
    /// `ok`, `degraded` or `maintenance`.
    pub status: String,
    pub ready: bool,
    #[serde(default)]
    pub roles: Vec<String>,
    /// Error lines the service wants an operator to see; empty when healthy.
    #[serde(default)]
    pub details: Vec<String>,
    #[serde(default)]
    pub contract: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Buy,
    Sell,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderType {
    Limit,
    Market,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderRequest {
    pub account: String,
    pub symbol: String,
    pub side: Side,
    pub qty: i64,
    #[serde(rename = "type")]
    pub order_type: OrderType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<f64>,
    /// Idempotency key: the same id twice returns the first order, never a second one.
    pub client_order_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Resting,
    PartiallyFilled,
    Filled,
    Cancelled,
    Rejected,
}

impl OrderStatus {
    pub fn is_open(self) -> bool {
        matches!(self, OrderStatus::Resting | OrderStatus::PartiallyFilled)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fill {
    pub qty: i64,
    pub price: f64,
    pub ts_unix_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub order_id: String,
    pub client_order_id: String,
    pub account: String,
    pub symbol: String,
    pub side: Side,
    pub qty: i64,
    #[serde(rename = "type")]
    pub order_type: OrderType,
    pub price: Option<f64>,
    pub status: OrderStatus,
    pub filled_qty: i64,
    pub avg_price: Option<f64>,
    #[serde(default)]
    pub fills: Vec<Fill>,
    pub reason: Option<String>,
    /// Colour of the service that took the order (lets a cutover test find every order once).
    #[serde(default)]
    pub color: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Position {
    pub symbol: String,
    pub qty: i64,
    pub avg_price: f64,
    pub realized_pnl: f64,
    pub unrealized_pnl: f64,
    pub mark: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Positions {
    pub account: String,
    pub positions: Vec<Position>,
}

impl Positions {
    pub fn qty(&self, symbol: &str) -> i64 {
        self.positions
            .iter()
            .find(|p| p.symbol == symbol)
            .map_or(0, |p| p.qty)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pnl {
    pub account: String,
    pub realized: f64,
    pub unrealized: f64,
    pub total: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeedSource {
    Staging,
    Production,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feed {
    pub name: String,
    pub connected: bool,
    pub source: FeedSource,
    pub msgs_per_s: f64,
    pub last_msg_age_ms: u64,
    pub latency_us: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tick {
    pub symbol: String,
    pub price: f64,
    pub seq: u64,
    /// Publish time (Unix epoch, ns) so receivers can measure feed latency.
    pub published_unix_ns: u128,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RiskDecision {
    pub allowed: bool,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Limit {
    pub max_position_size: i64,
    pub max_loss_per_day: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    pub limits: BTreeMap<String, Limit>,
    pub default: Option<Limit>,
    /// Whether limits are enforced (false only under a fault or misconfiguration).
    pub enforced: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inflight {
    pub open_orders: u64,
    pub inflight_requests: u64,
    pub accepting_orders: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Strategy {
    pub active: bool,
    pub size_pct: u8,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdminState {
    pub accepting_orders: bool,
    pub trading_active: bool,
    pub maintenance: Option<String>,
    pub feed_source: FeedSource,
    pub strategies: BTreeMap<String, Strategy>,
}

impl AdminState {
    /// The names of the strategies switched on.
    pub fn active_strategies(&self) -> Vec<&String> {
        self.strategies
            .iter()
            .filter(|(_, s)| s.active)
            .map(|(n, _)| n)
            .collect()
    }
}

/// `GET /admin/config`: the configuration files a service is using now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigInUse {
    pub files: Vec<ConfigFile>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigFile {
    pub component: String,
    pub path: String,
    /// SHA-256 (hex) of the bytes the service loaded.
    pub sha256: String,
    pub loaded_at_unix_ms: u64,
    pub last_reload_error: Option<String>,
}

/// Fault injection (trading_sim only): any subset may be set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Faults {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_feed: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk_ignore_limits: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crash: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy_loss_per_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fill_ratio: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk_reject_rate: Option<f64>,
}

/// Counters from a service's `/metrics`, business routes only: probes, metrics, admin and
/// fault-injection calls are not the traffic anyone judges. One parser for every tool that
/// reads them (smoke_tests' error rate, cutover's watch, strategy_rollout's holds).
#[derive(Debug, Clone, Copy, Default)]
pub struct MetricTotals {
    pub requests: f64,
    pub errors: f64,
    pub latency_sum: f64,
    pub latency_count: f64,
    pub fills: f64,
    pub accepted: f64,
    pub rejected: f64,
    /// Sum of `trading_strategy_pnl` over every strategy.
    pub strategy_pnl: f64,
    /// Business requests being served now (`inflight_requests`, a gauge).
    pub inflight: f64,
}

impl MetricTotals {
    pub fn parse(text: &str) -> MetricTotals {
        const NOT_BUSINESS: [&str; 5] = [
            "route=\"/health\"",
            "route=\"/metrics\"",
            "route=\"/admin",
            "route=\"/sim",
            "route=\"unmatched\"",
        ];
        let mut t = MetricTotals::default();
        for l in text
            .lines()
            .filter(|l| !l.starts_with('#') && !NOT_BUSINESS.iter().any(|r| l.contains(r)))
        {
            let v: f64 = l
                .rsplit(' ')
                .next()
                .and_then(|x| x.parse().ok())
                .unwrap_or(0.0);
            if l.starts_with("http_requests_total{") {
                t.requests += v;
            } else if l.starts_with("http_request_errors_total{") {
                t.errors += v;
            } else if l.starts_with("http_request_duration_seconds_sum{") {
                t.latency_sum += v;
            } else if l.starts_with("http_request_duration_seconds_count{") {
                t.latency_count += v;
            } else if l.starts_with("fills_total ") {
                t.fills += v;
            } else if l.starts_with("orders_total{status=\"accepted\"}") {
                t.accepted += v;
            } else if l.starts_with("orders_total{status=\"rejected\"}") {
                t.rejected += v;
            } else if l.starts_with("trading_strategy_pnl{") {
                t.strategy_pnl += v;
            } else if l.starts_with("inflight_requests ") {
                t.inflight += v;
            }
        }
        t
    }

    /// Sum another service's totals into these.
    pub fn add(&mut self, o: &MetricTotals) {
        self.requests += o.requests;
        self.errors += o.errors;
        self.latency_sum += o.latency_sum;
        self.latency_count += o.latency_count;
        self.fills += o.fills;
        self.accepted += o.accepted;
        self.rejected += o.rejected;
        self.strategy_pnl += o.strategy_pnl;
        self.inflight += o.inflight;
    }
}

/// One service instance at `base` (e.g. `http://10.0.0.5:8080`).
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    http: Http,
}

impl Client {
    pub fn new(base: impl AsRef<str>, http: Http) -> Self {
        Client {
            base: base.as_ref().trim_end_matches('/').to_owned(),
            http,
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn health(&self) -> Result<Health, HttpError> {
        self.http.get_json(&self.url("/health")).await
    }

    /// Prometheus text exposition.
    pub async fn metrics(&self) -> Result<String, HttpError> {
        let url = self.url("/metrics");
        match self.http.get_text(&url).await? {
            (200, body) => Ok(body),
            (status, body) => Err(HttpError::Status { url, status, body }),
        }
    }

    /// `/metrics` reduced to the business counters.
    pub async fn metric_totals(&self) -> Result<MetricTotals, HttpError> {
        Ok(MetricTotals::parse(&self.metrics().await?))
    }

    pub async fn place_order(&self, o: &OrderRequest) -> Result<Order, HttpError> {
        self.http.post_json(&self.url("/orders"), o, false).await
    }

    pub async fn order(&self, id: &str) -> Result<Order, HttpError> {
        self.http
            .get_json(&self.url(&format!("/orders/{id}")))
            .await
    }

    pub async fn cancel_order(&self, id: &str) -> Result<Order, HttpError> {
        self.http
            .delete_json(&self.url(&format!("/orders/{id}")), false)
            .await
    }

    /// Open and recent orders of an account (cleanup uses it to find leftovers).
    pub async fn orders(&self, account: &str) -> Result<Vec<Order>, HttpError> {
        self.http
            .get_json(&self.url(&format!("/orders?account={account}")))
            .await
    }

    pub async fn positions(&self, account: &str) -> Result<Positions, HttpError> {
        self.http
            .get_json(&self.url(&format!("/positions?account={account}")))
            .await
    }

    pub async fn pnl(&self, account: &str) -> Result<Pnl, HttpError> {
        self.http
            .get_json(&self.url(&format!("/pnl?account={account}")))
            .await
    }

    pub async fn feeds(&self) -> Result<Vec<Feed>, HttpError> {
        self.http.get_json(&self.url("/feeds")).await
    }

    pub async fn ticks(&self, symbol: &str) -> Result<Vec<Tick>, HttpError> {
        self.http
            .get_json(&self.url(&format!("/ticks?symbol={symbol}")))
            .await
    }

    pub async fn risk_check(&self, o: &OrderRequest) -> Result<RiskDecision, HttpError> {
        self.http.post_json(&self.url("/check"), o, false).await
    }

    pub async fn limits(&self) -> Result<Limits, HttpError> {
        self.http.get_json(&self.url("/limits")).await
    }

    /// The web interface's page: status and body (503 + maintenance page when in maintenance).
    pub async fn web_page(&self) -> Result<(u16, String), HttpError> {
        self.http.get_text(&self.url("/")).await
    }

    // --- admin (bearer token) ---

    pub async fn admin_state(&self) -> Result<AdminState, HttpError> {
        self.http.admin_get_json(&self.url("/admin/state")).await
    }

    pub async fn inflight(&self) -> Result<Inflight, HttpError> {
        self.http.admin_get_json(&self.url("/admin/inflight")).await
    }

    async fn admin_post(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> Result<AdminState, HttpError> {
        self.http.post_json(&self.url(path), &body, true).await
    }

    pub async fn stop_orders(&self) -> Result<AdminState, HttpError> {
        self.admin_post("/admin/orders/stop", serde_json::json!({}))
            .await
    }

    /// Cancel every working order (any account); answers the cancelled orders.
    pub async fn cancel_all_orders(&self) -> Result<Vec<Order>, HttpError> {
        self.http
            .post_json(
                &self.url("/admin/orders/cancel-all"),
                &serde_json::json!({}),
                true,
            )
            .await
    }

    pub async fn resume_orders(&self) -> Result<AdminState, HttpError> {
        self.admin_post("/admin/orders/resume", serde_json::json!({}))
            .await
    }

    pub async fn set_trading(&self, active: bool) -> Result<AdminState, HttpError> {
        let path = if active {
            "/admin/trading/activate"
        } else {
            "/admin/trading/deactivate"
        };
        self.admin_post(path, serde_json::json!({})).await
    }

    pub async fn set_strategy(&self, name: &str, s: &Strategy) -> Result<AdminState, HttpError> {
        self.admin_post(
            &format!("/admin/strategies/{name}"),
            serde_json::to_value(s).expect("json"),
        )
        .await
    }

    pub async fn set_feed_source(&self, source: FeedSource) -> Result<AdminState, HttpError> {
        self.admin_post("/admin/feeds", serde_json::json!({ "source": source }))
            .await
    }

    pub async fn set_maintenance(&self, reason: Option<&str>) -> Result<AdminState, HttpError> {
        match reason {
            Some(r) => {
                self.admin_post("/admin/maintenance", serde_json::json!({ "reason": r }))
                    .await
            }
            None => {
                self.http
                    .delete_json(&self.url("/admin/maintenance"), true)
                    .await
            }
        }
    }

    /// The configuration the service is using (contract 1.3).
    pub async fn config_in_use(&self) -> Result<ConfigInUse, HttpError> {
        self.http.admin_get_json(&self.url("/admin/config")).await
    }

    /// Re-read one component's config (`risk-limits`, `app`, …; contract 1.4).
    pub async fn reload_config(&self, component: &str) -> Result<serde_json::Value, HttpError> {
        self.http
            .post_json(
                &self.url("/admin/config/reload"),
                &serde_json::json!({ "component": component }),
                true,
            )
            .await
    }

    // --- fault injection (trading_sim only) ---

    pub async fn set_faults(&self, f: &Faults) -> Result<Faults, HttpError> {
        self.http
            .post_json(&self.url("/sim/faults"), f, false)
            .await
    }

    pub async fn faults(&self) -> Result<Faults, HttpError> {
        self.http.get_json(&self.url("/sim/faults")).await
    }

    /// Move a symbol's price (trading_sim only).
    pub async fn set_price(
        &self,
        symbol: &str,
        price: f64,
    ) -> Result<serde_json::Value, HttpError> {
        self.http
            .post_json(
                &self.url("/sim/price"),
                &serde_json::json!({ "symbol": symbol, "price": price }),
                false,
            )
            .await
    }

    pub async fn clear_faults(&self) -> Result<Faults, HttpError> {
        self.http.delete_json(&self.url("/sim/faults"), false).await
    }
}
