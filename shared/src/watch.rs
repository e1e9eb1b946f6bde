//! Watching a colour after a change (cutover's watch, strategy_rollout's holds): health every
//! tick, the services' own counters sampled into figures, and compare_metrics' judge against a
//! baseline. One loop for every watcher, so the rules hold everywhere:
//! - absolute limits (error rate ≤ 1 %, mean latency ≤ a ceiling, health) are judged on the
//!   current window alone, whatever the baseline holds;
//! - the new colour carrying far less business traffic than the old one did is a failure;
//! - a metric still inconclusive when the window ends extends it (up to
//!   `thresholds.inconclusive_extend`), then its `on_inconclusive` policy decides, and every
//!   metric that never became conclusive is named in the result.

use crate::config::{
    Color, Direction, Environment, MetricKind, MetricSpec, OnInconclusive, OnMissing,
};
use crate::contract::{Client, MetricTotals as Totals};
use crate::fleet::{Ctx, health};
use crate::http::HttpError;
use crate::metrics::{self, Figures, Outcome, Verdict};
use crate::telemetry::Every;
use serde::Serialize;
use std::time::{Duration, Instant};

/// Every client's counters (asked at once) and their sum.
async fn totals(clients: &[Client]) -> std::result::Result<(Totals, Vec<Totals>), HttpError> {
    let each = futures_util::future::join_all(clients.iter().map(|c| c.metric_totals())).await;
    let mut sum = Totals::default();
    let mut per = vec![];
    for t in each {
        let t = t?;
        sum.add(&t);
        per.push(t);
    }
    Ok((sum, per))
}

/// Samples one colour every tick: error proportion, business throughput and per-tick mean
/// latency, fill rate, risk rejections and the strategies' P&L trend.
pub struct Figurer {
    clients: Vec<Client>,
    /// Each client's counters when the watch started, and now: which server went bad.
    per_first: Vec<Totals>,
    per_last: Vec<Totals>,
    first: Totals,
    last: Totals,
    latency: Vec<f64>,
    throughput: Vec<f64>,
    fill_rate: Vec<f64>,
    /// Strategies' P&L lost per minute, per tick (negative when they earn).
    strategy_loss: Vec<f64>,
    /// Consecutive ticks with requests in flight and none completed, and the in-flight count.
    stalled: (usize, f64),
    last_at: Instant,
}

impl Figurer {
    pub async fn start(clients: Vec<Client>) -> std::result::Result<Figurer, HttpError> {
        let (t, per) = totals(&clients).await?;
        Ok(Figurer::from(clients, t, per))
    }

    fn from(clients: Vec<Client>, t: Totals, per: Vec<Totals>) -> Figurer {
        Figurer {
            clients,
            per_first: per.clone(),
            per_last: per,
            first: t,
            last: t,
            latency: vec![],
            throughput: vec![],
            fill_rate: vec![],
            strategy_loss: vec![],
            stalled: (0, 0.0),
            last_at: Instant::now(),
        }
    }

    pub async fn sample(&mut self) -> std::result::Result<(), HttpError> {
        let (t, per) = totals(&self.clients).await?;
        self.per_last = per;
        let (dn, ds) = (
            t.latency_count - self.last.latency_count,
            t.latency_sum - self.last.latency_sum,
        );
        if dn > 0.0 {
            self.latency.push(ds / dn);
        }
        let da = t.accepted - self.last.accepted;
        if da > 0.0 {
            self.fill_rate.push((t.fills - self.last.fills) / da);
        }
        let dt = self.last_at.elapsed().as_secs_f64();
        if dt > 0.0 {
            // Completed business requests per second: a stalled colour completes none.
            self.throughput
                .push(((t.requests - self.last.requests) / dt).max(0.0));
            self.strategy_loss
                .push(-(t.strategy_pnl - self.last.strategy_pnl) / dt * 60.0);
        }
        // Requests arrive (in flight) but none completes: a stall, whatever the baseline held.
        self.stalled = if t.inflight > 0.0 && t.requests <= self.last.requests {
            (self.stalled.0 + 1, t.inflight)
        } else {
            (0, 0.0)
        };
        self.last_at = Instant::now();
        self.last = t;
        Ok(())
    }

