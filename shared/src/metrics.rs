//! The metric judge: baseline vs current from a real Prometheus, with the numbers that decided
//! every verdict. compare_metrics and cutover's watch both call [`judge`]; there is no second
//! judge. NaN, empty and provider errors fail closed unless a metric's config says otherwise.

use crate::config::{Direction, Environment, MetricKind, MetricSpec, OnInconclusive, OnMissing};
use crate::error::{Error, Result};
use crate::http::Http;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Business routes only: probes and admin calls are not the traffic we judge.
const BUSINESS: &str = r#"route!~"/health|/metrics|/admin.*|/sim.*""#;

/// The guide's defaults for services speaking the contract's metrics.
pub fn default_specs(env: &Environment) -> Vec<MetricSpec> {
    let t = &env.thresholds;
    let spec = |name: &str,
                kind,
                query: Option<String>,
                events: Option<String>,
                trials: Option<String>,
                direction,
                tol: f64| MetricSpec {
        name: name.into(),
        kind,
        query,
        events,
        trials,
        direction,
        tolerance_pct: tol,
        max: None,
        min: None,
        min_abs_delta: None,
        min_samples: 5,
        on_empty: OnMissing::Fail,
        on_nan: OnMissing::Fail,
        on_error: OnMissing::Fail,
        on_inconclusive: OnInconclusive::Fail,
    };
    vec![
        MetricSpec {
            // Judged without a baseline too: an idle baseline window never hides errors.
            max: Some(t.max_error_rate_pct.0 / 100.0),
            ..spec(
                "error_rate",
                MetricKind::Proportion,
                None,
                Some(format!(
                    "sum(increase(http_request_errors_total{{{BUSINESS}}}[$__range])) or vector(0)"
                )),
                Some(format!(
                    "sum(increase(http_requests_total{{{BUSINESS}}}[$__range]))"
                )),
                Direction::Lower,
                (t.error_rate_max_ratio.0 - 1.0) * 100.0,
            )
        },
        MetricSpec {
            // Below 1 ms of change a percentage of a sub-millisecond p99 is noise (decision 0008).
            min_abs_delta: Some(0.001),
            max: Some(t.max_p99_latency_ms.0 / 1000.0),
            ..spec(
                "p99_latency",
                MetricKind::Series,
                Some(format!(
                    "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{{{BUSINESS}}}[1m])))"
                )),
                None,
                None,
                Direction::Lower,
                t.latency_increase_pct.0,
            )
        },
        // More traffic or volume than the baseline is not a regression; a drop is.
        spec(
            "throughput",
            MetricKind::Series,
            Some(format!("sum(rate(http_requests_total{{{BUSINESS}}}[1m]))")),
            None,
            None,
            Direction::Higher,
            20.0,
        ),
        MetricSpec {
            min: t.min_fill_rate.map(|m| m.0),
            ..spec(
                "fill_rate",
                MetricKind::Series,
                Some(
                    r#"sum(rate(fills_total[1m])) / sum(rate(orders_total{status="accepted"}[1m]))"#
                        .into(),
                ),
                None,
                None,
                Direction::Higher,
                10.0,
            )
        },
        spec(
            "trading_volume",
            MetricKind::Series,
            Some("sum(rate(traded_quantity_total[1m]))".into()),
            None,
            None,
            Direction::Higher,
            30.0,
        ),
    ]
}

/// A time window `[start, end]` sampled every `step` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub start: f64,
    pub end: f64,
    pub step: f64,
}

/// Figures of one metric over one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Figures {
    Series {
        /// NaN (Prometheus' answer for an empty histogram) is written as `null`, read back as NaN.
        #[serde(deserialize_with = "nan_from_null")]
        samples: Vec<f64>,
    },
    Proportion {
        events: f64,
        trials: f64,
    },
    /// The provider failed for this metric.
    Error {
        message: String,
    },
}

