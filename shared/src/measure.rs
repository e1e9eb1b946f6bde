//! measure_latency's run below the flags: one probe per metric against the measured colour
//! (and, for the blue-green gate, the live colour in alternating slices), the checks of each
//! distribution, the gate against a saved baseline, the report files.

use crate::cli::Context;
use crate::config::{Color, Environment, Role};
use crate::error::{Error, Result};
use crate::latency::{self, Load, Probe};
use crate::report::{Check, Report};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Metric {
    /// Order submit → acknowledgement (test account, market orders alternating sides; flattened after).
    Order,
    /// Market data feed endpoint round trip, plus tick publish → receipt age.
    Marketdata,
    /// Risk check round trip.
    Risk,
    /// `GET /health` (for benchmarking the tool itself).
    Health,
}

impl Metric {
    /// The role whose service answers this metric's requests.
    pub fn role(self) -> Role {
        match self {
            Metric::Order | Metric::Health => Role::TradingEngine,
            Metric::Marketdata => Role::Marketdata,
            Metric::Risk => Role::RiskEngine,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Metric::Order => "order",
            Metric::Marketdata => "marketdata",
            Metric::Risk => "risk",
            Metric::Health => "health",
        }
    }
}

/// What one measure_latency run does, decided from the flags before any request is sent.
pub struct Plan {
    pub color: Color,
    /// The live colour to measure beside `color` in alternating slices (the A/B gate).
    pub reference: Option<Color>,
    pub metrics: Vec<Metric>,
    /// A saved baseline to gate against, by metric.
    pub baseline: Option<BTreeMap<String, Histogram<u64>>>,
    pub account: Option<String>,
    pub rate: Option<f64>,
    pub load: Load,
    /// One base URL instead of the environment's services.
    pub url: Option<String>,
    pub connections: usize,
    pub slice: Duration,
    pub percentiles: Vec<f64>,
    pub threshold_pct: f64,
    pub noise_floor_ms: f64,
    pub report_dir: Option<PathBuf>,
    pub save_baseline: Option<PathBuf>,
}

fn ms(us: u64) -> String {
    format!("{:.3} ms", us as f64 / 1000.0)
}

/// A saved baseline for `metrics`: a bad or mismatched file fails before any load is sent.
pub fn read_baseline(p: &Path, metrics: &[Metric]) -> Result<BTreeMap<String, Histogram<u64>>> {
    let text = std::fs::read_to_string(p).map_err(|e| {
        Error::config(
            p.display().to_string(),
            format!("cannot read baseline: {e}"),
        )
    })?;
    let b: latency::BaselineFile = serde_json::from_str(&text).map_err(|e| {
        Error::config(
            p.display().to_string(),
            format!("not a measure_latency baseline: {e}"),
        )
    })?;
    decode_baseline(&p.display().to_string(), &b.metrics, metrics)
}

/// Histograms of a baseline (a file's or a stored one's, named by `source`) for `metrics`.
pub fn decode_baseline(
    source: &str,
    stored: &BTreeMap<String, String>,
    metrics: &[Metric],
) -> Result<BTreeMap<String, Histogram<u64>>> {
    let want: Vec<&str> = metrics.iter().map(|m| m.name()).collect();
    let have: Vec<&str> = stored.keys().map(String::as_str).collect();
    if want.iter().any(|m| !have.contains(m)) {
        return Err(Error::config(
            source,
            format!(
                "the baseline holds [{}], this run measures [{}]: record a baseline for this metric set",
                have.join(", "),
                want.join(", ")
            ),
        ));
    }
    let mut hs = BTreeMap::new();
    for (k, v) in stored {
        hs.insert(
            k.clone(),
            latency::decode(v)
                .map_err(|e| Error::config(source, format!("histogram `{k}` is corrupt: {e}")))?,
        );
    }
    Ok(hs)
}

