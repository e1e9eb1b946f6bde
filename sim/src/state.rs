//! The sim's domain: a market that moves, an order book per account that rests and fills
//! orders, positions and P&L that follow fills, and enforced risk limits.

use crate::SimConfig;
use crate::metrics::Metrics;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

pub const CONTRACT_VERSION: &str = "1.4";

/// Feeds and the symbols each carries.
pub const FEEDS: &[(&str, &[(&str, f64)])] = &[
    (
        "equities",
        &[("AAPL", 190.0), ("MSFT", 410.0), ("NVDA", 120.0)],
    ),
    ("fx", &[("EURUSD", 1.08), ("USDJPY", 151.0)]),
];

pub fn now_unix_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

// ---------- risk limits ----------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    pub max_position_size: i64,
    pub max_loss_per_day: f64,
}

/// `risk_limits.yaml`: per-strategy/per-account limits (`risk_limits:`, the firm's shape, or
/// `limits:`) and an optional default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiskLimits {
    #[serde(default)]
    pub default: Option<Limit>,
    #[serde(default, alias = "risk_limits")]
    pub limits: BTreeMap<String, Limit>,
}

impl RiskLimits {
    pub fn builtin() -> Self {
        let l = Limit {
            max_position_size: 1000,
            max_loss_per_day: 10_000.0,
        };
        RiskLimits {
            default: Some(l.clone()),
            limits: BTreeMap::from([("TEST-SMOKE-01".to_string(), l)]),
        }
    }

    /// The file's limits and the SHA-256 of the bytes they were read from (what
    /// `GET /admin/config` reports as in use).
    pub fn load(path: &Path) -> Result<(Self, String), String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let digest: String = {
            use sha2::Digest;
            sha2::Sha256::digest(text.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        };
        let l: RiskLimits = serde_saphyr::from_str(&text).map_err(|e| {
            let plain = e.render_with_options(serde_saphyr::render_options! {
                formatter: &serde_saphyr::UserMessageFormatter,
                snippets: serde_saphyr::SnippetMode::Off,
            });
            format!(
                "{}: {}",
                path.display(),
                plain.lines().next().unwrap_or_default()
            )
        })?;
        for (name, lim) in l
            .default
            .iter()
            .map(|d| ("default", d))
            .chain(l.limits.iter().map(|(k, v)| (k.as_str(), v)))
        {
            if lim.max_position_size <= 0
                || lim.max_loss_per_day.is_nan()
                || lim.max_loss_per_day <= 0.0
            {
                return Err(format!(
                    "{}: {name}: limits must be positive",
                    path.display()
                ));
            }
        }
        Ok((l, digest))
    }

    fn for_order(&self, account: &str, strategy: Option<&str>) -> Option<&Limit> {
        strategy
            .and_then(|s| self.limits.get(s))
            .or_else(|| self.limits.get(account))
            .or(self.default.as_ref())
    }
}

// ---------- faults ----------

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
    /// Active strategies lose this much per second at 100 % size (scaled by their size): a
    /// strategy whose P&L trend turns bad once it trades at scale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy_loss_per_s: Option<f64>,
    /// Only this share of marketable orders fills (the rest rest unfilled): a fill-rate drop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fill_ratio: Option<f64>,
    /// The risk engine rejects this share of otherwise allowed orders: a burst of risk alerts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk_reject_rate: Option<f64>,
}

impl Faults {
    /// Merge `other` over `self` (POST adds to the active set).
    pub fn merge(&mut self, other: Faults) {
        macro_rules! m { ($($f:ident),*) => { $( if other.$f.is_some() { self.$f = other.$f; } )* } }
        m!(
            latency_ms,
            error_rate,
            stall_ms,
            stale_feed,
            risk_ignore_limits,
            version,
            crash,
            strategy_loss_per_s,
            fill_ratio,
            risk_reject_rate
        );
    }
}

// ---------- orders and positions ----------

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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderRequest {
    pub account: String,
    pub symbol: String,
    pub side: Side,
    pub qty: i64,
    #[serde(rename = "type")]
    pub order_type: OrderType,
    pub price: Option<f64>,
    pub client_order_id: String,
    pub strategy: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Resting,
    Filled,
    Cancelled,
    Rejected,
}

#[derive(Debug, Clone, Serialize)]
pub struct Fill {
    pub qty: i64,
    pub price: f64,
    pub ts_unix_ms: i64,
}

