//! `measure_latency`: coordinated-omission-correct latency with saved baselines and a gate.

use crate::baselines;
use crate::cli::{CommonArgs, Context, Tool};
use crate::config::{Color, parse_duration};
use crate::error::{Error, Result};
use crate::latency::Load;
use crate::measure::{self, Metric};
use crate::report::{Check, Report};
use std::path::PathBuf;
use std::time::Duration;

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

    /// When the run passes, store its distributions as the environment's accepted baseline
    /// (its database; earlier ones stay as history) for `--against accepted`. Without a gate it
    /// records unconditionally: the first baseline of an environment, taken on purpose.
    #[arg(long)]
    pub accept_baseline: bool,

    /// The release measured, stored with an accepted baseline (and named when it is compared).
    #[arg(long, value_name = "VERSION")]
    pub release: Option<String>,

    /// The CI build, stored with an accepted baseline (Jenkins: BUILD_TAG).
    #[arg(long, env = crate::env_vars::EnvVars::BUILD, value_name = "ID")]
    pub build: Option<String>,

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
    /// slices (`live`: the colour HAProxy serves now): the gate that survives a busy machine;
    /// or against the environment's last accepted baseline (`accepted`, from its database): the
    /// gate of an environment without a second colour. A missing baseline fails, never passes.
    #[arg(long, value_name = "live|blue|green|accepted", conflicts_with_all = ["baseline", "url"])]
    pub against: Option<Against>,

    /// Length of one A/B slice (with --against); at least 6 slice pairs must fit in --duration.
    #[arg(long, value_parser = parse_duration, allow_hyphen_values = true, default_value = "500ms", value_name = "DURATION")]
    pub slice: Duration,

    /// A percentile moving less than this (milliseconds) is noise, whatever its percentage
    /// (the A/B gate and the baseline gate alike).
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
    /// The environment's last accepted baseline (measure_latency --accept-baseline).
    Accepted,
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
            Some(Against::Accepted) => None,
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
        let mut report = ctx.report();
        // Read the baseline first: a bad file must fail before any load is sent.
        let baseline = match (&self.baseline, self.against) {
            (Some(p), _) => Some(measure::read_baseline(p, &metrics)?),
            (None, Some(Against::Accepted)) => {
                let env_name = ctx.env_name.as_str();
                match baselines::last(&env, env_name, ctx.timeout).await? {
                    Some(s) => {
                        report.push(
                            Check::ok("baseline", "Accepted baseline")
                                .message(format!("comparing with {}", s.describe())),
                        );
                        Some(measure::decode_baseline(
                            &format!("accepted baseline #{}", s.id),
                            &s.metrics,
                            &metrics,
                        )?)
                    }
                    None => {
                        report.push(
                            Check::fail(
                                "baseline",
                                "Accepted baseline",
                                format!("{env_name} has no accepted latency baseline: nothing to compare with, so nothing is passed"),
                            )
                            .hint(format!(
                                "measure a known-good release and accept it: measure_latency -e {env_name} --color {color} --accept-baseline --release VERSION"
                            )),
                        );
                        None
                    }
                }
            }
            (None, _) => None,
        };
        let account = env.test_account.clone();
        if metrics.contains(&Metric::Order) && account.is_none() {
            return Err(Error::config(
                ctx.config.path.display().to_string(),
                "test_account is not set: order latency uses test orders only",
            ));
        }
        let mut rate = if self.max { None } else { Some(self.rate) };
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
        let plan = measure::Plan {
            color,
            reference,
            metrics,
            baseline,
            account,
            rate,
            load,
            url: self.url.clone(),
            connections: self.connections,
            slice: self.slice,
            percentiles: self.percentiles.clone(),
            threshold_pct: self.threshold_pct,
            noise_floor_ms: self.noise_floor_ms,
            report_dir: self.report_dir.clone(),
            save_baseline: self.save_baseline.clone(),
        };
        let measured = measure::run(&plan, &ctx, &env, &mut report).await?;
        if self.accept_baseline {
            // Only a clean, passing run becomes the reference the next release is held to.
            if report.exit_code() == crate::exit::OK {
                let id = baselines::accept(
                    &env,
                    ctx.env_name.as_str(),
                    ctx.timeout,
                    color,
                    self.release.as_deref().unwrap_or(""),
                    self.build.as_deref().unwrap_or(""),
                    &measured,
                )
                .await?;
                report.note(format!(
                    "accepted as {}'s latency baseline #{id}",
                    ctx.env_name.as_str()
                ));
            } else {
                report.note("not accepted as a baseline: the run did not pass");
            }
        }
        Ok(report)
    }
}
