//! `generate_deployment_report`: the deploy journal as a deployment report with DORA figures.

use crate::cli::{CommonArgs, Context, Tool};
use crate::config::parse_span;
use crate::deploy_report::{self as dr, Outcome};
use crate::error::Result;
use crate::journal::{Journal, JournalArgs};
use crate::report::{Check, Report};
use std::time::Duration;

/// Report every deployment of the environment's deploy journal — stages, durations, verdicts,
/// rollbacks — and the DORA figures across them (deployment frequency, change failure rate,
/// time to recovery). Past failures are reported, not failed on: the exit code is 0 unless the
/// journal cannot be read.
#[derive(Debug, clap::Parser)]
#[command(name = "generate_deployment_report", version)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,

    /// Window of the DORA figures and of the listed runs.
    #[arg(long, value_parser = parse_span, allow_hyphen_values = true, default_value = "30days", value_name = "DURATION")]
    pub since: Duration,

    /// One deployment: the cutovers of this version (guide Phase 5: `--deployment v3.2.2`), with
    /// the build, commit and change ticket they journaled, and what became of them
    #[arg(long, value_name = "VERSION")]
    pub deployment: Option<String>,

    #[command(flatten)]
    pub journal: JournalArgs,
}

impl Tool for Args {
    const NAME: &'static str = "generate_deployment_report";

    fn common(&self) -> &CommonArgs {
        &self.common
    }

    async fn run(self, ctx: Context) -> Result<Report> {
        let env = ctx.env()?.clone();
        let entries = Journal::read(
            ctx.env_name.as_str(),
            &env,
            ctx.timeout,
            &self.journal.dir(&ctx)?,
        )
        .await?;
        let now = chrono::Utc::now();
        let since = now - chrono::Duration::from_std(self.since).unwrap_or(chrono::Duration::MAX);
        let runs: Vec<dr::Run> = dr::runs(&entries)
            .into_iter()
            .filter(|r| r.started >= since)
            .collect();
        let mut report = ctx.report();
        if let Some(version) = &self.deployment {
            let of = |r: &dr::Run| {
                r.release.as_ref().and_then(|x| x.version.as_deref()) == Some(version.as_str())
            };
            let mine: Vec<&dr::Run> = runs.iter().filter(|r| of(r)).collect();
            if mine.is_empty() {
                let mut known: Vec<&str> = runs
                    .iter()
                    .filter_map(|r| r.release.as_ref()?.version.as_deref())
                    .collect();
                known.sort_unstable();
                known.dedup();
                report.push(
                    Check::fail(
                        "deployment",
                        format!("Deployment of {version}"),
                        format!(
                            "no cutover of {version} in the journal of {} in this window; journaled versions: {}",
                            ctx.env_name,
                            if known.is_empty() { "none".into() } else { known.join(", ") }
                        ),
                    )
                    .hint("check the version, or widen the window with --since"),
                );
            }
            let n = mine.len();
            for (i, r) in mine.into_iter().enumerate() {
                // A stable name (JUnit history follows names); the run id goes in the message.
                let nth = if n > 1 {
                    format!(" #{}", i + 1)
                } else {
                    String::new()
                };
                let name = format!("Deployment of {version}{nth} ({} → {})", r.from, r.to);
                let c = match r.outcome {
                    Outcome::Succeeded => Check::ok("deployment", name),
                    _ => Check::warn("deployment", name, r.detail.clone()),
                };
                report.push(
                    c.message(format!(
                        "{}: {}; {}; {}",
                        r.run_id,
                        r.outcome.text(),
                        r.release_text(),
                        r.stages_text()
                    ))
                    .data(serde_json::to_value(r).expect("json")),
                );
            }
            return Ok(report);
        }
        let dora = dr::dora(&runs, self.since, now);
        for r in &runs {
            let c = match r.outcome {
                Outcome::Succeeded => Check::ok(r.kind.clone(), r.title()),
                _ => Check::warn(r.kind.clone(), r.title(), r.detail.clone()),
            };
            let detail = if r.outcome == Outcome::Succeeded || r.detail.is_empty() {
                String::new()
            } else {
                format!("; {}", r.detail)
            };
            report.push(
                c.message(format!("{}{detail}", r.stages_text()))
                    .data(serde_json::to_value(r).expect("json")),
            );
        }
        report.push(
            Check::ok("dora", format!("DORA, last {:.0} days", dora.window_days))
                .message(dora.summary())
                .data(serde_json::to_value(&dora).expect("json")),
        );
        if runs.is_empty() {
            report.note(format!(
                "no runs in the journal of {} in this window",
                ctx.env_name
            ));
        }
        report.set_page(dr::html(ctx.env_name.as_str(), &runs, &dora));
        Ok(report)
    }
}
