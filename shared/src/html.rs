//! Pages people read (compare_metrics `--html`, the deployment report, latency charts): one
//! layout and one chart renderer, written with maud (compile-time checked templates, escaping
//! by default) and passed through `redact` like every other output.

use crate::redact::redact;
use maud::{DOCTYPE, Markup, PreEscaped, html};

/// How a metric's raw value reads to a person.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Unit {
    /// Raw seconds shown as milliseconds.
    Ms,
    /// A ratio 0…1 shown as a percentage.
    Pct,
    ReqPerS,
    Plain,
}

impl Unit {
    /// The unit a metric's name implies (latency in seconds, rates as ratios, throughput).
    pub fn of(metric: &str, proportion: bool) -> Unit {
        let m = metric.to_ascii_lowercase();
        if m.contains("latency") || m.ends_with("_seconds") {
            Unit::Ms
        } else if proportion || m.ends_with("_rate") || m.contains("ratio") {
            Unit::Pct
        } else if m.contains("throughput") || m.contains("per_s") {
            Unit::ReqPerS
        } else {
            Unit::Plain
        }
    }
    pub fn scale(self, v: f64) -> f64 {
        match self {
            Unit::Ms => v * 1000.0,
            Unit::Pct => v * 100.0,
            _ => v,
        }
    }
    pub fn suffix(self) -> &'static str {
        match self {
            Unit::Ms => " ms",
            Unit::Pct => " %",
            Unit::ReqPerS => " req/s",
            Unit::Plain => "",
        }
    }
    /// A raw value as text in this unit, e.g. `0.00021` → `0.21 ms`.
    pub fn fmt(self, raw: f64) -> String {
        format!("{}{}", short(self.scale(raw)), self.suffix())
    }
}

