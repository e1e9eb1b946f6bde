//! `strategy_rollout`: staged strategy activation (guide §5 Phase 4: "Do NOT enable all
//! strategies at once!").

use crate::cli::{CommonArgs, Context, DryRunArgs, Tool};
use crate::config::{Color, Role, parse_duration};
use crate::contract::Strategy;
use crate::cutover::{self as co, Ctx, Figurer};
use crate::error::{Error, Result};
use crate::journal::{Entry, Journal};
use crate::metrics::{self, Outcome};
use crate::report::{Check, Report};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Activate a strategy in steps (10 % → 50 % → 100 %), holding each step and judging it with
/// compare_metrics' judge against the snapshot taken before activation; then the next strategy.
/// A failed judgement sets the strategy back to its last good size and exits 1.
#[derive(Debug, clap::Parser)]
#[command(name = "strategy_rollout", version)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,

    #[command(flatten)]
    pub dry: DryRunArgs,

    /// The first (lowest-risk) strategy.
    #[arg(long, value_name = "NAME")]
    pub strategy: String,

    /// Size steps in percent.
    #[arg(long, value_delimiter = ',', default_value = "10,50,100")]
    pub steps: Vec<u8>,

    /// How long to hold and judge each step.
    #[arg(long, value_parser = parse_duration, default_value = "5m", value_name = "DURATION")]
    pub hold: Duration,

    /// Then these strategies, one at a time, each through the same steps.
    #[arg(long, value_delimiter = ',', value_name = "NAME,…")]
    pub then: Vec<String>,

    /// Colour whose trading services to act on [default: the live colour, else the first].
    #[arg(long, value_enum)]
    pub color: Option<Color>,

    /// Sampling interval of the judge.
    #[arg(long, value_parser = parse_duration, default_value = "500ms", value_name = "DURATION")]
    pub tick: Duration,

    /// Sample this long before the first activation (the judge's baseline).
    #[arg(long, value_parser = parse_duration, default_value = "5s", value_name = "DURATION")]
    pub baseline_window: Duration,

    /// Where the journal lives when the environment has no database.
    #[arg(long, value_name = "DIR", default_value = ".deploykit")]
    pub journal_dir: PathBuf,
}

impl Tool for Args {
    const NAME: &'static str = "strategy_rollout";

    fn common(&self) -> &CommonArgs {
        &self.common
    }

