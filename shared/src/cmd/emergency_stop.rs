//! `emergency_stop`: the guide's §10 kill switch (replaces emergency_stop.sh).

use crate::cli::{CommonArgs, Context, Tool};
use crate::config::{Color, parse_duration};
use crate::error::Result;
use crate::fleet::Fleet;
use crate::http::Http;
use crate::journal::JournalArgs;
use crate::report::Report;
use std::time::Duration;

/// Stop all trading now: on every trading server of every colour at once, refuse new orders,
/// cancel every working order, switch trading and strategies off (read back), then serve the
/// maintenance page. Never waits for a drain or the deploy lock; tries every server; exits 1
/// naming each server it could not confirm stopped (stop those by hand). Safe to run again.
#[derive(Debug, clap::Parser)]
#[command(name = "emergency_stop", version)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,

    /// Stop only this colour [default: every colour].
    #[arg(long, value_enum)]
    pub color: Option<Color>,

    /// How long one server's whole stop may take; a server that has not confirmed by then is
    /// reported as not stopped. Every server runs at once, so this bounds the whole stop.
    #[arg(long, value_parser = parse_duration, default_value = "5s", value_name = "DURATION")]
    pub deadline: Duration,

    /// Shown on the maintenance page.
    #[arg(long, default_value = "trading halted")]
    pub reason: String,

    #[command(flatten)]
    pub journal: JournalArgs,
}

impl Tool for Args {
    const NAME: &'static str = "emergency_stop";

    fn common(&self) -> &CommonArgs {
        &self.common
    }

    fn changes(&self) -> bool {
        true
    }

    async fn run(self, ctx: Context) -> Result<Report> {
        let env = ctx.env()?.clone();
        let token = env.admin_token()?;
        let http =
            Http::new(env.timeouts.connect.0.min(self.deadline), self.deadline).with_token(token);
        let fleet = Fleet::new(&env, http, self.deadline);
        let colors = match self.color {
            Some(c) => vec![c],
            None => env.colors.clone(),
        };
        let journal_dir = self.journal.dir(&ctx)?;
        let isolated =
            crate::fleet::isolated(ctx.env_name.as_str(), &env, self.deadline, &journal_dir);
        let mut report = ctx.report();
        crate::emergency::stop(&env, &fleet, isolated, &colors, &self.reason, &mut report).await;
        Ok(report)
    }
}
