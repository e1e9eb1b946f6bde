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
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("encode to String");
        out
    }
}
