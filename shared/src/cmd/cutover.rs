//! `cutover`: blue-green switch on the environment's HAProxy instances.

use crate::cli::{CommonArgs, Context, DryRunArgs, Tool};
use crate::config::{Color, parse_duration};
use crate::cutover::ops;
use crate::error::{Error, Result};
use crate::fleet::Ctx;
use crate::journal::JournalArgs;
use crate::report::Report;
use crate::watch;
use std::time::Duration;

/// Blue-green cutover (replaces cutover_to_green.sh, rollback_to_blue.sh,
/// warmup_green_environment.sh, verify_green_environment.sh, shutdown_blue_environment.sh).
#[derive(Debug, clap::Parser)]
#[command(name = "cutover", version)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,

    #[command(flatten)]
    pub dry: DryRunArgs,

    #[command(flatten)]
    pub journal: JournalArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Open connections, load caches and send test orders on the idle colour.
    Warmup {
        #[arg(long, value_enum)]
        to: Color,
        /// Rounds of requests.
        #[arg(long, default_value_t = 20)]
        rounds: u32,
    },
    /// The idle colour is healthy at the expected version and passes the smoke checks.
    Verify {
        #[arg(long, value_enum)]
        to: Color,
        #[arg(long, value_name = "VERSION")]
        expect_version: Option<String>,
    },
    /// Stop new orders on the live colour, drain it, switch every HAProxy to `--to`, connect
    /// production feeds, activate trading, watch — or roll back automatically and exit 1.
    Run {
        #[arg(long, value_enum)]
        to: Color,
        /// How long to watch the new colour before declaring success.
        #[arg(long, value_parser = parse_duration, allow_hyphen_values = true, default_value = "5m", value_name = "DURATION")]
        watch: Duration,
        /// The new colour must run this version.
        #[arg(long, value_name = "VERSION")]
        expect_version: Option<String>,
        /// How long the old colour may take to finish in-flight work.
        #[arg(long, value_parser = parse_duration, allow_hyphen_values = true, default_value = "60s", value_name = "DURATION")]
        drain_deadline: Duration,
        /// Sample the live colour this long before switching (the watch's baseline).
        #[arg(long, value_parser = parse_duration, allow_hyphen_values = true, default_value = "3s", value_name = "DURATION")]
        baseline_window: Duration,
        /// Watch sampling interval.
        #[arg(long, value_parser = parse_duration, allow_hyphen_values = true, default_value = "250ms", value_name = "DURATION")]
        tick: Duration,
        /// Continue the journal's interrupted cutover from its last completed step.
        #[arg(long)]
        resume: bool,
        /// The CI build this cutover belongs to (Jenkins: BUILD_TAG), journaled with the run so
        /// that build's failure handler rolls back only a switch it made (`rollback --if-switched-by`)
        #[arg(long, env = crate::env_vars::EnvVars::BUILD, value_name = "ID")]
        build: Option<String>,
        /// The commit deployed (Jenkins: GIT_COMMIT), journaled for the deployment report
        #[arg(long, env = crate::env_vars::EnvVars::GIT_COMMIT, value_name = "SHA")]
        commit: Option<String>,
        /// The change ticket of the deploy (CHANGE_TICKET), journaled for the deployment report
        #[arg(long, env = crate::env_vars::EnvVars::CHANGE_TICKET, value_name = "TICKET")]
        change_ticket: Option<String>,
        /// Why the deployment policy was overridden (OVERRIDE_POLICY), journaled with the run
        #[arg(long, env = crate::env_vars::EnvVars::OVERRIDE_POLICY, value_name = "REASON")]
        policy_override: Option<String>,
    },
    /// Back to the previous colour: stop trading on the new one → switch HAProxy back →
    /// reactivate → watch → stop the new one. Works from any step of a cutover.
    Rollback {
        /// Colour to return to [default: the journal's last cutover's origin].
        #[arg(long, value_enum)]
        to: Option<Color>,
        /// Roll back only if the journal's last cutover is this build's and it may have moved
        /// traffic; otherwise change nothing and say why (exit 0). A CI failure handler's guard.
        #[arg(long, value_name = "ID", conflicts_with = "to")]
        if_switched_by: Option<String>,
    },
    /// Which colour is live on every HAProxy instance, and whether they agree.
    Status,
    /// Stop the previous colour once its rollback window (`keep_previous_for`, 1h) has passed:
    /// it must be idle and trading nothing; the environment's `stop_command` stops it and every
    /// service is read back as gone. Refused (exit 5) inside the window unless forced.
    Decommission {
        /// Stop it inside the rollback window; the reason is journaled.
        #[arg(long, value_name = "REASON")]
        force: Option<String>,
    },
    /// The idle colour, the one a blue-green deploy goes to: whichever no load balancer sends
    /// traffic to. Exit 5 when the load balancers disagree (finish or roll back first).
    Idle {
        /// Exit 5 unless this colour is the idle one: deploying to the live colour would
        /// restart the servers that take orders.
        #[arg(long, value_enum, value_name = "COLOR")]
        expect: Option<Color>,
    },
}

impl Tool for Args {
    const NAME: &'static str = "cutover";

    fn common(&self) -> &CommonArgs {
        &self.common
    }

    fn changes(&self) -> bool {
        !self.dry.dry_run
            && matches!(
                self.command,
                Command::Run { .. } | Command::Rollback { .. } | Command::Decommission { .. }
            )
    }