#[derive(Debug, Clone, Serialize)]
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
    pub fills: Vec<Fill>,
    pub reason: Option<String>,
    pub color: String,
}

impl Order {
    fn is_open(&self) -> bool {
        self.status == OrderStatus::Resting
    }
}

#[derive(Debug, Clone, Default)]
pub struct Pos {
    pub qty: i64,
    pub avg_price: f64,
    pub realized: f64,
}

impl Pos {
    /// Average-cost accounting: fills that reduce a position realise P&L.
    fn apply(&mut self, signed_qty: i64, price: f64) {
        let q = self.qty;
        if q == 0 || q.signum() == signed_qty.signum() {
            let total = q + signed_qty;
            self.avg_price = (self.avg_price * q as f64 + price * signed_qty as f64) / total as f64;
            self.qty = total;
        } else {
            let closing = signed_qty.abs().min(q.abs());
            self.realized += closing as f64 * (price - self.avg_price) * q.signum() as f64;
            let total = q + signed_qty;
            if total == 0 {
                self.avg_price = 0.0;
            } else if total.signum() != q.signum() {
                // Flipped through zero: the remainder opens at this price.
                self.avg_price = price;
            }
            self.qty = total;
        }
    }
}

#[derive(Default)]
pub struct Book {
    pub orders: HashMap<String, Order>,
    pub by_client_id: HashMap<String, String>,
    pub positions: BTreeMap<(String, String), Pos>,
    pub next_id: u64,
}

impl Book {
    pub fn open_orders(&self) -> u64 {
        self.orders.values().filter(|o| o.is_open()).count() as u64
    }

    fn fill(&mut self, id: &str, price: f64, metrics: &Metrics) {
        let Some(o) = self.orders.get_mut(id) else {
            return;
        };
        let qty = o.qty - o.filled_qty;
        if qty <= 0 {
            return;
        }
        let prev = o.avg_price.unwrap_or(0.0) * o.filled_qty as f64;
        o.filled_qty += qty;
        o.avg_price = Some((prev + price * qty as f64) / o.filled_qty as f64);
        o.fills.push(Fill {
            qty,
            price,
            ts_unix_ms: (now_unix_ns() / 1_000_000) as i64,
        });
        o.status = OrderStatus::Filled;
        let signed = if o.side == Side::Buy { qty } else { -qty };
        let key = (o.account.clone(), o.symbol.clone());
        self.positions.entry(key).or_default().apply(signed, price);
        metrics.fills.inc();
        metrics.volume.inc_by(qty as u64);
    }

    pub fn pnl(&self, account: &str, marks: &HashMap<String, f64>) -> (f64, f64) {
        let mut realized = 0.0;
        let mut unrealized = 0.0;
        for ((acc, sym), p) in &self.positions {
            if acc == account {
                realized += p.realized;
                if let Some(m) = marks.get(sym) {
                    unrealized += p.qty as f64 * (m - p.avg_price);
                }
            }
        }
        (realized, unrealized)
    }
}

// ---------- market ----------

pub struct Quote {
    pub price: f64,
    pub seq: u64,
    pub published_unix_ns: u128,
    pub history: VecDeque<(f64, u64, u128)>,
}

pub struct FeedState {
    pub last_msg: Instant,
    /// Publish instants within the last second, for msgs_per_s.
    pub window: VecDeque<Instant>,
}

pub struct Market {
    pub quotes: HashMap<String, Quote>,
    pub feeds: BTreeMap<String, FeedState>,
}

impl Market {
    fn new() -> Self {
        let now = Instant::now();
        let mut quotes = HashMap::new();
        let mut feeds = BTreeMap::new();
        for (feed, symbols) in FEEDS {
            feeds.insert(
                feed.to_string(),
                FeedState {
                    last_msg: now,
                    window: VecDeque::new(),
                },
            );
            for (s, p) in *symbols {
                quotes.insert(
                    s.to_string(),
                    Quote {
                        price: *p,
                        seq: 0,
                        published_unix_ns: now_unix_ns(),
                        history: VecDeque::new(),
                    },
                );
            }
        }
        Market { quotes, feeds }
    }

    pub fn marks(&self) -> HashMap<String, f64> {
        self.quotes
            .iter()
            .map(|(k, q)| (k.clone(), q.price))
            .collect()
    }
}