/// A number with as many decimals as its size needs.
pub fn short(v: f64) -> String {
    let a = v.abs();
    if !v.is_finite() {
        "—".into()
    } else if a == 0.0 {
        "0".into()
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else if a >= 0.1 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// About `n` round tick values (1, 2, 5 × 10^k apart) covering `lo..=hi`.
pub fn nice_ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let (lo, hi) = if hi > lo { (lo, hi) } else { (lo, lo + 1.0) };
    let raw = (hi - lo) / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let mut t = (lo / step).floor() * step;
    let mut out = vec![];
    while t <= hi + step * 0.5 && out.len() < 20 {
        out.push(t);
        t += step;
    }
    out
}

/// One window of a chart, on its own time axis.
pub struct Panel {
    pub title: String,
    /// Unix seconds of the first and last sample.
    pub t0: f64,
    pub t1: f64,
    /// (unix seconds, raw value); NaN samples leave a gap.
    pub points: Vec<(f64, f64)>,
    pub color: &'static str,
}

fn clock(t: f64) -> String {
    chrono::DateTime::from_timestamp(t as i64, 0)
        .map_or_else(|| short(t), |d| d.format("%H:%M:%S").to_string())
}

/// Panels side by side sharing one y axis (ticks, gridlines, unit), each with its own time
/// axis; `limit` draws a dashed line labelled with its value.
pub fn chart(panels: &[Panel], unit: Unit, limit: Option<(f64, &str)>) -> Markup {
    let (w, h, left, bottom, top, gap) = (760.0, 220.0, 70.0, 36.0, 14.0, 24.0);
    let values = panels
        .iter()
        .flat_map(|p| p.points.iter().map(|(_, v)| unit.scale(*v)))
        .chain(limit.map(|(l, _)| unit.scale(l)))
        .filter(|v| v.is_finite());
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(v), h.max(v)));
    let (lo, hi) = if lo > hi {
        (0.0, 1.0)
    } else {
        (lo.min(0.0), hi)
    };
    let ticks = nice_ticks(lo, hi, 4);
    let (ylo, yhi) = (ticks[0], *ticks.last().unwrap_or(&1.0));
    let span = if yhi > ylo { yhi - ylo } else { 1.0 };
    let y = |v: f64| top + (1.0 - (v - ylo) / span) * (h - top - bottom);
    let pw = (w - left - 10.0 - gap * (panels.len().saturating_sub(1)) as f64)
        / panels.len().max(1) as f64;
    html! {
        svg xmlns="http://www.w3.org/2000/svg" width=(w) height=(h) viewBox={"0 0 " (w) " " (h)}
            font-family="sans-serif" font-size="11" role="img" {
            rect width="100%" height="100%" fill="white" {}
            @for t in &ticks {
                line x1=(left) x2=(w - 10.0) y1=(y(*t)) y2=(y(*t)) stroke="#e5e5e5" {}
                text x=(left - 6.0) y=(y(*t) + 4.0) text-anchor="end" { (short(*t)) (unit.suffix()) }
            }
            line x1=(left) x2=(left) y1=(top) y2=(h - bottom) stroke="#555" {}
            @for (i, p) in panels.iter().enumerate() {
                @let x0 = left + i as f64 * (pw + gap);
                @let tspan = if p.t1 > p.t0 { p.t1 - p.t0 } else { 1.0 };
                @let x = |t: f64| x0 + (t - p.t0) / tspan * pw;
                line x1=(x0) x2=(x0 + pw) y1=(h - bottom) y2=(h - bottom) stroke="#555" {}
                text x=(x0) y=(h - bottom + 14.0) text-anchor="start" { (clock(p.t0)) }
                text x=(x0 + pw) y=(h - bottom + 14.0) text-anchor="end" { (clock(p.t1)) }
                text x=(x0 + pw / 2.0) y=(h - 6.0) text-anchor="middle" fill=(p.color) font-weight="bold" { (p.title) }
                @for seg in p.points.split(|(_, v)| !v.is_finite()).filter(|s| !s.is_empty()) {
                    polyline fill="none" stroke=(p.color) stroke-width="2"
                        points=(seg.iter().map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(unit.scale(*v)))).collect::<Vec<_>>().join(" ")) {}
                    @if seg.len() == 1 {
                        circle cx=(x(seg[0].0)) cy=(y(unit.scale(seg[0].1))) r="2.5" fill=(p.color) {}
                    }
                }
            }
            @if let Some((l, label)) = limit {
                @let ly = y(unit.scale(l));
                line x1=(left) x2=(w - 10.0) y1=(ly) y2=(ly) stroke="#cf222e" stroke-dasharray="6 4" stroke-width="1.5" {}
                text x=(w - 12.0) y=(ly - 4.0) text-anchor="end" fill="#cf222e" { (label) " " (unit.fmt(l)) }
            }
        }
    }
}

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:2em;color:#1f2328}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}\
.verdict{font-size:1.3em;font-weight:bold;padding:.5em 1em;display:inline-block;border-radius:6px;color:white}\
.pass{background:#1a7f37}.fail{background:#cf222e}.inconclusive{background:#9a6700}\
.ok{color:#1a7f37;font-weight:bold}.bad{color:#cf222e;font-weight:bold}.warn{color:#9a6700;font-weight:bold}\
section{margin:1.5em 0}h2{font-size:1.1em;margin:.2em 0}";

/// A self-contained page (no scripts, no external resources), redacted.
/// A report's checks as a page: outcome, then one row per check (status, group, name, message,
/// hint, time), then the notes.
pub fn report_page(r: &crate::report::Report) -> String {
    let title = format!("{} · {} · {:?}", r.tool, r.environment, r.outcome);
    let body = html! {
        h1 { (r.tool) " — " (r.environment) }
        p { "Outcome: " strong { (format!("{:?}", r.outcome).to_uppercase()) }
            " · " (r.checks.len()) " check(s) · " (r.duration_ms.as_millis()) " ms" }
        table {
            thead { tr { th { "status" } th { "group" } th { "check" } th { "what happened" } th { "what to do" } th { "ms" } } }
            tbody {
                @for c in &r.checks {
                    tr {
                        td { (format!("{:?}", c.status).to_uppercase()) }
                        td { (c.group) }
                        td { (c.name) }
                        td { (c.message.as_deref().unwrap_or("")) }
                        td { (c.hint.as_deref().unwrap_or("")) }
                        td { (c.duration_ms.as_millis()) }
                    }
                }
            }
        }
        @if !r.notes.is_empty() {
            ul { @for n in &r.notes { li { (n) } } }
        }
    };
    page(&title, body)
}

pub fn page(title: &str, body: Markup) -> String {
    let doc = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) }
                style { (PreEscaped(STYLE)) }
            }
            body { (body) }
        }
    };
    redact(&doc.into_string())
}