    /// With more than one server, the one that stands out on `metric` since the watch began
    /// (highest error proportion, mean latency or requests in flight; lowest fill rate): its
    /// base URL and its figure beside the others' best.
    pub fn worst(&self, metric: &str) -> Option<(String, String)> {
        if self.clients.len() < 2 {
            return None;
        }
        let figure = |f: &Totals, l: &Totals| -> Option<f64> {
            let d = |a: f64, b: f64| b - a;
            match metric {
                "error_rate" => {
                    let n = d(f.requests, l.requests);
                    (n > 0.0).then(|| d(f.errors, l.errors) / n * 100.0)
                }
                "fill_rate" => {
                    let n = d(f.accepted, l.accepted);
                    (n > 0.0).then(|| -(d(f.fills, l.fills) / n))
                }
                "throughput" => Some(l.inflight),
                m if m.contains("latency") => {
                    let n = d(f.latency_count, l.latency_count);
                    (n > 0.0).then(|| d(f.latency_sum, l.latency_sum) / n * 1000.0)
                }
                _ => None,
            }
        };
        let figs: Vec<(usize, f64)> = self
            .per_first
            .iter()
            .zip(&self.per_last)
            .enumerate()
            .filter_map(|(i, (f, l))| figure(f, l).map(|x| (i, x)))
            .collect();
        let (wi, wx) = figs.iter().copied().max_by(|a, b| a.1.total_cmp(&b.1))?;
        let others = figs
            .iter()
            .filter(|(i, _)| *i != wi)
            .map(|(_, x)| *x)
            .min_by(|a, b| a.total_cmp(b))?;
        if wx <= others {
            return None;
        }
        let show = |x: f64| match metric {
            "error_rate" => format!("{x:.1} % errors"),
            "fill_rate" => format!("fill rate {:.2}", -x),
            "throughput" => format!("{x:.0} request(s) in flight"),
            _ => format!("{x:.1} ms mean latency"),
        };
        Some((
            self.clients[wi].base().to_string(),
            format!("{} (the others: from {})", show(wx), show(others)),
        ))
    }

    /// `(ticks, in flight)` when requests have been stuck for `MIN_SAMPLES` ticks in a row.
    pub fn stalled(&self) -> Option<(usize, f64)> {
        (self.stalled.0 >= MIN_SAMPLES).then_some(self.stalled)
    }

