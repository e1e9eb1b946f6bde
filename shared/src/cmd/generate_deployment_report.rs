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
        let dora = dr::dora(&runs, self.since, now);
        let mut report = ctx.report();
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