// ---------- admin ----------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeedSource {
    Staging,
    Production,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Strategy {
    pub active: bool,
    pub size_pct: u8,
}

#[derive(Debug, Clone, Serialize)]
pub struct AdminState {
    pub accepting_orders: bool,
    pub trading_active: bool,
    pub maintenance: Option<String>,
    pub feed_source: FeedSource,
    pub strategies: BTreeMap<String, Strategy>,
}

// ---------- the whole state ----------

pub struct AppState {
    pub cfg: SimConfig,
    pub faults: RwLock<Faults>,
    pub stall_until: Mutex<Option<Instant>>,
    pub market: Mutex<Market>,
    pub book: Mutex<Book>,
    pub limits: RwLock<RiskLimits>,
    /// SHA-256 of the risk-limits file in use and when it was loaded (unix ms); None: built-in.
    pub limits_loaded: Mutex<Option<(String, u64)>>,
    pub last_reload_error: Mutex<Option<String>>,
    /// The other config files, by component.
    pub components: Mutex<BTreeMap<String, LoadedFile>>,
    pub admin: Mutex<AdminState>,
    pub metrics: Metrics,
    pub inflight: AtomicU64,
    pub accepting: AtomicBool,
    pub crash: CancellationToken,
    pub started: Instant,
}

#[derive(Debug)]
pub enum OrderError {
    /// 400: the order itself is malformed.
    Invalid(String),
    /// 503: not accepting new orders (stopped or maintenance).
    NotAccepting(String),
}

impl AppState {
    pub fn new(cfg: SimConfig, limits: RiskLimits, crash: CancellationToken) -> Arc<Self> {
        let strategies: BTreeMap<String, Strategy> =
            ["MM_EQ_001", "STAT_ARB_PAIRS_001", "MOMENTUM_ST_001"]
                .into_iter()
                .map(|s| {
                    (
                        s.to_string(),
                        Strategy {
                            active: false,
                            size_pct: 0,
                        },
                    )
                })
                .collect();
        let metrics = Metrics::new();
        let trading_active = !cfg.standby;
        // Every label set exists from the start (at 0), so /metrics and rate() never depend on
        // whether the first tick or order has happened yet.
        for (feed, _) in FEEDS {
            let _ = metrics.ticks.get_or_create(&crate::metrics::FeedLabel {
                feed: feed.to_string(),
            });
        }
        for s in strategies.keys() {
            let _ = metrics
                .strategy_pnl
                .get_or_create(&crate::metrics::StrategyLabel {
                    strategy: s.clone(),
                });
        }
        for s in ["accepted", "rejected"] {
            let _ = metrics
                .orders
                .get_or_create(&crate::metrics::StatusLabel::new(s));
        }
        Arc::new(AppState {
            cfg,
            faults: RwLock::new(Faults::default()),
            stall_until: Mutex::new(None),
            market: Mutex::new(Market::new()),
            book: Mutex::new(Book::default()),
            limits: RwLock::new(limits),
            limits_loaded: Mutex::new(None),
            last_reload_error: Mutex::new(None),
            components: Mutex::new(BTreeMap::new()),
            admin: Mutex::new(AdminState {
                accepting_orders: true,
                trading_active,
                maintenance: None,
                feed_source: FeedSource::Staging,
                strategies,
            }),
            metrics,
            inflight: AtomicU64::new(0),
            accepting: AtomicBool::new(true),
            crash,
            started: Instant::now(),
        })
    }

