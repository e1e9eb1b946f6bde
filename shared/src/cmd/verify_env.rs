//! `verify_env`: the guide's environment verification (replaces verify_deployment_env.sh).

use crate::cli::{CommonArgs, Context, Tool};
use crate::config::VerifyCheck;
use crate::env_vars::EnvVars;
use crate::error::Result;
use crate::report::{Check, Report, Status};
use crate::verify;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Verify that this machine and checkout may deploy to an environment: git state, tools,
/// SSH keys, VPN, Docker daemon, credentials and (production) the deployment policy. Every
/// check runs concurrently with its own timeout.
#[derive(Debug, clap::Parser)]
#[command(name = "verify_env", version)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,

    /// Fetch from the remote before checking that the latest code is pulled.
    #[arg(long)]
    pub fetch: bool,

    /// Turn deployment-policy failures into warnings; the reason is recorded in the report.
    #[arg(long, value_name = "REASON")]
    pub override_policy: Option<String>,

    /// The checkout to verify.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub repo: PathBuf,

    /// A path of the checkout (relative to --repo) that holds build output: files there do not
    /// make the tree dirty (repeatable or comma-separated; the pipeline passes its reports and dist)
    #[arg(long, value_name = "PATH", value_delimiter = ',')]
    pub build_output: Vec<String>,

    /// Judge the deployment policy at this time (RFC 3339) instead of now: "may we deploy
    /// on Thursday at 06:00?"
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub at: Option<chrono::DateTime<chrono::FixedOffset>>,

    /// With `--only approvals`: the config's approval rule to check (`approvals.<RULE>`).
    #[arg(long, value_name = "RULE", default_value = "production")]
    pub approval_rule: String,

    /// With `--only approvals`: who approved as which role, `ROLE=USER` (comma-separated or repeated).
    #[arg(long, value_name = "ROLE=USER", value_delimiter = ',')]
    pub approved_by: Vec<String>,

    /// With `--only approvals`: who started the build (never an approver of it).
    #[arg(long, value_name = "USER")]
    pub started_by: Option<String>,

    /// Run only these checks [default: the environment's profile].
    #[arg(long, value_enum, value_delimiter = ',', value_name = "CHECK")]
    pub only: Vec<VerifyCheck>,
}

fn parse_time(s: &str) -> std::result::Result<chrono::DateTime<chrono::FixedOffset>, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map_err(|e| format!("`{s}` is not an RFC 3339 time ({e}); e.g. 2026-12-01T06:00:00+00:00"))
}

impl Tool for Args {
    const NAME: &'static str = "verify_env";

    fn common(&self) -> &CommonArgs {
        &self.common
    }

