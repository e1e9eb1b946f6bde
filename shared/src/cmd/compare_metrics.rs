//! `compare_metrics`: judge a current window against a baseline from Prometheus.

use crate::cli::{CommonArgs, Context, Tool};
use crate::config::{MetricSpec, parse_duration};
use crate::error::{Error, Result};
use crate::metrics::{self, Figures, Outcome, Prometheus, Snapshot, Verdict, Window};
use crate::report::{Check, Report};
use std::path::PathBuf;
use std::time::Duration;

/// Compare a current window of metrics with a baseline (yesterday's same clock window, a relative
/// or absolute time, or a saved file) and explain every verdict: pass (0), fail (1) or
/// inconclusive (6, not enough data — a human decides).
#[derive(Debug, clap::Parser)]
#[command(name = "compare_metrics", version)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,

    /// Baseline window end: yesterday, today, now, -1d, -2h, an RFC 3339 time, or a FILE saved
    /// with --save.
    #[arg(long, value_name = "WHEN|FILE", allow_hyphen_values = true)]
    pub baseline: String,

    /// Current window end (same forms).
    #[arg(
        long,
        value_name = "WHEN|FILE",
        default_value = "now",
        allow_hyphen_values = true
    )]
    pub current: String,

    /// Window length.
    #[arg(long, value_parser = crate::config::parse_span, allow_hyphen_values = true, default_value = "15m", value_name = "DURATION")]
    pub duration: Duration,

    /// Sample resolution of series metrics.
    #[arg(long, value_parser = parse_duration, allow_hyphen_values = true, default_value = "15s", value_name = "DURATION")]
    pub step: Duration,

    /// Judge only these metrics (names from the config).
    #[arg(long, value_delimiter = ',', value_name = "NAME")]
    pub metrics: Vec<String>,

    /// Save the current window's figures here (a later --baseline FILE judges against them).
    #[arg(long, value_name = "FILE")]
    pub save: Option<PathBuf>,
}

enum Source {
    Window(Window),
    File(Snapshot),
}

fn resolve(spec: &str, duration: Duration, step: Duration, now: f64) -> Result<Source> {
    let end = match spec.trim() {
        "now" | "today" => Some(now),
        "yesterday" => Some(now - 86_400.0),
        s if s.starts_with('-') => Some(
            now - crate::config::parse_span(&s[1..])
                .map_err(|e| Error::Usage(e.0))?
                .as_secs_f64(),
        ),
        s => chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.timestamp_millis() as f64 / 1000.0),
    };
    if let Some(end) = end {
        return Ok(Source::Window(Window {
            start: end - duration.as_secs_f64(),
            end,
            step: step.as_secs_f64(),
        }));
    }
    let path = PathBuf::from(spec);
    if !path.exists() {
        return Err(Error::Usage(format!(
            "`{spec}` is neither a time (yesterday, today, now, -1d, RFC 3339) nor an existing file"
        )));
    }
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io("read baseline", &path, e))?;
    let snap: Snapshot = serde_json::from_str(&text).map_err(|e| {
        Error::config(
            path.display().to_string(),
            format!("not a compare_metrics figures file: {e}"),
        )
    })?;
    if snap.format != 1 {
        return Err(Error::config(
            path.display().to_string(),
            format!(
                "figures format {} is not supported (expected 1)",
                snap.format
            ),
        ));
    }
    snap.validate().map_err(|e| {
        Error::config(
            path.display().to_string(),
            format!("{e}; re-create the file with compare_metrics --save"),
        )
    })?;
    Ok(Source::File(snap))
}

impl Tool for Args {
    const NAME: &'static str = "compare_metrics";

    fn common(&self) -> &CommonArgs {
        &self.common
    }

    async fn run(self, ctx: Context) -> Result<Report> {
        let env = ctx.env()?.clone();
        let mut specs = env
            .metrics
            .clone()
            .unwrap_or_else(|| metrics::default_specs(&env));
        if !self.metrics.is_empty() {
            for m in &self.metrics {
                if !specs.iter().any(|s| &s.name == m) {
                    let known: Vec<_> = specs.iter().map(|s| s.name.as_str()).collect();
                    return Err(Error::Usage(format!(
                        "unknown metric `{m}` (configured: {})",
                        known.join(", ")
                    )));
                }
            }
            specs.retain(|s| self.metrics.contains(&s.name));
        }
        let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
        let baseline = resolve(&self.baseline, self.duration, self.step, now)?;
        let current = resolve(&self.current, self.duration, self.step, now)?;
        let needs_prom =
            matches!(baseline, Source::Window(_)) || matches!(current, Source::Window(_));
        let prom = match (&env.prometheus, needs_prom) {
            (Some(url), true) => {
                let p = Prometheus {
                    base: url.to_string(),
                    http: crate::http::Http::new(env.timeouts.connect.0, ctx.timeout),
                };
                p.ready().await?;
                Some(p)
            }
            (None, true) => {
                return Err(Error::config(
                    ctx.config.path.display().to_string(),
                    format!("environments.{}.prometheus is not set", ctx.env_name),
                ));
            }
            _ => None,
        };
        let fetch = |s: Source| async {
            match s {
                Source::File(snap) => snap,
                Source::Window(w) => {
                    prom.as_ref()
                        .expect("checked above")
                        .snapshot(&specs, w)
                        .await
                }
            }
        };
        let (b, c) = tokio::join!(fetch(baseline), fetch(current));
        if let Some(path) = &self.save {
            let text = serde_json::to_string_pretty(&c).expect("json");
            std::fs::write(path, text).map_err(|e| Error::io("write figures", path, e))?;
        }
        let verdicts = metrics::judge_all(&specs, &b, &c);
        let mut report = ctx.report();
        report.set_page(html(ctx.env_name.as_str(), &specs, &verdicts, &b, &c));
        for v in &verdicts {
            report.push(to_check(v));
        }
        if verdicts.iter().any(|v| v.outcome == Outcome::Inconclusive) {
            report.set_inconclusive();
        }
        report.note(format!(
            "baseline {} · current {} · {} metrics",
            describe(&b.window),
            describe(&c.window),
            verdicts.len()
        ));
        Ok(report)
    }
}

