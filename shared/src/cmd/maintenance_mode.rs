//! `maintenance_mode`: enable, disable or show maintenance mode (replaces maintenance_mode.sh).

use crate::cli::{CommonArgs, Context, Tool};
use crate::config::{Color, parse_duration};
use crate::error::Result;
use crate::fleet::Ctx;
use crate::journal::JournalArgs;
use crate::maintenance;
use crate::report::Report;
use std::time::Duration;

/// Maintenance mode: --enable stops new orders, completes in-flight orders (counter-confirmed,
/// with a deadline after which working orders are cancelled), stops strategies and serves the
/// maintenance page; --disable undoes it (strategies stay stopped unless --resume-strategies);
/// --status reads the truth from the services and HAProxy.
#[derive(Debug, clap::Parser)]
#[command(name = "maintenance_mode", version)]
#[command(group(clap::ArgGroup::new("action").required(true).args(["enable", "disable", "status"])))]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,

    #[arg(long)]
    pub enable: bool,
    #[arg(long)]
    pub disable: bool,
    #[arg(long)]
    pub status: bool,

    /// Colour to act on [default: the live colour per HAProxy, else the first colour].
    #[arg(long, value_enum)]
    pub color: Option<Color>,

    /// Shown on the maintenance page.
    #[arg(long, default_value = "scheduled deployment")]
    pub reason: String,

    /// How long in-flight orders may take before working orders are cancelled.
    #[arg(long, value_parser = parse_duration, allow_hyphen_values = true, default_value = "60s", value_name = "DURATION")]
    pub deadline: Duration,

    /// With --disable: also reactivate trading strategies.
    #[arg(long, requires = "disable")]
    pub resume_strategies: bool,

    #[command(flatten)]
    pub journal: JournalArgs,
}

impl Tool for Args {
    const NAME: &'static str = "maintenance_mode";

    fn common(&self) -> &CommonArgs {
        &self.common
    }

    fn changes(&self) -> bool {
        self.enable || self.disable
    }

    fn action(&self) -> &'static str {
        if self.enable {
            "maintenance_on"
        } else {
            "maintenance_off"
        }
    }

    async fn run(self, ctx: Context) -> Result<Report> {
        let mut c = Ctx::for_tool(&ctx, false)?;
        let env = c.env.clone();
        c.load_isolation(&self.journal.dir(&ctx)?).await;
        let mut report = ctx.report();
        if self.status {
            let color = crate::lb::target_color(&env, self.color, ctx.timeout).await?;
            maintenance::status(&c, color, &mut report).await?;
            return Ok(report);
        }
        // Changing the environment: the same lock a cutover or rollout holds, taken before the
        // live colour is read so a cutover cannot move it underneath.
        let journal = self.journal.lock(&ctx, c.cancel.clone()).await?;
        journal
            .hold(async |_| {
                let color = crate::lb::target_color(&env, self.color, ctx.timeout).await?;
                // An enable that failed part-way may have left the page up: it counts as on,
                // so a stuck colour still alerts; only a clean disable clears it.
                let r = if self.enable {
                    report.state(crate::deploy_metrics::State::maintenance(
                        color.as_str(),
                        true,
                    ));
                    maintenance::enable(&c, color, &self.reason, self.deadline, &mut report).await
                } else {
                    maintenance::disable(&c, color, self.resume_strategies, &mut report).await
                };
                if r.is_ok() && self.disable && report.exit_code() == crate::exit::OK {
                    report.state(crate::deploy_metrics::State::maintenance(
                        color.as_str(),
                        false,
                    ));
                }
                r
            })
            .await?;
        Ok(report)
    }
}