    async fn run(self, ctx: Context) -> Result<Report> {
        let env = ctx.env()?.clone();
        let v = &env.verify;
        let timeout = self
            .common
            .timeout
            .or(v.check_timeout.map(|d| d.0))
            .unwrap_or(Duration::from_secs(5));
        let checks = if self.only.is_empty() {
            v.checks
                .clone()
                .unwrap_or_else(|| verify::default_checks(ctx.env_name))
        } else {
            self.only.clone()
        };
        let mut set = tokio::task::JoinSet::new();
        let spawn = |set: &mut tokio::task::JoinSet<(usize, Vec<Check>)>,
                     idx: usize,
                     fut: std::pin::Pin<
            Box<dyn std::future::Future<Output = Vec<Check>> + Send>,
        >| {
            set.spawn(async move {
                let t = Instant::now();
                let mut checks = fut.await;
                let took = t.elapsed();
                for c in &mut checks {
                    if c.duration_ms.is_zero() {
                        c.duration_ms = took;
                    }
                }
                (idx, checks)
            });
        };
        let mut idx = 0;
        for check in &checks {
            match check {
                VerifyCheck::Git => {
                    let env = |k: &str| std::env::var(k).ok();
                    let plan = verify::GitPlan {
                        fetch: self.fetch,
                        expected_branch: v.expected_branch.clone(),
                        ci_branch: verify::branch_from_ci(
                            env(EnvVars::BRANCH_NAME),
                            env(EnvVars::GIT_BRANCH),
                        ),
                        ci_tag: env(EnvVars::TAG_NAME).filter(|t| !t.is_empty()),
                        build_outputs: self.build_output.clone(),
                    };
                    let repo = self.repo.clone();
                    // fetch talks to the network: let it use the whole per-check budget, bounded.
                    spawn(
                        &mut set,
                        idx,
                        Box::pin(async move {
                            bounded(
                                "git",
                                "Git checks",
                                timeout,
                                verify::git_checks(&repo, &plan, timeout),
                            )
                            .await
                        }),
                    );
                    idx += 1;
                }
                VerifyCheck::Tools => {
                    for t in v
                        .tools
                        .clone()
                        .unwrap_or_else(|| verify::default_tools(ctx.env_name))
                    {
                        let name = format!("Required tool {}", t.name);
                        spawn(
                            &mut set,
                            idx,
                            Box::pin(async move {
                                bounded("tools", &name, timeout, async {
                                    vec![verify::tool_check(&t, timeout).await]
                                })
                                .await
                            }),
                        );
                        idx += 1;
                    }
                }
                VerifyCheck::Ssh => {
                    let keys = v.ssh_keys.clone().unwrap_or_else(verify::default_ssh_keys);
                    spawn(
                        &mut set,
                        idx,
                        Box::pin(async move {
                            bounded("ssh", "SSH keys configured", timeout, async {
                                vec![verify::ssh_check(&keys, timeout).await]
                            })
                            .await
                        }),
                    );
                    idx += 1;
                }
                VerifyCheck::Vpn => {
                    let vpn = v.vpn.clone();
                    spawn(
                        &mut set,
                        idx,
                        Box::pin(
                            async move { vec![verify::vpn_check(vpn.as_ref(), timeout).await] },
                        ),
                    );
                    idx += 1;
                }
                VerifyCheck::Docker => {
                    let sock = v
                        .docker_socket
                        .clone()
                        .unwrap_or_else(verify::default_docker_socket);
                    spawn(
                        &mut set,
                        idx,
                        Box::pin(async move { vec![verify::docker_check(&sock, timeout).await] }),
                    );
                    idx += 1;
                }
                VerifyCheck::Credentials => {
                    let c = v
                        .credentials
                        .clone()
                        .unwrap_or_else(|| verify::default_credentials(&env));
                    spawn(
                        &mut set,
                        idx,
                        Box::pin(async move { vec![verify::credentials_check(&c)] }),
                    );
                    idx += 1;
                }
                VerifyCheck::Alerts => {
                    let env = env.clone();
                    spawn(
                        &mut set,
                        idx,
                        Box::pin(async move { crate::alerts_armed::checks(&env, timeout).await }),
                    );
                    idx += 1;
                }
                VerifyCheck::Approvals => {
                    let checks = verify::approval_checks(
                        ctx.env_name.as_str(),
                        &self.approval_rule,
                        env.approvals.get(&self.approval_rule),
                        &self.approved_by,
                        self.started_by.as_deref(),
                    );
                    spawn(&mut set, idx, Box::pin(async move { checks }));
                    idx += 1;
                }
                VerifyCheck::Policy => {
                    let at = self
                        .at
                        .unwrap_or_else(|| chrono::Local::now().fixed_offset());
                    let ticket = std::env::var(&env.policy.change_ticket_env)
                        .ok()
                        .map(|t| t.trim().to_string())
                        .filter(|t| !t.is_empty());
                    let (policy, env_name) = (env.policy.clone(), ctx.env_name.to_string());
                    let override_policy = self.override_policy.clone();
                    spawn(
                        &mut set,
                        idx,
                        Box::pin(async move {
                            let mut checks = verify::policy_checks(&policy, at, ticket.as_deref());
                            // A ticket the pattern accepts is asked of the change system, if any.
                            let well_formed = checks.iter().all(|c| {
                                c.name != "Change ticket present" || c.status == Status::Ok
                            });
                            match (&policy.change_system, &ticket) {
                                (Some(cs), Some(t)) if well_formed => checks.push(
                                    verify::change_approval_check(cs, &env_name, t, at, timeout)
                                        .await,
                                ),
                                // No pattern to say it is missing: the approval check says so.
                                (Some(_), None) if policy.change_ticket.is_none() => checks.push(
                                    Check::fail(
                                        "policy",
                                        "Change ticket approved",
                                        format!("${} is not set", policy.change_ticket_env),
                                    )
                                    .hint(format!(
                                        "export {}=<the approved change's ticket>",
                                        policy.change_ticket_env
                                    )),
                                ),
                                _ => {}
                            }
                            if let Some(reason) = &override_policy {
                                for c in checks.iter_mut().filter(|c| c.status == Status::Fail) {
                                    c.status = Status::Warn;
                                    c.message = Some(format!(
                                        "{} (overridden: {reason})",
                                        c.message.take().unwrap_or_default()
                                    ));
                                }
                            }
                            checks
                        }),
                    );
                    idx += 1;
                }
            }
        }
        let mut results: Vec<(usize, Vec<Check>)> = Vec::with_capacity(idx);
        loop {
            tokio::select! {
                joined = set.join_next() => match joined {
                    Some(Ok(r)) => results.push(r),
                    Some(Err(e)) => results.push((usize::MAX, vec![Check::fail("runner", "check crashed", e.to_string())])),
                    None => break,
                },
                _ = ctx.cancel.cancelled() => {
                    set.abort_all();
                    return Err(crate::Error::Interrupted(crate::error::Signal::Int));
                }
            }
        }
        results.sort_by_key(|(i, _)| *i);
        let mut report = ctx.report();
        for (_, checks) in results {
            for c in checks {
                report.push(c);
            }
        }
        if let Some(reason) = &self.override_policy {
            report.note(format!("deployment policy overridden: {reason}"));
        }
        Ok(report)
    }
}

/// Bound a group of checks by the per-check timeout (plus a margin for their own cleanup), so
/// a hung child can never hang the run.
async fn bounded<F>(group: &str, name: &str, timeout: Duration, fut: F) -> Vec<Check>
where
    F: std::future::Future<Output = Vec<Check>>,
{
    let limit = timeout + Duration::from_millis(250);
    match tokio::time::timeout(limit, fut).await {
        Ok(c) => c,
        Err(_) => vec![
            Check::fail(
                group,
                name,
                format!("timed out after {}s", timeout.as_secs_f64()),
            )
            .hint("the command hung; check it by hand"),
        ],
    }
}