    pub fn faults(&self) -> Faults {
        self.faults
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn version(&self) -> String {
        self.faults()
            .version
            .unwrap_or_else(|| self.cfg.version.clone())
    }

    fn limits_enforced(&self) -> bool {
        self.faults().risk_ignore_limits != Some(true)
    }

    pub fn validate(&self, o: &OrderRequest) -> Result<(), OrderError> {
        if o.account.trim().is_empty() {
            return Err(OrderError::Invalid("account is required".into()));
        }
        if o.client_order_id.trim().is_empty() {
            return Err(OrderError::Invalid("client_order_id is required".into()));
        }
        if o.qty <= 0 {
            return Err(OrderError::Invalid(format!(
                "qty must be positive, got {}",
                o.qty
            )));
        }
        if !lock(&self.market).quotes.contains_key(&o.symbol) {
            return Err(OrderError::Invalid(format!(
                "unknown symbol `{}`",
                o.symbol
            )));
        }
        match (o.order_type, o.price) {
            (OrderType::Limit, None) => {
                Err(OrderError::Invalid("limit order needs a price".into()))
            }
            (OrderType::Limit, Some(p)) if !(p.is_finite() && p > 0.0) => Err(OrderError::Invalid(
                format!("price must be positive, got {p}"),
            )),
            _ => Ok(()),
        }
    }

    /// The risk engine's verdict: position and daily-loss limits.
    pub fn risk_check(&self, o: &OrderRequest) -> Result<(), String> {
        if !self.limits_enforced() {
            return Ok(());
        }
        if let Some(r) = self.faults().risk_reject_rate.filter(|r| *r > 0.0)
            && rand::Rng::random_bool(&mut rand::rng(), r.min(1.0))
        {
            return Err("injected fault: risk_reject_rate".into());
        }
        let limits = self.limits.read().unwrap_or_else(|e| e.into_inner());
        let Some(limit) = limits.for_order(&o.account, o.strategy.as_deref()) else {
            return Err(format!(
                "no risk limit configured for account {}",
                o.account
            ));
        };
        let marks = lock(&self.market).marks();
        let book = lock(&self.book);
        let current = book
            .positions
            .get(&(o.account.clone(), o.symbol.clone()))
            .map_or(0, |p| p.qty);
        let signed = if o.side == Side::Buy { o.qty } else { -o.qty };
        let after = current + signed;
        if after.abs() > limit.max_position_size {
            return Err(format!(
                "position limit exceeded: {} {} would reach {after}, limit {}",
                o.account, o.symbol, limit.max_position_size
            ));
        }
        let (r, u) = book.pnl(&o.account, &marks);
        if r + u < -limit.max_loss_per_day {
            return Err(format!(
                "daily loss limit reached: P&L {:.2}, limit -{:.2}",
                r + u,
                limit.max_loss_per_day
            ));
        }
        Ok(())
    }

    /// `accepting`: whether new orders were accepted when the request arrived.
    pub fn place(&self, req: OrderRequest, accepting: bool) -> Result<Order, OrderError> {
        self.validate(&req)?;
        {
            let admin = lock(&self.admin);
            if let Some(reason) = &admin.maintenance {
                return Err(OrderError::NotAccepting(format!(
                    "in maintenance: {reason}"
                )));
            }
        }
        if !accepting {
            return Err(OrderError::NotAccepting("not accepting new orders".into()));
        }
        let verdict = self.risk_check(&req);
        let mark = lock(&self.market)
            .quotes
            .get(&req.symbol)
            .map(|q| q.price)
            .unwrap_or(0.0);
        let mut book = lock(&self.book);
        // Idempotency: a retried request returns the order it created the first time.
        if let Some(id) = book.by_client_id.get(&req.client_order_id)
            && let Some(o) = book.orders.get(id)
        {
            return Ok(o.clone());
        }
        book.next_id += 1;
        let id = format!("{}-{}", self.cfg.color, book.next_id);
        let mut order = Order {
            order_id: id.clone(),
            client_order_id: req.client_order_id.clone(),
            account: req.account,
            symbol: req.symbol,
            side: req.side,
            qty: req.qty,
            order_type: req.order_type,
            price: req.price,
            status: OrderStatus::Resting,
            filled_qty: 0,
            avg_price: None,
            fills: vec![],
            reason: None,
            color: self.cfg.color.clone(),
        };
        if let Err(reason) = verdict {
            order.status = OrderStatus::Rejected;
            order.reason = Some(reason);
            self.metrics
                .orders
                .get_or_create(&crate::metrics::StatusLabel::new("rejected"))
                .inc();
        } else {
            self.metrics
                .orders
                .get_or_create(&crate::metrics::StatusLabel::new("accepted"))
                .inc();
        }
        book.by_client_id.insert(req.client_order_id, id.clone());
        let crosses = match (order.order_type, order.side, order.price) {
            (OrderType::Market, _, _) => true,
            (OrderType::Limit, Side::Buy, Some(p)) => mark <= p,
            (OrderType::Limit, Side::Sell, Some(p)) => mark >= p,
            _ => false,
        };
        let rejected = order.status == OrderStatus::Rejected;
        let fills = match self.faults().fill_ratio {
            Some(r) if r < 1.0 => rand::Rng::random_bool(&mut rand::rng(), r.clamp(0.0, 1.0)),
            _ => true,
        };
        book.orders.insert(id.clone(), order);
        if !rejected && crosses && fills {
            book.fill(&id, mark, &self.metrics);
        }
        self.metrics.open_orders.set(book.open_orders() as i64);
        Ok(book.orders[&id].clone())
    }

    pub fn cancel(&self, id: &str) -> Result<Order, (u16, String)> {
        let mut book = lock(&self.book);
        let Some(o) = book.orders.get_mut(id) else {
            return Err((404, format!("no order {id}")));
        };
        if !o.is_open() {
            return Err((
                409,
                format!("order {id} is {:?}, not open", o.status).to_lowercase(),
            ));
        }
        o.status = OrderStatus::Cancelled;
        let o = o.clone();
        self.metrics.open_orders.set(book.open_orders() as i64);
        Ok(o)
    }

    /// Fill resting limit orders the market has crossed.
    /// Active strategies trade: healthy, each earns about 1 per second at 100 % size (spread
    /// capture, with noise); under `strategy_loss_per_s` each loses that much instead.
    pub fn accrue_strategies(&self, dt_s: f64) {
        let loss = self.faults().strategy_loss_per_s;
        let admin = lock(&self.admin);
        if !admin.trading_active {
            return;
        }
        let mut rng = rand::rng();
        for (name, st) in admin.strategies.iter().filter(|(_, s)| s.active) {
            let scale = f64::from(st.size_pct) / 100.0;
            let per_s = match loss {
                Some(l) => -l,
                None => 1.0 + rand::Rng::random_range(&mut rng, -0.5..0.5),
            };
            self.metrics
                .strategy_pnl
                .get_or_create(&crate::metrics::StrategyLabel {
                    strategy: name.clone(),
                })
                .inc_by(per_s * scale * dt_s);
        }
    }

    pub fn match_resting(&self, marks: &HashMap<String, f64>) {
        let mut book = lock(&self.book);
        let crossed: Vec<(String, f64)> = book
            .orders
            .values()
            .filter(|o| o.is_open())
            .filter_map(|o| {
                let m = *marks.get(&o.symbol)?;
                let p = o.price?;
                let hit = match o.side {
                    Side::Buy => m <= p,
                    Side::Sell => m >= p,
                };
                hit.then(|| (o.order_id.clone(), p))
            })
            .collect();
        if crossed.is_empty() {
            return;
        }
        for (id, p) in crossed {
            book.fill(&id, p, &self.metrics);
        }
        self.metrics.open_orders.set(book.open_orders() as i64);
    }
}

/// A config file in use (besides risk limits): where from, the SHA-256 of the bytes loaded,
/// when, and the last reload that failed (the old file stays in use then).
#[derive(Debug, Clone)]
pub struct LoadedFile {
    pub path: std::path::PathBuf,
    pub sha256: String,
    pub loaded_at_unix_ms: u64,
    pub last_reload_error: Option<String>,
}

/// Read a component's config file: it must be a YAML (or JSON) mapping, as every config type
/// is; the SHA-256 of its bytes is what `GET /admin/config` reports.
pub fn load_component(path: &Path) -> Result<String, String> {
    use sha2::Digest;
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let doc: serde_json::Map<String, serde_json::Value> =
        serde_saphyr::from_str(&text).map_err(|e| {
            format!(
                "{}: not a YAML mapping: {}",
                path.display(),
                e.to_string().lines().next().unwrap_or_default()
            )
        })?;
    if doc.is_empty() {
        return Err(format!("{}: empty", path.display()));
    }
    Ok(sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Milliseconds since the Unix epoch (for `loaded_at`).
pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn average_cost_accounting() {
        let mut p = Pos::default();
        p.apply(10, 100.0);
        p.apply(10, 110.0);
        assert_eq!((p.qty, p.avg_price), (20, 105.0));
        p.apply(-5, 115.0);
        assert_eq!(p.qty, 15);
        assert!((p.realized - 50.0).abs() < 1e-9);
        p.apply(-25, 100.0); // flip short
        assert_eq!(p.qty, -10);
        assert_eq!(p.avg_price, 100.0);
        assert!((p.realized - (50.0 - 75.0)).abs() < 1e-9);
    }
}