/// Measure every metric of `plan`, pushing one check per distribution (and per gated
/// percentile), writing the report files and the new baseline when asked. Returns every
/// measured distribution, encoded as a baseline holds it.
pub async fn run(
    plan: &Plan,
    ctx: &Context,
    env: &Environment,
    report: &mut Report,
) -> Result<BTreeMap<String, String>> {
    let Plan {
        color,
        reference,
        ref metrics,
        ref baseline,
        ref account,
        rate,
        ref load,
        ..
    } = *plan;
    // Every server of the role (or the one --url): each is measured, and named when there are
    // several, so a slow or failing server of a fleet is the one the report points at.
    let servers_on = |color: Color, role: Role| -> Result<Vec<String>> {
        if let Some(u) = &plan.url {
            return Ok(vec![u.trim_end_matches('/').to_string()]);
        }
        let urls: Vec<String> = env
            .urls(color, role)
            .iter()
            .map(|u| u.to_string().trim_end_matches('/').to_string())
            .collect();
        if urls.is_empty() {
            return Err(Error::config(
                ctx.config.path.display().to_string(),
                format!("no {role} service for {color}"),
            ));
        }
        Ok(urls)
    };
    let run_id = format!("{:x}", chrono::Utc::now().timestamp_millis());
    let sym = env.smoke.symbol.clone();
    let mut current = BTreeMap::new();
    for m in metrics {
        let bases = servers_on(color, m.role())?;
        // The probe's base is each server's in turn (below); the first stands in the template.
        let template = bases[0].clone();
        let probe = match m {
            Metric::Order => {
                let (acc, sym, run_id) = (
                    account.clone().unwrap_or_default(),
                    sym.clone(),
                    run_id.clone(),
                );
                Probe {
                    name: "order".into(),
                    base: template.clone(),
                    method: hyper::Method::POST,
                    path: Arc::new(|_| "/orders".into()),
                    body: Some(Arc::new(move |i| {
                        format!(
                            r#"{{"account":"{acc}","symbol":"{sym}","side":"{}","qty":1,"type":"market","client_order_id":"lat-{run_id}-{i}"}}"#,
                            if i.is_multiple_of(2) { "buy" } else { "sell" }
                        )
                    })),
                    tick_age: false,
                }
            }
            Metric::Marketdata => {
                let sym = sym.clone();
                Probe {
                    name: "marketdata".into(),
                    base: template.clone(),
                    method: hyper::Method::GET,
                    path: Arc::new(move |i| {
                        if i % 4 == 3 {
                            format!("/ticks?symbol={sym}")
                        } else {
                            "/feeds".into()
                        }
                    }),
                    body: None,
                    tick_age: true,
                }
            }
            Metric::Risk => {
                let (acc, sym) = (
                    account.clone().unwrap_or_else(|| "TEST-SMOKE-01".into()),
                    sym.clone(),
                );
                Probe {
                    name: "risk".into(),
                    base: template.clone(),
                    method: hyper::Method::POST,
                    path: Arc::new(|_| "/check".into()),
                    body: Some(Arc::new(move |i| {
                        format!(
                            r#"{{"account":"{acc}","symbol":"{sym}","side":"buy","qty":1,"type":"market","client_order_id":"lat-risk-{i}"}}"#
                        )
                    })),
                    tick_age: false,
                }
            }
            Metric::Health => Probe {
                name: "health".into(),
                base: template.clone(),
                method: hyper::Method::GET,
                path: Arc::new(|_| "/health".into()),
                body: None,
                tick_age: false,
            },
        };
        tracing::info!(
            "measuring {} at {} with {} connection(s)",
            m.name(),
            rate.map_or("max rate".into(), |r| format!("{r}/s")),
            plan.connections
        );
        let refs = match reference {
            Some(rc) => servers_on(rc, m.role())?,
            None => vec![],
        };
        let n = bases.len();
        // The load is shared out: n servers together get the rate and connections asked for.
        let share = Load {
            rate: rate.map(|r| r / n as f64),
            connections: (load.connections / n).max(1),
            requests: load.requests.map(|r| r.div_ceil(n as u64)),
            ..load.clone()
        };
        let runs = futures_util::future::join_all(bases.iter().enumerate().map(|(i, base)| {
            let candidate = Probe {
                base: base.clone(),
                ..probe.clone()
            };
            let reference = refs.get(i % refs.len().max(1)).map(|b| Probe {
                base: b.clone(),
                ..probe.clone()
            });
            let share = &share;
            async move {
                match reference {
                    None => latency::measure(&candidate, share, &ctx.cancel)
                        .await
                        .map(|r| (r, None)),
                    Some(other) => {
                        latency::interleaved(&candidate, &other, share, plan.slice, &ctx.cancel)
                            .await
                            .map(|run| {
                                let ab = (other.base.clone(), run.pairs, run.reference, run.steal);
                                (run.candidate, Some(ab))
                            })
                    }
                }
            }
        }))
        .await;
        let mut ab_checks = vec![];
        let mut measured = vec![];
        let mut fleet: Option<latency::Interleaved> = None;
        let mut per_server = vec![];
        for (i, (base, run)) in bases.iter().zip(runs).enumerate() {
            let suffix = if n > 1 {
                format!(" ({} #{})", m.role(), i + 1)
            } else {
                String::new()
            };
            let (res, ab) = match run {
                Ok(r) => r,
                // One server of several that cannot be measured is a failed check naming it.
                Err(e) if n > 1 => {
                    report.push(
                        Check::fail(
                            "latency",
                            format!("{}{suffix}", m.name()),
                            format!("{base}: {e}"),
                        )
                        .hint("the server could not be measured: see its health and logs"),
                    );
                    continue;
                }
                Err(e) => {
                    measured.push((suffix, base.clone(), Err(e)));
                    continue;
                }
            };
            if let Some((ref_base, pairs, reference_run, steal)) = ab {
                let run = latency::Interleaved {
                    candidate: res,
                    reference: reference_run,
                    pairs,
                    steal,
                };
                per_server.push((suffix.clone(), base.clone(), ref_base, run.clone()));
                match fleet.as_mut() {
                    None => fleet = Some(run.clone()),
                    Some(f) => f.absorb(&run),
                }
                measured.push((suffix, base.clone(), Ok(run.candidate)));
            } else {
                measured.push((suffix, base.clone(), Ok(res)));
            }
        }
        // The gate: one verdict per percentile on every server's samples together (so a fleet
        // is judged with the power of one run and no more false alarms); the message names
        // the server that moved most, for the operator to look at first.
        if let (Some(rc), Some(run)) = (reference, fleet) {
            for p in &plan.percentiles {
                let v = latency::ab_verdict(
                    &run,
                    *p,
                    plan.threshold_pct,
                    (plan.noise_floor_ms * 1000.0) as u64,
                );
                let name = format!("{} p{p} vs live", m.name());
                let data = serde_json::json!({
                    "reference_color": rc.as_str(), "reference_us": v.reference_us,
                    "candidate_us": v.candidate_us, "delta_pct": v.delta_pct,
                    "slower_pairs": v.slower_pairs.0, "differing_pairs": v.slower_pairs.1,
                    "p_value": v.p_value, "steal": run.steal, "servers": n,
                });
                let mut why = format!("{color} vs {rc}: {}", v.why);
                let moved = per_server
                    .iter()
                    .map(|(suffix, base, ref_base, r)| {
                        let (c, o) = (
                            r.candidate.corrected.value_at_percentile(*p),
                            r.reference.corrected.value_at_percentile(*p),
                        );
                        let d = (c as f64 - o as f64) / (o.max(1) as f64) * 100.0;
                        (
                            d,
                            format!("{}{suffix} {base} vs {ref_base} {d:+.1}%", m.name()),
                        )
                    })
                    .max_by(|a, b| a.0.total_cmp(&b.0));
                if let (true, Some((_, most))) = (n > 1, moved) {
                    why.push_str(&format!("; over {n} servers, most moved: {most}"));
                }
                ab_checks.push(
                    match v.outcome {
                        latency::AbOutcome::Pass => Check::ok("baseline", name).message(why),
                        latency::AbOutcome::Fail => Check::fail("baseline", name, why)
                            .hint("latency regressed against the live colour: hold the deploy"),
                        latency::AbOutcome::NotGated => {
                            Check::skip("baseline", name, format!("not gated: {why}"))
                        }
                        latency::AbOutcome::Inconclusive => Check::warn("baseline", name, why)
                            .hint("not judged: a human decides, or measure again"),
                    }
                    .data(data),
                );
            }
        }
        if *m == Metric::Order {
            // Leave the test account flat whatever happened.
            let t = crate::smoke::Target {
                color,
                env: env.clone(),
                http: crate::http::Http::new(env.timeouts.connect.0, ctx.timeout),
                account: account.clone(),
                expect_version: None,
                timeout: ctx.timeout,
                run_id: format!("lat-clean-{run_id}"),
            };
            let mut t = t;
            if let Some(u) = &plan.url {
                t.env.services.entry(color).or_default().insert(
                    Role::TradingEngine,
                    vec![crate::config::HttpUrl(
                        url::Url::parse(u).map_err(|e| Error::Usage(e.to_string()))?,
                    )],
                );
            }
            report.push(crate::smoke::cleanup(&t, &crate::smoke::Created::default()).await);
            if let Some(rc) = reference {
                let r = crate::smoke::Target {
                    color: rc,
                    run_id: format!("lat-clean-{run_id}-{rc}"),
                    ..t
                };
                report.push(crate::smoke::cleanup(&r, &crate::smoke::Created::default()).await);
            }
        }
        let mut merged: Option<Histogram<u64>> = None;
        for (suffix, base, res) in measured {
            let res = res?;
            let h = &res.corrected;
            let pct: Vec<String> = plan
                .percentiles
                .iter()
                .chain([99.99].iter())
                .map(|p| format!("p{p} {}", ms(h.value_at_percentile(*p))))
                .collect();
            let msg = format!(
                "{}{} · max {} · n={} · errors {} · {:.0} req/s · naive p99 {}{}{}",
                if suffix.is_empty() {
                    String::new()
                } else {
                    format!("{base}: ")
                },
                pct.join(" · "),
                ms(h.max()),
                h.len(),
                res.errors,
                res.achieved_rate(),
                ms(res.naive.value_at_percentile(99.0)),
                if res.pacing.is_empty() {
                    String::new()
                } else {
                    format!(
                        " · pacing error p99 {} µs",
                        res.pacing.value_at_percentile(99.0)
                    )
                },
                if res.tick_age.is_empty() {
                    String::new()
                } else {
                    format!(
                        " · tick publish→receipt p50 {}",
                        ms(res.tick_age.value_at_percentile(50.0))
                    )
                }
            );
            let data = serde_json::json!({
                "p50_us": h.value_at_percentile(50.0), "p90_us": h.value_at_percentile(90.0), "p99_us": h.value_at_percentile(99.0),
                "p999_us": h.value_at_percentile(99.9), "p9999_us": h.value_at_percentile(99.99), "max_us": h.max(), "count": h.len(),
                "errors": res.errors, "achieved_rate": res.achieved_rate(), "naive_p99_us": res.naive.value_at_percentile(99.0),
                "pacing_p99_us": res.pacing.value_at_percentile(99.0),
            });
            let check = if res.errors > 0 || h.is_empty() {
                Check::fail(
                    "latency",
                    format!("{}{suffix}", m.name()),
                    format!(
                        "{msg}; {}",
                        res.first_error
                            .clone()
                            .unwrap_or_else(|| "no successful request".into())
                    ),
                )
                .hint("the target answered errors: see its health and logs")
            } else {
                Check::ok("latency", format!("{}{suffix}", m.name())).message(msg)
            };
            report.push(check.data(data));
            if let Some(s) = &res.stopped_early {
                report.note(format!("{}{suffix}: {s}", m.name()));
            }
            match merged.as_mut() {
                None => merged = Some(res.corrected),
                // Every histogram has latency's one set of bounds, so adding cannot go out of range.
                Some(all) => all
                    .add(&res.corrected)
                    .expect("latency histograms share bounds"),
            }
        }
        // A fleet's distribution is every server's together: the baseline and the files use it.
        let Some(h) = merged else {
            continue;
        };
        let inconclusive = ab_checks
            .iter()
            .any(|c| c.status == crate::report::Status::Warn);
        for c in ab_checks {
            report.push(c);
        }
        if inconclusive {
            report.set_inconclusive();
        }
        if let Some(dir) = &plan.report_dir {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io("create report directory", dir, e))?;
            let p = dir.join(format!("{}.hgrm", m.name()));
            std::fs::write(&p, latency::hgrm(&h)).map_err(|e| Error::io("write", &p, e))?;
            let mut series = vec![(format!("{} current", m.name()), &h)];
            if let Some(b) = baseline.as_ref().and_then(|b| b.get(m.name())) {
                series.insert(0, (format!("{} baseline", m.name()), b));
            }
            let p = dir.join(format!("{}.svg", m.name()));
            std::fs::write(
                &p,
                latency::svg(&format!("{} latency by percentile", m.name()), &series),
            )
            .map_err(|e| Error::io("write", &p, e))?;
        }
        current.insert(m.name().to_string(), h);
    }
    if let Some(b) = &baseline {
        for (name, h) in &current {
            let old = &b[name];
            for p in &plan.percentiles {
                // A percentile with fewer than 10 samples above it is one or two outliers,
                // not a distribution: it is reported, never gated (a healthy system must
                // not fail on noise).
                let need = latency::samples_to_gate(*p);
                let have = old.len().min(h.len());
                if have < need {
                    report.push(Check::skip(
                        "baseline",
                        format!("{name} p{p} vs baseline"),
                        format!(
                            "not gated: p{p} needs ≥ {need} samples on both sides, have {} (baseline) and {} (current); baseline {} → current {}; measure longer or at a higher rate",
                            old.len(),
                            h.len(),
                            ms(old.value_at_percentile(*p)),
                            ms(h.value_at_percentile(*p))
                        ),
                    ));
                    continue;
                }
                let (o, n) = (old.value_at_percentile(*p), h.value_at_percentile(*p));
                let delta = (n as f64 - o as f64) / (o.max(1) as f64) * 100.0;
                let msg = format!(
                    "baseline {} → current {} ({delta:+.1}%), threshold +{}%",
                    ms(o),
                    ms(n),
                    plan.threshold_pct
                );
                let cname = format!("{name} p{p} vs baseline");
                // A move smaller than the noise floor is scheduling, not the service: a
                // sub-millisecond percentile moves tens of percent between two idle runs.
                let moved_ms = (n as f64 - o as f64) / 1000.0;
                if delta > plan.threshold_pct && moved_ms < plan.noise_floor_ms {
                    report.push(Check::ok("baseline", cname).message(format!(
                        "{msg}; within the noise floor ({moved_ms:+.3} ms < {} ms)",
                        plan.noise_floor_ms
                    )));
                    continue;
                }
                report.push(if delta > plan.threshold_pct {
                    Check::fail("baseline", cname, msg)
                        .hint("latency regressed: hold the deploy or roll back")
                } else {
                    Check::ok("baseline", cname).message(msg)
                });
            }
        }
    }
    let encoded: BTreeMap<String, String> = current
        .iter()
        .map(|(k, h)| (k.clone(), latency::encode(h)))
        .collect();
    if let Some(p) = &plan.save_baseline {
        let file = latency::BaselineFile {
            format: 1,
            recorded: chrono::Utc::now().to_rfc3339(),
            metrics: encoded.clone(),
        };
        std::fs::write(p, serde_json::to_string_pretty(&file).expect("json"))
            .map_err(|e| Error::io("write baseline", p, e))?;
        report.note(format!("baseline saved to {}", p.display()));
    }
    Ok(encoded)
}