    fn action(&self) -> &'static str {
        match self.command {
            Command::Rollback { .. } => "rollback",
            Command::Decommission { .. } => "decommission",
            _ => "cutover",
        }
    }

    async fn run(self, ctx: Context) -> Result<Report> {
        let env = ctx.env()?.clone();
        if env.load_balancers.is_empty()
            && !matches!(
                self.command,
                Command::Warmup { .. } | Command::Verify { .. }
            )
        {
            return Err(Error::config(
                ctx.config.path.display().to_string(),
                format!(
                    "environments.{}.load_balancers is empty: nothing to switch",
                    ctx.env_name
                ),
            ));
        }
        let token = env.admin_token().ok();
        // The run's own token: signals cancel it, and so does losing the environment lock.
        let mut c = Ctx::new(
            ctx.env_name.as_str(),
            env.clone(),
            token.clone(),
            ctx.timeout,
            ctx.cancel.child_token(),
            self.dry.dry_run,
        );
        let journal_dir = self.journal.dir(&ctx)?;
        c.load_isolation(&journal_dir).await;
        let mut report = ctx.report();
        match &self.command {
            Command::Status => {
                ops::status(&c, &env, ctx.timeout, &journal_dir, &mut report).await?;
            }
            Command::Decommission { force } => {
                if self.dry.dry_run {
                    report.note(format!(
                        "would stop the idle colour with environments.{}.stop_command once keep_previous_for ({}) has passed since the last cutover",
                        ctx.env_name,
                        humantime::format_duration(env.keep_previous_for.0)
                    ));
                    return Ok(report);
                }
                let journal = self.journal.lock(&ctx, c.cancel.clone()).await?;
                journal
                    .hold(async |journal| {
                        crate::lifecycle::decommission(
                            &c,
                            journal,
                            env.keep_previous_for,
                            env.stop_command.as_deref(),
                            force.as_deref(),
                            &mut report,
                        )
                        .await
                    })
                    .await?;
            }
            Command::Idle { expect } => ops::idle(&c, *expect, &mut report).await?,
            Command::Warmup { to, rounds } => ops::warmup(&c, *to, *rounds, &mut report).await,
            Command::Verify { to, expect_version } => {
                ops::verify(
                    &c,
                    *to,
                    expect_version.clone(),
                    &ctx.config.path,
                    &mut report,
                )
                .await?;
            }
            Command::Run {
                to,
                watch,
                expect_version,
                drain_deadline,
                baseline_window,
                tick,
                resume,
                build,
                commit,
                change_ticket,
                policy_override,
            } => {
                if token.is_none() && !self.dry.dry_run {
                    env.admin_token()?;
                }
                if !*resume {
                    watch::check_baseline_window(*baseline_window, *tick)?;
                }
                if self.dry.dry_run {
                    ops::plan_run(&c, to.other(), *to, &mut report);
                    return Ok(report);
                }
                let journal = self.journal.lock(&ctx, c.cancel.clone()).await?;
                journal
                    .hold(async |journal| {
                        ops::run(
                            &c,
                            journal,
                            *to,
                            *watch,
                            expect_version.as_deref(),
                            *drain_deadline,
                            *baseline_window,
                            *tick,
                            *resume,
                            &crate::cutover::Release {
                                version: expect_version.clone(),
                                build: build.clone(),
                                commit: commit.clone(),
                                change_ticket: change_ticket.clone(),
                                policy_override: policy_override.clone(),
                            },
                            &mut report,
                        )
                        .await
                    })
                    .await?;
                if report.exit_code() == crate::exit::OK {
                    report.state(crate::deploy_metrics::State::live(
                        to.as_str(),
                        expect_version.as_deref().unwrap_or("unknown"),
                    ));
                }
            }
            Command::Rollback { to, if_switched_by } => {
                if self.dry.dry_run {
                    let good = to.unwrap_or(Color::Blue);
                    ops::plan_rollback(&c, good, good.other(), &mut report);
                    return Ok(report);
                }
                if token.is_none() {
                    env.admin_token()?;
                }
                let journal = self.journal.lock(&ctx, c.cancel.clone()).await?;
                journal
                    .hold(async |journal| {
                        ops::rollback(&c, journal, *to, if_switched_by.as_deref(), &mut report)
                            .await
                    })
                    .await?;
                if let Some(s) = live_state(&env, ctx.timeout).await {
                    report.state(s);
                }
            }
        }
        Ok(report)
    }
}

/// What is live after a rollback, read back from the load balancers and the colour's own
/// `/health` (a rollback names no version); `None` when the load balancers disagree or cannot
/// be read — then nothing is pushed rather than a guess.
pub(crate) async fn live_state(
    env: &crate::config::Environment,
    timeout: std::time::Duration,
) -> Option<crate::deploy_metrics::State> {
    let color = crate::lb::target_color(env, None, timeout).await.ok()?;
    let http = crate::http::Http::new(env.timeouts.connect.0, timeout);
    let mut version = "unknown".to_string();
    for url in env.urls(color, crate::config::Role::TradingEngine) {
        let client = crate::contract::Client::new(url.to_string(), http.clone());
        if let Ok(h) = client.health().await {
            version = h.version;
            break;
        }
    }
    Some(crate::deploy_metrics::State::live(color.as_str(), &version))
}