fn describe(w: &Window) -> String {
    let t = |s: f64| {
        chrono::DateTime::from_timestamp(s as i64, 0).map_or_else(
            || s.to_string(),
            |d| d.format("%Y-%m-%d %H:%M:%SZ").to_string(),
        )
    };
    format!("{} → {}", t(w.start), t(w.end))
}

fn fmt(x: Option<f64>) -> String {
    match x {
        Some(v) if v.is_finite() && v.abs() < 0.01 && v != 0.0 => format!("{v:.6}"),
        Some(v) if v.is_finite() => format!("{v:.4}"),
        Some(v) => v.to_string(),
        None => "—".into(),
    }
}

/// The relative change; a zero baseline has none ("from 0"), never `+inf%`.
fn delta_text(v: &Verdict) -> String {
    match (v.delta_pct, v.baseline, v.current) {
        (Some(d), _, _) => format!("{d:+.1}%"),
        (None, Some(b), Some(c)) if b == 0.0 && c != 0.0 => "from 0".into(),
        _ => "—".into(),
    }
}

/// One check per metric: the table row (baseline, current, delta, limit, verdict, why).
pub fn to_check(v: &Verdict) -> Check {
    let msg = format!(
        "baseline {} → current {} ({}), limit {}; {} [n={}/{}]",
        fmt(v.baseline),
        fmt(v.current),
        delta_text(v),
        v.limit,
        v.why,
        v.n_baseline,
        v.n_current
    );
    let data = serde_json::to_value(v).unwrap_or_default();
    match v.outcome {
        Outcome::Pass => Check::ok("metrics", &v.metric).message(msg).data(data),
        Outcome::Fail => Check::fail("metrics", &v.metric, msg)
            .hint("a regression: hold or roll back the deploy")
            .data(data),
        Outcome::Inconclusive => Check::warn("metrics", &v.metric, msg)
            .hint("not enough data to judge: a human decides")
            .data(data),
    }
}

/// The page a person reads: environment and overall verdict first, then the verdict table,
/// then per series metric a chart of both windows (each on its own time axis, one value axis in
/// the metric's unit, the absolute limit as a dashed line).
fn html(
    environment: &str,
    specs: &[MetricSpec],
    verdicts: &[Verdict],
    b: &Snapshot,
    c: &Snapshot,
) -> String {
    use crate::html::{Panel, Unit, chart, page};
    use maud::html;
    let overall = if verdicts.iter().any(|v| v.outcome == Outcome::Fail) {
        ("FAIL", "fail")
    } else if verdicts.iter().any(|v| v.outcome == Outcome::Inconclusive) {
        ("INCONCLUSIVE", "inconclusive")
    } else {
        ("PASS", "pass")
    };
    let points = |w: &Window, s: &[f64]| -> Vec<(f64, f64)> {
        s.iter()
            .enumerate()
            .map(|(i, v)| (w.start + i as f64 * w.step, *v))
            .collect()
    };
    let unit_of = |v: &Verdict| {
        let proportion = specs
            .iter()
            .find(|s| s.name == v.metric)
            .is_some_and(|s| s.kind == crate::config::MetricKind::Proportion);
        Unit::of(&v.metric, proportion)
    };
    let value = |u: Unit, x: Option<f64>| x.map_or("—".to_string(), |x| u.fmt(x));
    let body = html! {
        h1 { "compare_metrics — " (environment) }
        p { span class={"verdict " (overall.1)} { (overall.0) } }
        p { "baseline " (describe(&b.window)) " · current " (describe(&c.window)) " · " (verdicts.len()) " metrics" }
        table {
            tr { th { "metric" } th { "baseline" } th { "current" } th { "change" } th { "limit" } th { "verdict" } th { "why" } }
            @for v in verdicts {
                @let u = unit_of(v);
                tr {
                    td { (v.metric) }
                    td { (value(u, v.baseline)) }
                    td { (value(u, v.current)) }
                    td { (delta_text(v)) }
                    td { (v.limit) }
                    td class=(match v.outcome { Outcome::Pass => "ok", Outcome::Fail => "bad", Outcome::Inconclusive => "warn" }) {
                        (format!("{:?}", v.outcome))
                    }
                    td { (v.why) }
                }
            }
        }
        @for v in verdicts {
            @if let (Some(Figures::Series { samples: bs }), Some(Figures::Series { samples: cs })) = (b.metrics.get(&v.metric), c.metrics.get(&v.metric)) {
                @let spec = specs.iter().find(|s| s.name == v.metric);
                section {
                    h2 { (v.metric) }
                    (chart(
                        &[
                            Panel { title: "baseline".into(), t0: b.window.start, t1: b.window.end, points: points(&b.window, bs), color: "#6e7781" },
                            Panel { title: "current".into(), t0: c.window.start, t1: c.window.end, points: points(&c.window, cs), color: "#0969da" },
                        ],
                        unit_of(v),
                        spec.and_then(|s| s.max).map(|m| (m, "limit")),
                    ))
                }
            }
        }
    };
    page(&format!("compare_metrics — {environment}"), body)
}
