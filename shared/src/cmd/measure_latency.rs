//! `measure_latency`: coordinated-omission-correct latency with saved baselines and a gate.

use crate::cli::{CommonArgs, Context, Tool};
use crate::config::{Color, Role, parse_duration};
use crate::error::{Error, Result};
use crate::latency::{self, Load, Probe};
use crate::report::{Check, Report};
use std::collections::BTreeMap;
use std::path::PathBuf;
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
    fn role(self) -> Role {
        match self {
            Metric::Order | Metric::Health => Role::TradingEngine,
            Metric::Marketdata => Role::Marketdata,
            Metric::Risk => Role::RiskEngine,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Metric::Order => "order",
            Metric::Marketdata => "marketdata",
            Metric::Risk => "risk",
            Metric::Health => "health",
        }
    }
}

/// Measure order, market-data and risk-check latency at a constant rate, timing every request
/// from its intended send time (no coordinated omission), and gate against a saved baseline.
#[derive(Debug, clap::Parser)]
#[command(name = "measure_latency", version)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,

    /// Production safety: test account only, rate capped at 50/s, stop early on errors.
    #[arg(long)]
    pub production: bool,

    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "order,marketdata,risk"
    )]
    pub metrics: Vec<Metric>,

    /// Requests per second (open loop, corrected for coordinated omission).
    #[arg(long, default_value_t = 500.0, conflicts_with = "max")]
    pub rate: f64,

    /// Closed loop: as fast as the connections allow (maximum throughput).
    #[arg(long)]
    pub max: bool,

    /// Measurement time per metric (after warm-up).
    #[arg(long, value_parser = parse_duration, allow_hyphen_values = true, default_value = "30s", conflicts_with = "requests", value_name = "DURATION")]
    pub duration: Duration,

    /// Measure this many requests per metric instead of a duration.
    #[arg(long, value_name = "N")]
    pub requests: Option<u64>,

    #[arg(long, value_parser = crate::config::parse_duration_or_zero, allow_hyphen_values = true, default_value = "5s", value_name = "DURATION")]
    pub warmup: Duration,

    #[arg(long, default_value_t = 4)]
    pub connections: usize,

    /// Write every measured metric's histogram to this file (HdrHistogram V2+DEFLATE, base64).
    #[arg(long, value_name = "FILE")]
    pub save_baseline: Option<PathBuf>,

    /// Compare with this baseline; exit 1 when a gated percentile exceeds it by more than the threshold.
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,

    #[arg(long, default_value_t = 10.0)]
    pub threshold_pct: f64,

    /// Percentiles to print and gate.
    #[arg(long, value_delimiter = ',', default_value = "50,90,99,99.9")]
    pub percentiles: Vec<f64>,

    /// Colour to measure [default: the first colour].
    #[arg(long, value_enum)]
    pub color: Option<Color>,

    /// Measure this base URL instead of the configured services.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,

    /// Judge `--color` against another colour measured in the same window, in alternating
    /// slices (`live`: the colour HAProxy serves now): the gate that survives a busy machine.
    #[arg(long, value_name = "live|blue|green", conflicts_with_all = ["baseline", "url"])]
    pub against: Option<Against>,

    /// Length of one A/B slice (with --against); at least 6 slice pairs must fit in --duration.
    #[arg(long, value_parser = parse_duration, allow_hyphen_values = true, default_value = "500ms", value_name = "DURATION")]
    pub slice: Duration,

    /// A/B: a percentile moving less than this (milliseconds) is noise, whatever its percentage.
    #[arg(long, default_value_t = 1.0, value_name = "MS")]
    pub noise_floor_ms: f64,

    /// Write `<metric>.hgrm` and `<metric>.svg` (baseline and current) here for Jenkins to archive.
    #[arg(long, value_name = "DIR")]
    pub report_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Against {
    /// The colour the load balancers serve now.
    Live,
    Blue,
    Green,
}

fn ms(us: u64) -> String {
    format!("{:.3} ms", us as f64 / 1000.0)
}

impl Tool for Args {
    const NAME: &'static str = "measure_latency";

    fn common(&self) -> &CommonArgs {
        &self.common
    }

