//! Prometheus `/metrics`: request latency histogram, errors, orders, fills, ticks, in-flight.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteCodeLabel {
    pub route: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: String,
}

impl StatusLabel {
    pub fn new(s: &str) -> Self {
        StatusLabel { status: s.into() }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FeedLabel {
    pub feed: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StrategyLabel {
    pub strategy: String,
}

pub struct Metrics {
    pub registry: Registry,
    pub latency: Family<RouteLabel, Histogram>,
    pub requests: Family<RouteCodeLabel, Counter>,
    pub errors: Family<RouteLabel, Counter>,
    pub orders: Family<StatusLabel, Counter>,
    pub fills: Counter,
    pub volume: Counter,
    pub ticks: Family<FeedLabel, Counter>,
    pub inflight: Gauge,
    pub open_orders: Gauge,
    /// Set at scrape time: P&L of every account at current marks.
    pub pnl: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// P&L each trading strategy has made since the process started.
    pub strategy_pnl: Family<StrategyLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub cpu_seconds: Counter<f64, std::sync::atomic::AtomicU64>,
    cpu_last: std::sync::Mutex<f64>,
    pub resident_bytes: Gauge,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        // 50 µs … ~26 s, doubling: resolves loopback latencies and multi-second stalls alike.
        let latency = Family::<RouteLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.00005, 2.0, 20))
        });
        let requests = Family::<RouteCodeLabel, Counter>::default();
        let errors = Family::<RouteLabel, Counter>::default();
        let orders = Family::<StatusLabel, Counter>::default();
        let fills = Counter::default();
        let volume = Counter::default();
        let ticks = Family::<FeedLabel, Counter>::default();
        let inflight = Gauge::default();
        let open_orders = Gauge::default();
        let pnl = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        let strategy_pnl =
            Family::<StrategyLabel, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        let cpu_seconds = Counter::<f64, std::sync::atomic::AtomicU64>::default();
        let resident_bytes = Gauge::default();
        registry.register(
            "http_request_duration_seconds",
            "Request latency by route",
            latency.clone(),
        );
        registry.register(
            "http_requests",
            "Requests by route and status code",
            requests.clone(),
        );
        registry.register(
            "http_request_errors",
            "5xx answers by route",
            errors.clone(),
        );
        registry.register(
            "orders",
            "Orders by outcome (accepted, rejected)",
            orders.clone(),
        );
        registry.register("fills", "Order fills", fills.clone());
        registry.register("traded_quantity", "Filled quantity", volume.clone());
        registry.register(
            "ticks",
            "Market data ticks published, by feed",
            ticks.clone(),
        );
        registry.register(
            "inflight_requests",
            "Requests being served",
            inflight.clone(),
        );
        registry.register("open_orders", "Resting orders", open_orders.clone());
        registry.register(
            "trading_pnl",
            "P&L of every account at current marks",
            pnl.clone(),
        );
        registry.register(
            "trading_strategy_pnl",
            "P&L made by each trading strategy",
            strategy_pnl.clone(),
        );
        // Process metrics the way Prometheus client libraries name them (read from /proc).
        registry.register(
            "process_cpu_seconds",
            "User and system CPU time spent",
            cpu_seconds.clone(),
        );
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory size",
            resident_bytes.clone(),
        );
        Metrics {
            registry,
            latency,
            requests,
            errors,
            orders,
            fills,
            volume,
            ticks,
            inflight,
            open_orders,
            pnl,
            strategy_pnl,
            cpu_seconds,
            cpu_last: std::sync::Mutex::new(0.0),
            resident_bytes,
        }
    }

    /// Refresh the process gauges from /proc (Linux); silently skipped elsewhere.
    pub fn refresh_process(&self) {
        if let Ok(statm) = std::fs::read_to_string("/proc/self/statm")
            && let Some(pages) = statm
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<i64>().ok())
        {
            self.resident_bytes.set(pages * 4096);
        }
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat")
            && let Some(rest) = stat.rsplit(')').next()
        {
            let f: Vec<&str> = rest.split_whitespace().collect();
            // Fields 14 and 15 (utime, stime) are the 12th and 13th after the command name.
            if let (Some(u), Some(s)) = (
                f.get(11).and_then(|x| x.parse::<f64>().ok()),
                f.get(12).and_then(|x| x.parse::<f64>().ok()),
            ) {
                // A counter only moves forward: add what was used since the last scrape.
                let now = (u + s) / 100.0;
                let mut last = self.cpu_last.lock().unwrap_or_else(|e| e.into_inner());
                if now > *last {
                    self.cpu_seconds.inc_by(now - *last);
                    *last = now;
                }
            }
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("encode to String");
        out
    }
}