    pub fn snapshot(&self) -> metrics::Snapshot {
        let series = |v: &Vec<f64>| Figures::Series { samples: v.clone() };
        let m = [
            (
                "error_rate",
                Figures::Proportion {
                    events: self.last.errors - self.first.errors,
                    trials: self.last.requests - self.first.requests,
                },
            ),
            ("throughput", series(&self.throughput)),
            ("mean_latency", series(&self.latency)),
            ("fill_rate", series(&self.fill_rate)),
            ("strategy_loss_per_min", series(&self.strategy_loss)),
            (
                "risk_rejections",
                Figures::Proportion {
                    events: self.last.rejected - self.first.rejected,
                    trials: (self.last.accepted + self.last.rejected)
                        - (self.first.accepted + self.first.rejected),
                },
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        metrics::Snapshot {
            format: 1,
            window: metrics::Window {
                start: 0.0,
                end: 0.0,
                step: 0.0,
            },
            metrics: m,
        }
    }
}

/// The watch's metrics, judged by compare_metrics' judge:
/// - error rate: ≤ ratio × baseline, and never above 1 % (judged without a baseline too);
/// - throughput: the new colour completes at least `min_traffic_pct` of the business requests
///   per second the old one did (1 req/s noise floor, so a quiet 6 am is not a failure);
/// - mean latency: ≤ the alert spike over baseline, never above `max_mean_latency_ms`;
/// - fill rate ≥ −10 %; risk rejections ≤ 2× baseline and never above 5 % of orders;
/// - the strategies' P&L trend: loss per minute ≤ `max_strategy_loss_per_min`.
///
/// Inconclusive: error rate and throughput fail closed; the others pass and are listed;
/// `thresholds.on_inconclusive` overrides either per metric.
/// The metrics every watch and hold judges (`thresholds.on_inconclusive` keys must be these).
pub const WATCH_METRICS: &[&str] = &[
    "error_rate",
    "throughput",
    "mean_latency",
    "fill_rate",
    "risk_rejections",
    "strategy_loss_per_min",
];

pub fn watch_specs(env: &Environment) -> Vec<MetricSpec> {
    let t = &env.thresholds;
    let base = |name: &str, kind, direction, tol: f64, max: Option<f64>| MetricSpec {
        name: name.into(),
        kind,
        query: None,
        events: None,
        trials: None,
        direction,
        tolerance_pct: tol,
        max,
        min: None,
        min_abs_delta: None,
        min_samples: MIN_SAMPLES,
        on_empty: OnMissing::Inconclusive,
        on_nan: OnMissing::Inconclusive,
        on_error: OnMissing::Fail,
        on_inconclusive: match name {
            "error_rate" | "throughput" => OnInconclusive::Fail,
            _ => OnInconclusive::Pass,
        },
    };
    let mut specs = vec![
        base(
            "error_rate",
            MetricKind::Proportion,
            Direction::Lower,
            (t.error_rate_max_ratio.0 - 1.0) * 100.0,
            Some(t.max_error_rate_pct.0 / 100.0),
        ),
        MetricSpec {
            min_abs_delta: Some(1.0),
            ..base(
                "throughput",
                MetricKind::Series,
                Direction::Higher,
                100.0 - t.min_traffic_pct.0,
                None,
            )
        },
        MetricSpec {
            // Loopback and LAN latencies are fractions of a millisecond: below 1 ms of change a
            // percentage is scheduling noise, not a regression anyone would roll back for.
            min_abs_delta: Some(0.001),
            ..base(
                "mean_latency",
                MetricKind::Series,
                Direction::Lower,
                t.alert_latency_spike_pct.0,
                Some(t.max_mean_latency_ms.0 / 1000.0),
            )
        },
        MetricSpec {
            min: t.min_fill_rate.map(|m| m.0),
            ..base(
                "fill_rate",
                MetricKind::Series,
                Direction::Higher,
                10.0,
                None,
            )
        },
        base(
            "risk_rejections",
            MetricKind::Proportion,
            Direction::Lower,
            100.0,
            Some(0.05),
        ),
        // P&L trend: a strategy's P&L against a baseline near zero has no meaningful relative
        // change, so only the absolute ceiling on the loss rate decides.
        base(
            "strategy_loss_per_min",
            MetricKind::Series,
            Direction::Lower,
            f64::INFINITY,
            Some(t.max_strategy_loss_per_min.0),
        ),
    ];
    for s in &mut specs {
        if let Some(p) = t.on_inconclusive.get(&s.name) {
            s.on_inconclusive = *p;
        }
    }
    specs
}

/// Samples every watch metric needs before it can be judged against a baseline.
pub const MIN_SAMPLES: usize = 4;

/// A baseline window must hold enough ticks for the judge: a shorter one would make every
/// relative check inconclusive and the watch fail closed, so it is refused before anything
/// changes (exit 2).
pub fn check_baseline_window(window: Duration, tick: Duration) -> crate::error::Result<()> {
    let need = tick * MIN_SAMPLES as u32;
    if window < need {
        return Err(crate::error::Error::Usage(format!(
            "--baseline-window {window:?} holds fewer than {MIN_SAMPLES} samples at --tick {tick:?}: use at least {need:?}"
        )));
    }
    Ok(())
}

/// The figures of a window in which nothing was seen: the watch then judges by the absolute
/// limits alone (a resumed run whose journal holds no baseline).
pub fn no_baseline() -> metrics::Snapshot {
    Figurer::from(vec![], Totals::default(), vec![]).snapshot()
}

/// `color` sampled for `window` (the old colour just before a change): the watch's baseline.
pub async fn baseline(
    clients: Vec<Client>,
    window: Duration,
    tick: Duration,
) -> std::result::Result<metrics::Snapshot, HttpError> {
    let mut fig = Figurer::start(clients).await?;
    let start = Instant::now();
    while start.elapsed() < window {
        tokio::time::sleep(tick).await;
        fig.sample().await?;
    }
    Ok(fig.snapshot())
}

/// Why a watch failed.
#[derive(Debug)]
pub enum Failed {
    /// A health check failed.
    Unhealthy(String),
    /// A metric failed (or stayed inconclusive under a fail-closed policy).
    Regressed(String),
    /// The colour's counters could not be read.
    Unreadable(String),
    Interrupted,
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failed::Unhealthy(m) | Failed::Regressed(m) | Failed::Unreadable(m) => f.write_str(m),
            Failed::Interrupted => f.write_str("interrupted during the watch"),
        }
    }
}

/// A passed watch: the last verdicts, how long it ran, and what never became conclusive.
#[derive(Debug, Serialize)]
pub struct Watched {
    pub verdicts: Vec<Verdict>,
    pub watched_ms: u64,
    pub extended_ms: u64,
    /// Metrics that never became conclusive and passed by their `on_inconclusive = "pass"`.
    pub never_conclusive: Vec<String>,
}

impl Watched {
    /// One line: every metric's verdict, and the ones accepted without a conclusion.
    pub fn summary(&self) -> String {
        let mut s = self
            .verdicts
            .iter()
            .map(|v| format!("{}: {}", v.metric, v.why))
            .collect::<Vec<_>>()
            .join("; ");
        if self.extended_ms > 0 {
            s.push_str(&format!(
                "; window extended by {} ms for inconclusive metrics",
                self.extended_ms
            ));
        }
        if !self.never_conclusive.is_empty() {
            s.push_str(&format!(
                "; never conclusive (accepted by policy): {}",
                self.never_conclusive.join(", ")
            ));
        }
        s
    }
}