    async fn run(self, ctx: Context) -> Result<Report> {
        let env = ctx.env()?.clone();
        let color = self.color.unwrap_or(env.colors[0]);
        let reference = match self.against {
            None => None,
            Some(Against::Blue) => Some(Color::Blue),
            Some(Against::Green) => Some(Color::Green),
            Some(Against::Live) => Some(crate::lb::target_color(&env, None, ctx.timeout).await?),
        };
        if let Some(r) = reference {
            if r == color {
                return Err(Error::Usage(format!(
                    "--against resolves to {r}, the colour being measured: pass --color the new colour"
                )));
            }
            if self.requests.is_some() || self.duration < self.slice * 6 {
                return Err(Error::Usage(format!(
                    "--against needs --duration ≥ 6 × --slice ({:?}) so the sign test can reach significance",
                    self.slice * 6
                )));
            }
        }
        let mut metrics = self.metrics.clone();
        metrics.sort();
        metrics.dedup();
        // Read the baseline first: a bad file must fail before any load is sent.
        let baseline = match &self.baseline {
            None => None,
            Some(p) => {
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
                let want: Vec<&str> = metrics.iter().map(|m| m.name()).collect();
                let have: Vec<&str> = b.metrics.keys().map(String::as_str).collect();
                if want.iter().any(|m| !have.contains(m)) {
                    return Err(Error::config(
                        p.display().to_string(),
                        format!(
                            "the baseline holds [{}], this run measures [{}]: record a baseline for this metric set",
                            have.join(", "),
                            want.join(", ")
                        ),
                    ));
                }
                let mut hs = BTreeMap::new();
                for (k, v) in &b.metrics {
                    hs.insert(
                        k.clone(),
                        latency::decode(v).map_err(|e| {
                            Error::config(
                                p.display().to_string(),
                                format!("histogram `{k}` is corrupt: {e}"),
                            )
                        })?,
                    );
                }
                Some(hs)
            }
        };
        let account = env.test_account.clone();
        if metrics.contains(&Metric::Order) && account.is_none() {
            return Err(Error::config(
                ctx.config.path.display().to_string(),
                "test_account is not set: order latency uses test orders only",
            ));
        }
        let mut rate = if self.max { None } else { Some(self.rate) };
        let mut report = ctx.report();
        if self.production && (self.max || self.rate > 50.0) {
            report.note("--production caps the rate at 50 requests/s");
            rate = Some(self.rate.min(50.0));
        }
        let load = Load {
            rate,
            connections: self.connections,
            warmup: self.warmup,
            duration: if self.requests.is_some() {
                None
            } else {
                Some(self.duration)
            },
            requests: self.requests,
            max_error_ratio: if self.production { Some(0.01) } else { None },
            timeout: ctx.timeout,
        };
        let base_on = |color: Color, role: Role| -> Result<String> {
            if let Some(u) = &self.url {
                return Ok(u.trim_end_matches('/').to_string());
            }
            env.urls(color, role)
                .first()
                .map(|u| u.to_string())
                .ok_or_else(|| {
                    Error::config(
                        ctx.config.path.display().to_string(),
                        format!("no {role} service for {color}"),
                    )
                })
        };
        let base_for = |role: Role| base_on(color, role);
        let run_id = format!("{:x}", chrono::Utc::now().timestamp_millis());
        let sym = env.smoke.symbol.clone();
        let mut current = BTreeMap::new();
        for m in &metrics {
            let probe = match m {
                Metric::Order => {
                    let (acc, sym, run_id) = (
                        account.clone().unwrap_or_default(),
                        sym.clone(),
                        run_id.clone(),
                    );
                    Probe {
                        name: "order".into(),
                        base: base_for(m.role())?,
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
                        base: base_for(m.role())?,
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
                        base: base_for(m.role())?,
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
                    base: base_for(m.role())?,
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
                self.connections
            );
            let mut ab_checks = vec![];
            let res = match reference {
                None => latency::measure(&probe, &load, &ctx.cancel).await,
                Some(rc) => {
                    let other = latency::Probe {
                        base: base_on(rc, m.role())?,
                        ..probe.clone()
                    };
                    match latency::interleaved(&probe, &other, &load, self.slice, &ctx.cancel).await
                    {
                        Ok(run) => {
                            for p in &self.percentiles {
                                let v = latency::ab_verdict(
                                    &run,
                                    *p,
                                    self.threshold_pct,
                                    (self.noise_floor_ms * 1000.0) as u64,
                                );
                                let name = format!("{} p{p} vs live", m.name());
                                let data = serde_json::json!({
                                    "reference_color": rc.as_str(), "reference_us": v.reference_us,
                                    "candidate_us": v.candidate_us, "delta_pct": v.delta_pct,
                                    "slower_pairs": v.slower_pairs.0, "differing_pairs": v.slower_pairs.1,
                                    "p_value": v.p_value, "steal": run.steal,
                                });
                                let why = format!("{color} vs {rc}: {}", v.why);
                                ab_checks.push(match v.outcome {
                                    latency::AbOutcome::Pass => Check::ok("baseline", name).message(why),
                                    latency::AbOutcome::Fail => Check::fail("baseline", name, why)
                                        .hint("latency regressed against the live colour: hold the deploy"),
                                    latency::AbOutcome::NotGated => Check::skip("baseline", name, format!("not gated: {why}")),
                                    latency::AbOutcome::Inconclusive => Check::warn("baseline", name, why)
                                        .hint("not judged: a human decides, or measure again"),
                                }
                                .data(data));
                            }
                            Ok(run.candidate)
                        }
                        Err(e) => Err(e),
                    }
                }
            };
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
                if let Some(u) = &self.url {
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
            let res = res?;
            let h = &res.corrected;
            let pct: Vec<String> = self
                .percentiles
                .iter()
                .chain([99.99].iter())
                .map(|p| format!("p{p} {}", ms(h.value_at_percentile(*p))))
                .collect();
            let msg = format!(
                "{} · max {} · n={} · errors {} · {:.0} req/s · naive p99 {}{}{}",
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
                    m.name(),
                    format!(
                        "{msg}; {}",
                        res.first_error
                            .clone()
                            .unwrap_or_else(|| "no successful request".into())
                    ),
                )
                .hint("the target answered errors: see its health and logs")
            } else {
                Check::ok("latency", m.name()).message(msg)
            };
            report.push(check.data(data));
            let inconclusive = ab_checks
                .iter()
                .any(|c| c.status == crate::report::Status::Warn);
            for c in ab_checks {
                report.push(c);
            }
            if inconclusive {
                report.set_inconclusive();
            }
            if let Some(s) = &res.stopped_early {
                report.note(format!("{}: {s}", m.name()));
            }
            if let Some(dir) = &self.report_dir {
                std::fs::create_dir_all(dir)
                    .map_err(|e| Error::io("create report directory", dir, e))?;
                let p = dir.join(format!("{}.hgrm", m.name()));
                std::fs::write(&p, latency::hgrm(h)).map_err(|e| Error::io("write", &p, e))?;
                let mut series = vec![(format!("{} current", m.name()), h)];
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
            current.insert(m.name().to_string(), res.corrected);
        }
        if let Some(b) = &baseline {
            for (name, h) in &current {
                let old = &b[name];
                for p in &self.percentiles {
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
                        self.threshold_pct
                    );
                    let cname = format!("{name} p{p} vs baseline");
                    report.push(if delta > self.threshold_pct {
                        Check::fail("baseline", cname, msg)
                            .hint("latency regressed: hold the deploy or roll back")
                    } else {
                        Check::ok("baseline", cname).message(msg)
                    });
                }
            }
        }
        if let Some(p) = &self.save_baseline {
            let file = latency::BaselineFile {
                format: 1,
                recorded: chrono::Utc::now().to_rfc3339(),
                metrics: current
                    .iter()
                    .map(|(k, h)| (k.clone(), latency::encode(h)))
                    .collect(),
            };
            std::fs::write(p, serde_json::to_string_pretty(&file).expect("json"))
                .map_err(|e| Error::io("write baseline", p, e))?;
            report.note(format!("baseline saved to {}", p.display()));
        }
        Ok(report)
    }
}
