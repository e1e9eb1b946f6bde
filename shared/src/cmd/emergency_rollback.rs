//! `emergency_rollback`: the guide's §10 "total deployment failure" (replaces
//! emergency_rollback.sh).

use crate::cli::{CommonArgs, Context, Tool};
use crate::config::{Color, parse_duration};
use crate::error::Result;
use crate::fleet::Ctx;
use crate::journal::{Entry, Journal, JournalArgs};
use crate::report::{Check, Report};
use std::time::Duration;

/// Put traffic back on the previous colour now, whatever the journal says: the live colour is
/// read from the load balancers, the previous colour's healthy servers take orders, every load
/// balancer switches, the failed colour drains (bounded) and is emergency-stopped. Takes no
/// lock (a hung cutover may hold it); journals what it did and notifies the team.
#[derive(Debug, clap::Parser)]
#[command(name = "emergency_rollback", version)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,

    /// The colour to return to [default: the colour the load balancers do not send traffic to].
    #[arg(long, value_enum)]
    pub to: Option<Color>,

    /// How long the failed colour's sessions may drain before it is cut off.
    #[arg(long, value_parser = parse_duration, default_value = "5s", value_name = "DURATION")]
    pub drain_deadline: Duration,

    /// Why (journaled and in the notification).
    #[arg(long, default_value = "total deployment failure")]
    pub reason: String,

    #[command(flatten)]
    pub journal: JournalArgs,
}

impl Tool for Args {
    const NAME: &'static str = "emergency_rollback";

    fn common(&self) -> &CommonArgs {
        &self.common
    }

    fn changes(&self) -> bool {
        true
    }

    fn action(&self) -> &'static str {
        "rollback"
    }

    async fn run(self, ctx: Context) -> Result<Report> {
        let mut c = Ctx::for_tool(&ctx, false)?;
        let env = c.env.clone();
        let journal_dir = self.journal.dir(&ctx)?;
        c.load_isolation(&journal_dir).await;
        let mut report = ctx.report();
        let (failed, target) =
            crate::emergency::rollback(&c, self.to, self.drain_deadline, &mut report).await?;

        // The record and the notification never undo or delay what was done: each is tried,
        // and a failure is a warning naming what to do by hand.
        let run_id = format!("emergency-rollback-{:x}", crate::cutover::now_ms());
        let outcome = if report.outcome == crate::report::Outcome::Fail {
            "failed"
        } else {
            "finished"
        };
        let entry = |step: &str, state: &str, detail: &str| Entry {
            run_id: run_id.clone(),
            environment: c.env_name.clone(),
            action: "rollback".into(),
            from_color: failed.to_string(),
            to_color: target.to_string(),
            step: step.into(),
            state: state.into(),
            detail: detail.into(),
            at: String::new(),
            deployment_id: String::new(),
        };
        let record = async {
            let j = Journal::open_unlocked(&c.env_name, &env, ctx.timeout, &journal_dir).await?;
            j.write(&entry(
                "switch_back",
                "done",
                &format!("emergency: {}", self.reason),
            ))
            .await?;
            j.write(&entry(
                "stop_new",
                "done",
                "emergency stop of the failed colour",
            ))
            .await?;
            j.write(&entry("finished", outcome, &self.reason)).await
        };
        report.push(match record.await {
            Ok(()) => Check::ok("emergency rollback", "Journaled")
                .message(format!("run {run_id}: {failed} → {target}")),
            Err(e) => Check::warn("emergency rollback", "Journaled", e.to_string())
                .hint("record the rollback in the incident log by hand; the journal's next cutover status may not show it"),
        });
        let text = format!(
            ":rotating_light: *EMERGENCY ROLLBACK* ({}): traffic {} {target}, {failed} stopped — {}",
            c.env_name,
            if outcome == "finished" {
                "back on"
            } else {
                "NOT fully back on"
            },
            self.reason
        );
        let mut notified = crate::cmd::notify::announce(
            &env,
            ctx.timeout,
            "emergency rollback",
            "Team notified",
            &text,
        )
        .await;
        if notified.status == crate::report::Status::Warn {
            notified = notified.hint("tell the team yourself: the rollback is done");
        }
        report.push(notified);
        if let Some(s) = crate::cmd::cutover::live_state(&env, ctx.timeout).await {
            report.state(s);
        }
        Ok(report)
    }
}