fn nan_from_null<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Vec<f64>, D::Error> {
    let v: Vec<Option<f64>> = Deserialize::deserialize(d)?;
    Ok(v.into_iter().map(|x| x.unwrap_or(f64::NAN)).collect())
}

/// Every metric's figures over one window: what `--save` writes and `--baseline FILE` reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    pub format: u32,
    pub window: Window,
    pub metrics: BTreeMap<String, Figures>,
}

crate::failure!(
    /// Why a snapshot cannot be judged: a figures file no window could have produced.
    InvalidSnapshot
);

impl Snapshot {
    /// Refuses what no window can hold: infinite samples, counts that are not finite, negative
    /// counts, more events than trials, a window that ends before it starts.
    pub fn validate(&self) -> std::result::Result<(), InvalidSnapshot> {
        let w = &self.window;
        if !(w.start.is_finite() && w.end.is_finite() && w.step.is_finite())
            || w.end < w.start
            || w.step < 0.0
        {
            return Err(format!(
                "window {} → {} step {} is impossible",
                w.start, w.end, w.step
            )
            .into());
        }
        for (name, f) in &self.metrics {
            match f {
                Figures::Series { samples } => {
                    if let Some(x) = samples.iter().find(|x| x.is_infinite()) {
                        return Err(format!("{name}: sample {x} is not a finite number").into());
                    }
                }
                Figures::Proportion { events, trials } => {
                    if !(events.is_finite() && trials.is_finite()) {
                        return Err(format!("{name}: counts must be finite numbers").into());
                    }
                    if *events < 0.0 || *trials < 0.0 {
                        return Err(format!(
                            "{name}: negative counts ({events} events, {trials} trials)"
                        )
                        .into());
                    }
                    if events > trials {
                        return Err(format!(
                            "{name}: {events} events out of {trials} trials (events must be ≤ trials)"
                        ).into());
                    }
                }
                Figures::Error { .. } => {}
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail,
    Inconclusive,
}

/// A verdict and the numbers that decided it.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub metric: String,
    pub outcome: Outcome,
    pub why: String,
    pub baseline: Option<f64>,
    pub current: Option<f64>,
    pub delta_pct: Option<f64>,
    pub limit: String,
    pub n_baseline: usize,
    pub n_current: usize,
    pub p_value: Option<f64>,
}

// ---------------------------------------------------------------- statistics

/// Standard normal CDF (Abramowitz–Stegun 7.1.26 on erf; |error| < 1.5e-7).
pub fn normal_cdf(z: f64) -> f64 {
    let x = z.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.3275911 * x);
    let y = 1.0
        - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t
            + 0.254829592)
            * t
            * (-x * x).exp();
    if z >= 0.0 {
        0.5 * (1.0 + y)
    } else {
        0.5 * (1.0 - y)
    }
}

/// Mann-Whitney U of `b` (current) over `a` (baseline) with tie-corrected normal
/// approximation. Returns (U, z): z > 0 means current tends to be larger.
pub fn mann_whitney(a: &[f64], b: &[f64]) -> (f64, f64) {
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    let mut all: Vec<(f64, usize)> = a
        .iter()
        .map(|x| (*x, 0))
        .chain(b.iter().map(|x| (*x, 1)))
        .collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    let mut ranks = vec![0.0; all.len()];
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for rank in ranks.iter_mut().take(j + 1).skip(i) {
            *rank = r;
        }
        let t = (j - i + 1) as f64;
        tie_term += t * t * t - t;
        i = j + 1;
    }
    let r2: f64 = all
        .iter()
        .zip(&ranks)
        .filter(|((_, g), _)| *g == 1)
        .map(|(_, r)| r)
        .sum();
    let u2 = r2 - n2 * (n2 + 1.0) / 2.0;
    let n = n1 + n2;
    let var = n1 * n2 / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)));
    let z = if var > 0.0 {
        (u2 - n1 * n2 / 2.0) / var.sqrt()
    } else {
        0.0
    };
    (u2, z)
}

pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        // Halves first: the sum of two values near f64::MAX overflows.
        s[n / 2 - 1] / 2.0 + s[n / 2] / 2.0
    }
}

/// Significance level of the tests (one-sided).
const ALPHA: f64 = 0.02;

fn missing(spec: &MetricSpec, rule: OnMissing, why: String) -> Verdict {
    Verdict {
        metric: spec.name.clone(),
        outcome: match rule {
            OnMissing::Fail => Outcome::Fail,
            OnMissing::Inconclusive => Outcome::Inconclusive,
            OnMissing::Pass => Outcome::Pass,
        },
        why,
        baseline: None,
        current: None,
        delta_pct: None,
        limit: limit_text(spec),
        n_baseline: 0,
        n_current: 0,
        p_value: None,
    }
}

fn limit_text(spec: &MetricSpec) -> String {
    // No relative limit: only the absolute limits decide.
    if spec.tolerance_pct.is_infinite()
        && let Some(a) = absolute_limits(spec)
    {
        return a;
    }
    let rel = match (spec.kind, spec.direction) {
        (MetricKind::Proportion, _) => {
            format!("≤ {:.2}× baseline", 1.0 + spec.tolerance_pct / 100.0)
        }
        (_, Direction::Lower) => format!("≤ +{}%", spec.tolerance_pct),
        (_, Direction::Higher) => format!("≥ −{}%", spec.tolerance_pct),
        (_, Direction::Either) => format!("±{}%", spec.tolerance_pct),
    };
    match absolute_limits(spec) {
        Some(a) => format!("{rel}, {a}"),
        None => rel,
    }
}