/// Watch `color` for `window` against `baseline`: health and the judge every tick, a progress
/// line at least every 5 s (`label` names the watcher). Extends the window while a fail-closed
/// metric is inconclusive, up to `thresholds.inconclusive_extend`.
pub async fn observe(
    ctx: &Ctx,
    color: Color,
    clients: Vec<Client>,
    baseline: &metrics::Snapshot,
    window: Duration,
    tick: Duration,
    label: &str,
) -> std::result::Result<Watched, Failed> {
    let specs = watch_specs(&ctx.env);
    let extend = ctx.env.thresholds.inconclusive_extend.0;
    let start = Instant::now();
    let mut fig = Figurer::start(clients)
        .await
        .map_err(|e| Failed::Unreadable(format!("cannot read {color}'s metrics: {e}")))?;
    // Jenkins (no terminal) gets a line every 4 s so that, with the tick on top, one comes at
    // least every 5 s.
    let mut note = Every::new(Duration::from_secs(if crate::output::terminal().stderr {
        5
    } else {
        4
    }));
    let mut verdicts: Vec<Verdict> = vec![];
    let mut extended_at: Option<Instant> = None;
    let undecided = |verdicts: &[Verdict], policy: OnInconclusive| -> Vec<String> {
        verdicts
            .iter()
            .zip(&specs)
            .filter(|(v, s)| v.outcome == Outcome::Inconclusive && s.on_inconclusive == policy)
            .map(|(v, _)| v.metric.clone())
            .collect()
    };
    loop {
        let elapsed = start.elapsed();
        if elapsed >= window {
            let blocking = undecided(&verdicts, OnInconclusive::Fail);
            if !verdicts.is_empty() && blocking.is_empty() {
                break;
            }
            extended_at.get_or_insert_with(Instant::now);
            if elapsed >= window + extend {
                let why = verdicts
                    .iter()
                    .filter(|v| blocking.contains(&v.metric))
                    .map(|v| format!("{}: {}", v.metric, v.why))
                    .collect::<Vec<_>>()
                    .join("; ");
                return Err(Failed::Regressed(format!(
                    "never conclusive after {} ms (fail-closed): {why}",
                    elapsed.as_millis()
                )));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = ctx.cancel.cancelled() => return Err(Failed::Interrupted),
        }
        health(ctx, color, None)
            .await
            .map_err(|e| Failed::Unhealthy(format!("{color} unhealthy during the {label}: {e}")))?;
        fig.sample()
            .await
            .map_err(|e| Failed::Unreadable(format!("cannot read {color}'s metrics: {e}")))?;
        verdicts = metrics::judge_all(&specs, baseline, &fig.snapshot());
        if let Some((ticks, inflight)) = fig.stalled()
            && let Some(v) = verdicts.iter_mut().find(|v| v.metric == "throughput")
        {
            v.outcome = Outcome::Fail;
            v.why = format!(
                "{inflight:.0} request(s) in flight and none completed for {ticks} ticks: stalled"
            );
        }
        if let Some(bad) = verdicts.iter().find(|v| v.outcome == Outcome::Fail) {
            // Name the server that stands out, by its fleet name.
            let server = fig.worst(&bad.metric).map(|(url, fig)| {
                let name = ctx
                    .fleet
                    .all()
                    .into_iter()
                    .find(|s| s.url == url && s.color == color)
                    .map_or(url.clone(), |s| s.name.clone());
                format!("; worst server: {name} at {fig}")
            });
            return Err(Failed::Regressed(format!(
                "{} regressed after {} ms: {}{}",
                bad.metric,
                start.elapsed().as_millis(),
                bad.why,
                server.unwrap_or_default()
            )));
        }
        if note.due() {
            let extra = if extended_at.is_some() {
                format!(
                    " (extended: waiting for {})",
                    undecided(&verdicts, OnInconclusive::Fail).join(", ")
                )
            } else {
                String::new()
            };
            tracing::info!(
                "{label} {}s/{}s{extra}: {color} healthy; {}",
                start.elapsed().as_secs(),
                window.as_secs(),
                metrics::outcomes_line(&verdicts)
            );
        }
    }
    Ok(Watched {
        never_conclusive: undecided(&verdicts, OnInconclusive::Pass),
        verdicts,
        watched_ms: start.elapsed().as_millis() as u64,
        extended_ms: extended_at.map_or(0, |t| t.elapsed().as_millis() as u64),
    })
}

#[cfg(test)]
mod tests {
    /// The list config validation checks keys against is exactly what the watch judges.
    #[test]
    fn watch_metrics_name_every_spec() {
        let env: crate::config::Environment = toml::from_str("").expect("empty environment");
        let names: Vec<String> = super::watch_specs(&env)
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, super::WATCH_METRICS);
    }
}