    async fn run(self, ctx: Context) -> Result<Report> {
        if self.steps.is_empty()
            || self.steps.iter().any(|s| *s == 0 || *s > 100)
            || self.steps.windows(2).any(|w| w[0] >= w[1])
        {
            return Err(Error::Usage(
                "--steps must be increasing percentages between 1 and 100, e.g. 10,50,100".into(),
            ));
        }
        let env = ctx.env()?.clone();
        let token = env.admin_token()?;
        let c = Ctx::new(
            ctx.env_name.as_str(),
            env.clone(),
            Some(token),
            ctx.timeout,
            ctx.cancel.clone(),
            self.dry.dry_run,
        );
        let color = crate::lb::target_color(&env, self.color, ctx.timeout).await?;
        let engines = c.clients(color, &[Role::TradingEngine]);
        if engines.is_empty() {
            return Err(Error::config(
                ctx.config.path.display().to_string(),
                format!("no trading-engine service for {color}"),
            ));
        }
        let strategies: Vec<String> = std::iter::once(self.strategy.clone())
            .chain(self.then.iter().cloned())
            .collect();
        let mut report = ctx.report();
        if self.dry.dry_run {
            for s in &strategies {
                for p in &self.steps {
                    let urls: Vec<_> = engines
                        .iter()
                        .map(|e| {
                            format!(
                                "POST {}/admin/strategies/{s} {{\"active\":true,\"size_pct\":{p}}}",
                                e.base()
                            )
                        })
                        .collect();
                    report.push(Check::skip(
                        "plan",
                        format!("{s} at {p}%"),
                        format!(
                            "dry run: {}; hold {:?} and judge error rate and latency",
                            urls.join("; "),
                            self.hold
                        ),
                    ));
                }
            }
            return Ok(report);
        }
        let journal = Journal::open(
            ctx.env_name.as_str(),
            &env,
            ctx.timeout,
            self.journal_dir.clone(),
        )
        .await?;
        let run_id = format!("rollout-{}", co::now_ms());
        let note = |step: String, state: &str, detail: String| Entry {
            run_id: run_id.clone(),
            environment: ctx.env_name.to_string(),
            action: "strategy_rollout".into(),
            from_color: color.to_string(),
            to_color: color.to_string(),
            step,
            state: state.into(),
            detail,
            at: String::new(),
        };
        // The judge's baseline: the colour before anything is activated.
        let base = co::baseline(&c, color, self.baseline_window, self.tick).await?;
        let specs = co::watch_specs(&env);
        let result: Result<()> = async {
            for s in &strategies {
                let mut last_good: Option<u8> = None;
                for &p in &self.steps {
                    let step = format!("{s} at {p}%");
                    journal.write(&note(step.clone(), "started", String::new())).await?;
                    let t = Instant::now();
                    for e in &engines {
                        e.set_strategy(s, &Strategy { active: true, size_pct: p })
                            .await
                            .map_err(|er| Error::unreachable(e.base().to_string(), er))?;
                    }
                    let mut fig = Figurer::start(c.clients(color, &Role::ALL)).await.map_err(|e| Error::unreachable("trading services", e))?;
                    let mut failed = None;
                    let mut last_note = Instant::now();
                    let mut verdicts = vec![];
                    while t.elapsed() < self.hold {
                        tokio::select! {
                            _ = tokio::time::sleep(self.tick) => {}
                            _ = ctx.cancel.cancelled() => return Err(Error::Interrupted(crate::error::Signal::Int)),
                        }
                        if let Err(e) = co::health(&c, color, None).await {
                            failed = Some(format!("unhealthy: {e}"));
                            break;
                        }
                        fig.sample().await.map_err(|e| Error::unreachable("trading services", e))?;
                        verdicts = metrics::judge_all(&specs, &base, &fig.snapshot());
                        if let Some(v) = verdicts.iter().find(|v| v.outcome == Outcome::Fail) {
                            failed = Some(format!("{}: {}", v.metric, v.why));
                            break;
                        }
                        if last_note.elapsed() >= Duration::from_secs(5) {
                            tracing::info!("{step}: holding {}s/{}s, {}", t.elapsed().as_secs(), self.hold.as_secs(), verdicts.iter().map(|v| format!("{} {:?}", v.metric, v.outcome)).collect::<Vec<_>>().join(", "));
                            last_note = Instant::now();
                        }
                    }
                    match failed {
                        None => {
                            journal.write(&note(step.clone(), "done", String::new())).await?;
                            report.push(Check::ok("rollout", step).message(format!("held {:?}: {}", self.hold, verdicts.iter().map(|v| v.why.clone()).collect::<Vec<_>>().join("; "))).took(t.elapsed()));
                            last_good = Some(p);
                        }
                        Some(why) => {
                            // Back to the last good size, or off if the first step failed.
                            let back = Strategy { active: last_good.is_some(), size_pct: last_good.unwrap_or(0) };
                            for e in &engines {
                                let _ = e.set_strategy(s, &back).await;
                            }
                            let restored = match last_good {
                                Some(g) => format!("{s} set back to {g}%"),
                                None => format!("{s} deactivated"),
                            };
                            journal.write(&note(step.clone(), "failed", format!("{why}; {restored}"))).await?;
                            report.push(Check::fail("rollout", step, format!("{why}; {restored}")).hint("investigate before retrying; later strategies were not started").took(t.elapsed()));
                            return Ok(());
                        }
                    }
                }
            }
            Ok(())
        }
        .await;
        journal
            .write(&note("finished".into(), "finished", String::new()))
            .await
            .ok();
        journal.release();
        result?;
        Ok(report)
    }
}