/// `error_rate Pass, mean_latency Fail, …`: one progress line's worth of verdicts.
pub fn outcomes_line(verdicts: &[Verdict]) -> String {
    verdicts
        .iter()
        .map(|v| format!("{} {:?}", v.metric, v.outcome))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Judge one metric: the numbers and the decision.
pub fn judge(spec: &MetricSpec, baseline: &Figures, current: &Figures) -> Verdict {
    match (baseline, current) {
        (Figures::Error { message }, _) => missing(
            spec,
            spec.on_error,
            format!("baseline query failed: {message}"),
        ),
        (_, Figures::Error { message }) => missing(
            spec,
            spec.on_error,
            format!("current query failed: {message}"),
        ),
        (Figures::Series { samples: b }, Figures::Series { samples: c }) => {
            judge_series(spec, b, c)
        }
        (
            Figures::Proportion {
                events: eb,
                trials: nb,
            },
            Figures::Proportion {
                events: ec,
                trials: nc,
            },
        ) => judge_proportion(spec, *eb, *nb, *ec, *nc),
        _ => missing(
            spec,
            spec.on_error,
            "baseline and current are of different kinds (a saved file from another metric set?)"
                .into(),
        ),
    }
}

fn judge_series(spec: &MetricSpec, b: &[f64], c: &[f64]) -> Verdict {
    let nan = |v: &[f64]| !v.is_empty() && v.iter().all(|x| !x.is_finite());
    let (bf, cf): (Vec<f64>, Vec<f64>) = (
        b.iter().copied().filter(|x| x.is_finite()).collect(),
        c.iter().copied().filter(|x| x.is_finite()).collect(),
    );
    let with_counts = |mut v: Verdict| {
        v.n_baseline = bf.len();
        v.n_current = cf.len();
        if !bf.is_empty() {
            v.baseline = Some(median(&bf));
        }
        if !cf.is_empty() {
            v.current = Some(median(&cf));
        }
        v
    };
    // Absolute limits need no baseline: they are judged on the current window alone, whatever
    // the baseline holds (a fault is always caught, also after an idle baseline window).
    if cf.len() >= spec.min_samples.min(3) {
        let mc = median(&cf);
        if let Some(why) = outside_limits(spec, mc) {
            return with_counts(missing(spec, OnMissing::Fail, why));
        }
    }
    if nan(c) {
        return with_counts(missing(
            spec,
            spec.on_nan,
            format!("only NaN samples in the current window ({})", c.len()),
        ));
    }
    if cf.len() < spec.min_samples {
        return with_counts(missing(
            spec,
            spec.on_empty,
            format!(
                "not enough data: {} baseline and {} current samples (need {})",
                bf.len(),
                cf.len(),
                spec.min_samples
            ),
        ));
    }
    if bf.len() < spec.min_samples {
        // An idle or unreadable baseline falls back to the absolute limits, and says so.
        let rule = if nan(b) { spec.on_nan } else { spec.on_empty };
        let why = format!(
            "baseline has {} usable samples (need {})",
            bf.len(),
            spec.min_samples
        );
        return with_counts(match absolute_limits(spec) {
            Some(lim) => missing(
                spec,
                OnMissing::Pass,
                format!(
                    "{why}: judged by the absolute limit alone, current {} within {lim}",
                    num(median(&cf))
                ),
            ),
            None => missing(
                spec,
                without_reference(rule),
                format!("not enough data: {why}, and no absolute limit to judge by"),
            ),
        });
    }
    let (mb, mc) = (median(&bf), median(&cf));
    let delta = if mb.abs() > f64::EPSILON {
        (mc - mb) / mb.abs() * 100.0
    } else if mc.abs() > f64::EPSILON {
        f64::INFINITY * mc.signum()
    } else {
        0.0
    };
    let moved = moved_text(mb, mc, delta);
    let (_, z) = mann_whitney(&bf, &cf);
    let tol = spec.tolerance_pct;
    // Worse by more than the tolerance, and not by chance.
    let (bad_effect, p) = match spec.direction {
        Direction::Lower => (delta > tol, 1.0 - normal_cdf(z)),
        Direction::Higher => (delta < -tol, normal_cdf(z)),
        Direction::Either => (delta.abs() > tol, 2.0 * (1.0 - normal_cdf(z.abs()))),
    };
    let below_floor = spec.min_abs_delta.filter(|f| (mc - mb).abs() <= *f);
    let (outcome, why) = if let (true, Some(f)) = (bad_effect, below_floor) {
        (
            Outcome::Pass,
            format!(
                "median {moved} but only {} in absolute terms (noise floor {f})",
                num((mc - mb).abs())
            ),
        )
    } else if bad_effect && p < ALPHA {
        (
            Outcome::Fail,
            format!(
                "median {moved} (limit {}), significant (Mann-Whitney p={p:.4})",
                limit_text(spec)
            ),
        )
    } else if bad_effect {
        (
            Outcome::Pass,
            format!("median {moved} but the samples do not differ significantly (p={p:.3})"),
        )
    } else {
        (
            Outcome::Pass,
            format!("median {moved}, within {}", limit_text(spec)),
        )
    };
    Verdict {
        metric: spec.name.clone(),
        outcome,
        why,
        baseline: Some(mb),
        current: Some(mc),
        delta_pct: Some(delta).filter(|d| d.is_finite()),
        limit: limit_text(spec),
        n_baseline: bf.len(),
        n_current: cf.len(),
        p_value: Some(p),
    }
}

/// A number as a person reads it: 4 significant decimals, no exponent for ordinary values.
fn num(x: f64) -> String {
    if x != 0.0 && (x.abs() >= 1e9 || x.abs() < 1e-4) {
        format!("{x:.3e}")
    } else {
        format!("{x:.4}")
    }
}

/// `moved from 0.0120 to 0.0150 (+25.0%)`, baseline first; a zero baseline reads "from 0".
fn moved_text(b: f64, c: f64, delta: f64) -> String {
    if delta.is_finite() {
        format!("moved from {} to {} ({delta:+.1}%)", num(b), num(c))
    } else {
        format!("moved from 0 to {}", num(c))
    }
}

/// What a missing baseline means when no absolute limit can judge instead: nothing to compare
/// with, so a human decides (inconclusive) — never a pass unless the metric says missing data
/// passes, and never a regression of the current window.
fn without_reference(rule: OnMissing) -> OnMissing {
    match rule {
        OnMissing::Pass => OnMissing::Pass,
        _ => OnMissing::Inconclusive,
    }
}

/// The absolute limits of a spec as text, when it has any.
fn absolute_limits(spec: &MetricSpec) -> Option<String> {
    match (spec.min, spec.max) {
        (None, None) => None,
        (Some(lo), None) => Some(format!("≥ {lo}")),
        (None, Some(hi)) => Some(format!("≤ {hi}")),
        (Some(lo), Some(hi)) => Some(format!("{lo} … {hi}")),
    }
}

/// Why `current` breaks an absolute limit of `spec`, if it does.
fn outside_limits(spec: &MetricSpec, current: f64) -> Option<String> {
    if let Some(m) = spec.max.filter(|m| current > *m) {
        return Some(format!("current {} is above the ceiling {m}", num(current)));
    }
    if let Some(m) = spec.min.filter(|m| current < *m) {
        return Some(format!("current {} is below the floor {m}", num(current)));
    }
    None
}

/// P(X ≥ k) for X ~ Binomial(n, p): how likely `k` events in `n` trials are if the true rate
/// were `p`. Exact for small variances, normal approximation (with continuity) above.
pub fn binomial_sf(k: f64, n: f64, p: f64) -> f64 {
    let (k, n) = (k.round(), n.round());
    if k <= 0.0 {
        return 1.0;
    }
    if k > n || p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    let var = n * p * (1.0 - p);
    if var > 25.0 {
        return 1.0 - normal_cdf((k - 0.5 - n * p) / var.sqrt());
    }
    // Σ_{i<k} pmf(i), pmf built in log space so (1-p)^n does not underflow.
    let (lp, lq) = (p.ln(), (1.0 - p).ln());
    let mut log_pmf = n * lq;
    let mut below = 0.0;
    let mut i = 0.0;
    while i < k {
        below += log_pmf.exp();
        log_pmf += ((n - i) / (i + 1.0)).ln() + lp - lq;
        i += 1.0;
    }
    (1.0 - below).clamp(0.0, 1.0)
}

fn judge_proportion(spec: &MetricSpec, eb: f64, nb: f64, ec: f64, nc: f64) -> Verdict {
    if !(eb.is_finite() && nb.is_finite() && ec.is_finite() && nc.is_finite()) {
        return missing(spec, spec.on_nan, "NaN counts".into());
    }
    if eb < 0.0 || nb < 0.0 || ec < 0.0 || nc < 0.0 || eb > nb + 0.5 || ec > nc + 0.5 {
        return missing(
            spec,
            spec.on_error,
            format!(
                "impossible counts: {eb:.0}/{nb:.0} baseline, {ec:.0}/{nc:.0} current (events must be 0 … trials)"
            ),
        );
    }
    let counts = |mut v: Verdict| {
        v.n_baseline = nb.round() as usize;
        v.n_current = nc.round() as usize;
        if nb >= 1.0 {
            v.baseline = Some(eb / nb);
        }
        if nc >= 1.0 {
            v.current = Some(ec / nc);
        }
        v
    };
    if nc < 1.0 {
        return counts(missing(
            spec,
            spec.on_empty,
            format!("not enough data: {eb:.0}/{nb:.0} baseline, no current trials"),
        ));
    }
    let rc = ec / nc;
    // The ceiling is judged on the current window alone, whatever the baseline holds; it fails
    // once the excess is significant (a binomial test against the ceiling rate), so one stray
    // error among the first few requests is not a rollback while 68 of 136 is.
    let mut above_ceiling_unsure = None;
    if let Some(m) = spec.max.filter(|m| rc > *m) {
        let p = binomial_sf(ec, nc, m);
        let text = format!(
            "current rate {:.2}% ({ec:.0}/{nc:.0}) is above the ceiling {:.2}%",
            rc * 100.0,
            m * 100.0
        );
        if p < ALPHA {
            let mut v = counts(missing(
                spec,
                OnMissing::Fail,
                format!("{text} (binomial p={p:.2e})"),
            ));
            v.p_value = Some(p);
            return v;
        }
        above_ceiling_unsure = Some(format!("{text}, not yet significantly (p={p:.3})"));
    }
    if nb < 1.0 || nc < spec.min_samples as f64 {
        // An idle baseline (6 am) falls back to the absolute ceiling, and says so.
        let why = if nb < 1.0 {
            format!("baseline window had no trials ({eb:.0}/{nb:.0})")
        } else {
            format!("only {nc:.0} current trials (need {})", spec.min_samples)
        };
        let v = match (spec.max, above_ceiling_unsure) {
            (_, Some(unsure)) => missing(spec, OnMissing::Inconclusive, format!("{why}; {unsure}")),
            (Some(m), None) if nc >= spec.min_samples as f64 => missing(
                spec,
                OnMissing::Pass,
                format!(
                    "{why}: judged by the ceiling alone, {ec:.0}/{nc:.0} = {:.2}% ≤ {:.2}%",
                    rc * 100.0,
                    m * 100.0
                ),
            ),
            _ if nb < 1.0 && spec.max.is_none() => missing(
                spec,
                without_reference(spec.on_empty),
                format!("not enough data: {why}, and no ceiling to judge by"),
            ),
            _ => missing(spec, spec.on_empty, format!("not enough data: {why}")),
        };
        return counts(v);
    }
    let rb = eb / nb;
    let pooled = (eb + ec) / (nb + nc);
    let se = (pooled * (1.0 - pooled) * (1.0 / nb + 1.0 / nc)).sqrt();
    let z = if se > 0.0 { (rc - rb) / se } else { 0.0 };
    let p = 1.0 - normal_cdf(z);
    let ratio = 1.0 + spec.tolerance_pct / 100.0;
    let delta = if rb > 0.0 {
        Some((rc - rb) / rb * 100.0)
    } else if rc > 0.0 {
        None
    } else {
        Some(0.0)
    };
    let from_to = format!(
        "{eb:.0}/{nb:.0} ({:.2}%) → {ec:.0}/{nc:.0} ({:.2}%)",
        rb * 100.0,
        rc * 100.0
    );
    let (outcome, why) = if rc > rb * ratio && p < ALPHA / 2.0 {
        (
            Outcome::Fail,
            format!(
                "{from_to}: above {ratio:.2}× baseline, significant (two-proportion z={z:.2}, p={p:.4})"
            ),
        )
    } else {
        (Outcome::Pass, format!("{from_to} (z={z:.2}, p={p:.3})"))
    };
    Verdict {
        metric: spec.name.clone(),
        outcome,
        why,
        baseline: Some(rb),
        current: Some(rc),
        delta_pct: delta,
        limit: limit_text(spec),
        n_baseline: nb.round() as usize,
        n_current: nc.round() as usize,
        p_value: Some(p),
    }
}

// ---------------------------------------------------------------- Prometheus

/// A Prometheus HTTP API client (bounded by the Http timeouts).
pub struct Prometheus {
    pub base: String,
    pub http: Http,
}

#[derive(Deserialize)]
struct ApiResponse {
    status: String,
    data: Option<ApiData>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct ApiData {
    result: Vec<ApiSeries>,
}

#[derive(Deserialize)]
struct ApiSeries {
    #[serde(default)]
    values: Vec<(f64, String)>,
    value: Option<(f64, String)>,
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

impl Prometheus {
    /// Exit 4 when Prometheus itself does not answer.
    pub async fn ready(&self) -> Result<()> {
        match self.http.get_text(&format!("{}/-/ready", self.base)).await {
            Ok((200, _)) => Ok(()),
            Ok((code, body)) => Err(Error::unreachable(
                "Prometheus",
                format!("{}/-/ready answered {code}: {}", self.base, body.trim()),
            )),
            Err(e) => Err(Error::unreachable("Prometheus", e)),
        }
    }

    async fn api(&self, path: &str) -> std::result::Result<Vec<ApiSeries>, String> {
        let url = format!("{}{path}", self.base);
        let (_, body) = self.http.get_text(&url).await.map_err(|e| e.to_string())?;
        let r: ApiResponse =
            serde_json::from_str(&body).map_err(|e| format!("unexpected answer: {e}"))?;
        if r.status != "success" {
            return Err(r.error.unwrap_or_else(|| "query failed".into()));
        }
        Ok(r.data.map(|d| d.result).unwrap_or_default())
    }

    async fn range(&self, q: &str, w: &Window) -> std::result::Result<Vec<f64>, String> {
        let res = self
            .api(&format!(
                "/api/v1/query_range?query={}&start={}&end={}&step={}",
                enc(q),
                w.start,
                w.end,
                w.step
            ))
            .await?;
        match res.len() {
            0 => Ok(vec![]),
            1 => Ok(res[0]
                .values
                .iter()
                .map(|(_, v)| v.parse().unwrap_or(f64::NAN))
                .collect()),
            n => Err(format!(
                "the query returns {n} series; aggregate it to one (e.g. sum(…))"
            )),
        }
    }

    async fn instant(&self, q: &str, at: f64) -> std::result::Result<Option<f64>, String> {
        let res = self
            .api(&format!("/api/v1/query?query={}&time={at}", enc(q)))
            .await?;
        Ok(res
            .first()
            .and_then(|s| s.value.as_ref())
            .map(|(_, v)| v.parse().unwrap_or(f64::NAN)))
    }

    /// Every spec's figures over `w`. Per-metric provider errors become `Figures::Error`.
    pub async fn snapshot(&self, specs: &[MetricSpec], w: Window) -> Snapshot {
        let futs = specs.iter().map(|s| async move {
            let f = match s.kind {
                MetricKind::Series => match &s.query {
                    None => Figures::Error {
                        message: "no query configured".into(),
                    },
                    Some(q) => match self.range(q, &w).await {
                        Ok(samples) => Figures::Series { samples },
                        Err(message) => Figures::Error { message },
                    },
                },
                MetricKind::Proportion => {
                    let range = format!("{}s", (w.end - w.start).round() as i64);
                    match (&s.events, &s.trials) {
                        (Some(e), Some(t)) => {
                            let (e, t) =
                                (e.replace("$__range", &range), t.replace("$__range", &range));
                            match (self.instant(&e, w.end).await, self.instant(&t, w.end).await) {
                                (Ok(ev), Ok(tr)) => Figures::Proportion {
                                    events: ev.unwrap_or(0.0),
                                    trials: tr.unwrap_or(0.0),
                                },
                                (Err(message), _) | (_, Err(message)) => Figures::Error { message },
                            }
                        }
                        _ => Figures::Error {
                            message: "events and trials queries are required".into(),
                        },
                    }
                }
            };
            (s.name.clone(), f)
        });
        Snapshot {
            format: 1,
            window: w,
            metrics: futures_util::future::join_all(futs)
                .await
                .into_iter()
                .collect(),
        }
    }
}

/// Judge every spec; a metric missing from a snapshot is a provider error for it.
pub fn judge_all(specs: &[MetricSpec], baseline: &Snapshot, current: &Snapshot) -> Vec<Verdict> {
    specs
        .iter()
        .map(|s| {
            let absent = |w: &str| Figures::Error {
                message: format!("metric `{}` is not in the {w} figures", s.name),
            };
            let b = baseline
                .metrics
                .get(&s.name)
                .cloned()
                .unwrap_or_else(|| absent("baseline"));
            let c = current
                .metrics
                .get(&s.name)
                .cloned()
                .unwrap_or_else(|| absent("current"));
            judge(s, &b, &c)
        })
        .collect()
}
