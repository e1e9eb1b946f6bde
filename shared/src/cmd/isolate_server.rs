//! `isolate_server`: take one server out of service and put it back (replaces the guide's §10
//! isolate_server.sh).

use crate::cli::{CommonArgs, Context, Tool};
use crate::config::parse_duration;
use crate::emergency::WorkingOrders;
use crate::error::{Error, Result};
use crate::fleet::Ctx;
use crate::journal::JournalArgs;
use crate::report::Report;
use std::time::Duration;

/// Isolate a failed server: every load balancer drains it, then keeps it in maintenance; it
/// stops taking orders (working orders cancelled or kept); every other tool skips it until
/// `--return`, which puts it back only when it is healthy, runs its colour's version and passes
/// the smoke checks against it alone.
#[derive(Debug, clap::Parser)]
#[command(name = "isolate_server", version)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,

    /// The server's name (`environments.<env>.servers`, or its URL's host).
    #[arg(value_name = "SERVER")]
    pub server: String,

    /// Put the isolated server back in service.
    #[arg(long = "return")]
    pub restore: bool,

    /// What to do with the server's working orders when isolating it.
    #[arg(long, value_enum, default_value = "cancel", conflicts_with = "restore")]
    pub working_orders: WorkingOrders,

    /// Why (journaled, shown by every tool that skips the server).
    #[arg(
        long,
        default_value = "isolated by an operator",
        conflicts_with = "restore"
    )]
    pub reason: String,

    /// How long the load balancers may drain the server's sessions before maintenance.
    #[arg(long, value_parser = parse_duration, default_value = "30s", value_name = "DURATION")]
    pub drain_deadline: Duration,

    #[command(flatten)]
    pub journal: JournalArgs,
}

impl Tool for Args {
    const NAME: &'static str = "isolate_server";

    fn common(&self) -> &CommonArgs {
        &self.common
    }

    fn changes(&self) -> bool {
        true
    }

    fn action(&self) -> &'static str {
        if self.restore { "return" } else { "isolate" }
    }

    async fn run(self, ctx: Context) -> Result<Report> {
        let mut c = Ctx::for_tool(&ctx, false)?;
        let Some(server) = c.fleet.by_name(&self.server).cloned() else {
            let names: Vec<&str> = c.fleet.all().iter().map(|s| s.name.as_str()).collect();
            return Err(Error::Usage(format!(
                "no server named `{}` in environment {}: one of {}",
                crate::config::shown(&self.server),
                ctx.env_name,
                names.join(", ")
            )));
        };
        let mut report = ctx.report();
        let journal = self.journal.lock(&ctx, c.cancel.clone()).await?;
        journal
            .hold(async |journal| {
                let isolated = crate::fleet::isolated_in(&journal.entries(&c.env_name).await?);
                let already = isolated.iter().any(|i| i.server == server.name);
                if self.restore {
                    if !already {
                        return Err(Error::Conflict(format!(
                            "{} is not isolated: nothing to return",
                            server.name
                        )));
                    }
                    // Its peers' state counts without it and the other isolated servers.
                    let others: Vec<_> = isolated
                        .into_iter()
                        .filter(|i| i.server != server.name)
                        .collect();
                    c.isolate(&others);
                    let r = crate::emergency::restore(&c, journal, &server, &mut report).await;
                    if r.is_ok() && report.exit_code() == crate::exit::OK {
                        report.state(crate::deploy_metrics::State::isolation(&server.name, false));
                    }
                    r
                } else {
                    if already {
                        report.note(format!(
                            "{} was already isolated: the steps run again",
                            server.name
                        ));
                    }
                    // Isolated from its first step on: a half-done isolation is still one.
                    report.state(crate::deploy_metrics::State::isolation(&server.name, true));
                    crate::emergency::isolate(
                        &c,
                        journal,
                        &server,
                        self.working_orders,
                        &self.reason,
                        self.drain_deadline,
                        &mut report,
                    )
                    .await
                }
            })
            .await?;
        Ok(report)
    }
}
