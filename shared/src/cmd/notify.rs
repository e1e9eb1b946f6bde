//! `notify`: tell the team what happened — a Slack-compatible webhook message, an email and a
//! PagerDuty page built from the pipeline's own reports, failures first with what to do next.

use crate::cli::{CommonArgs, Context, DryRunArgs, Tool};
use crate::error::{Error, Result};
use crate::report::{Check, Report};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Event {
    Success,
    Failure,
    Info,
}

/// Tell the team: a title, an optional message and link, the deployment id, and every failed
/// check (with its hint) of the deploykit JSON reports given — to the environment's
/// Slack-compatible webhook (Slack, Mattermost, Rocket.Chat), by email (`notify_email`) and, for a
/// failure, to PagerDuty (`pagerduty`; the next success resolves that page). Secrets (webhook URL,
/// routing key, SMTP password) come from the variables the config names, never a flag.
#[derive(Debug, clap::Parser)]
#[command(name = "notify", version)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,

    #[command(flatten)]
    pub dry: DryRunArgs,

    /// What happened.
    #[arg(long, value_enum, default_value_t = Event::Info)]
    pub event: Event,

    /// First line of the message, e.g. "production deploy of 3.2.2".
    #[arg(long)]
    pub title: String,

    /// More text after the title.
    #[arg(long)]
    pub message: Option<String>,

    /// deploykit JSON reports (`--format json` output) whose failed checks to list.
    #[arg(long, value_name = "FILE")]
    pub report: Vec<PathBuf>,

    /// Every deploykit JSON report in this directory (other JSON files are skipped).
    #[arg(long, value_name = "DIR")]
    pub reports_dir: Option<PathBuf>,

    /// A link for the details (e.g. the Jenkins build URL).
    #[arg(long, value_name = "URL")]
    pub link: Option<String>,

    /// Send only to these channels (repeatable) [default: every channel the environment
    /// configures: the webhook, `notify_email`, and `pagerduty` for failures (a trigger) and
    /// successes (the resolve of that deployment's page)].
    #[arg(long, value_enum, value_name = "CHANNEL")]
    pub channel: Vec<Channel>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Channel {
    Webhook,
    Email,
    Pagerduty,
}

/// POST `text` (redacted) to the webhook: its HTTP status when 2xx, else why not.
async fn post(
    url: &crate::redact::Secret,
    env: &crate::config::Environment,
    timeout: std::time::Duration,
    text: &str,
) -> std::result::Result<u16, Posted> {
    let http = crate::http::Http::new(env.timeouts.connect.0, timeout);
    let body = serde_json::json!({ "text": crate::redact::redact(text) });
    match http.post_json_text(url.expose(), &body).await {
        Ok((s, _)) if (200..300).contains(&s) => Ok(s),
        Ok((s, answer)) => Err(Posted::Refused(s, answer.chars().take(200).collect())),
        Err(e) => Err(Posted::Unreachable(e)),
    }
}

enum Posted {
    Unreachable(crate::http::HttpError),
    Refused(u16, String),
}

impl std::fmt::Display for Posted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Posted::Unreachable(e) => write!(f, "{e}"),
            Posted::Refused(s, answer) => write!(f, "the webhook answered HTTP {s}: {answer}"),
        }
    }
}

/// Tell the team from inside another tool (an emergency, a skipped safeguard): the check
/// `name` of `group` says whether the environment's webhook took `text`. Never fails the run:
/// without a webhook, or when it refuses, the check says to tell the team by hand.
pub async fn announce(
    env: &crate::config::Environment,
    timeout: std::time::Duration,
    group: &str,
    name: &str,
    text: &str,
) -> Check {
    let Ok(url) = env.notify_webhook() else {
        return Check::skip(
            group,
            name,
            format!(
                "no webhook in ${}: tell the team yourself",
                env.notify_webhook_env
            ),
        );
    };
    let text = format!("{text}{}", deployment_line());
    match post(&url, env, timeout, &text).await {
        Ok(status) => Check::ok(group, name).message(format!("HTTP {status}")),
        Err(e) => Check::warn(group, name, e.to_string()).hint("tell the team yourself"),
    }
}

/// The line every notification ends its header with, so a search for the deployment id finds
/// its messages as it finds its logs, reports and journal rows.
fn deployment_line() -> String {
    format!(
        "\ndeployment_id: `{}`",
        crate::deploy_metrics::deployment_id()
    )
}

/// At most this many failed checks are listed; the rest are counted.
const MAX_LISTED: usize = 10;

/// The message text (Slack mrkdwn) for `args`' event, title, reports and link.
pub fn text(args: &Args, environment: &str) -> Result<String> {
    let icon = match args.event {
        Event::Success => ":white_check_mark:",
        Event::Failure => ":x:",
        Event::Info => ":information_source:",
    };
    let mut out = format!("{icon} *{}* ({environment})", args.title);
    if let Some(m) = &args.message {
        out.push_str(&format!("\n{m}"));
    }
    out.push_str(&deployment_line());
    let mut failed = vec![];
    let mut reports: Vec<(PathBuf, bool)> = args.report.iter().map(|p| (p.clone(), true)).collect();
    if let Some(dir) = &args.reports_dir {
        let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| Error::io("read reports directory", dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        found.sort();
        reports.extend(found.into_iter().map(|p| (p, false)));
    }
    for (path, named) in &reports {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("read report", path, e))?;
        let v: serde_json::Value = match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(v)
                if v.get("tool").is_some()
                    && (v["checks"].is_array() || v["error"].is_object()) =>
            {
                v
            }
            // A named file must be a report; in a directory, other JSON (baselines) is skipped.
            _ if !named => continue,
            _ => {
                return Err(Error::Usage(format!(
                    "{} is not a deploykit JSON report: pass files written with --format json",
                    path.display()
                )));
            }
        };
        let tool = v["tool"].as_str().unwrap_or("?").to_string();
        // A run that stopped on an error (exit 2–5) has no failed check, only its error.
        if let Some(m) = v["error"]["message"].as_str() {
            let mut line = format!("• {tool}: {m}");
            if let Some(h) = v["error"]["hint"].as_str() {
                line.push_str(&format!(" → {h}"));
            }
            failed.push(line);
        }
        for c in v["checks"].as_array().into_iter().flatten() {
            if c["status"] == "fail" {
                let mut line = format!(
                    "• {tool}: {} — {}",
                    c["name"].as_str().unwrap_or("?"),
                    c["message"].as_str().unwrap_or("")
                );
                if let Some(h) = c["hint"].as_str() {
                    line.push_str(&format!(" → {h}"));
                }
                failed.push(line);
            }
        }
    }
    if !failed.is_empty() {
        out.push_str(&format!("\n{} failed check(s):", failed.len()));
        for l in failed.iter().take(MAX_LISTED) {
            out.push_str(&format!("\n{l}"));
        }
        if failed.len() > MAX_LISTED {
            out.push_str(&format!("\n… and {} more", failed.len() - MAX_LISTED));
        }
    }
    if let Some(l) = &args.link {
        out.push_str(&format!("\n<{l}|details>"));
    }
    // A secret that reached a report must not reach the channel either.
    Ok(crate::redact::redact(&out))
}

impl Tool for Args {
    const NAME: &'static str = "notify";

    fn common(&self) -> &CommonArgs {
        &self.common
    }

    async fn run(self, ctx: Context) -> Result<Report> {
        use crate::channels::{self, Failed, PageAction};
        let env = ctx.env()?.clone();
        let environment = ctx.env_name.as_str();
        let text = text(&self, environment)?;
        // The email subject and page summary: the header line without Slack's mrkdwn and icon.
        let first = text.lines().next().unwrap_or_default().replace('*', "");
        let subject = match first.strip_prefix(':').and_then(|r| r.split_once(": ")) {
            Some((_icon, rest)) => rest.to_string(),
            None => first,
        };
        let wanted = |c: Channel| self.channel.is_empty() || self.channel.contains(&c);
        let page = match self.event {
            Event::Failure => Some(PageAction::Trigger),
            Event::Success => Some(PageAction::Resolve),
            Event::Info => None,
        };
        // What goes where: asked-for channels must be configured; by default every configured one.
        let webhook = wanted(Channel::Webhook)
            && (self.channel.contains(&Channel::Webhook)
                || std::env::var(&env.notify_webhook_env).is_ok_and(|v| !v.trim().is_empty())
                || (env.notify_email.is_none() && env.pagerduty.is_none()));
        let email = match (&env.notify_email, self.channel.contains(&Channel::Email)) {
            (Some(e), _) if wanted(Channel::Email) => Some(e),
            (None, true) => {
                return Err(Error::config(
                    ctx.config.path.display().to_string(),
                    format!("--channel email: environments.{environment}.notify_email is not set"),
                ));
            }
            _ => None,
        };
        // PagerDuty by default only where its routing key is provided (a dev or CI box without
        // the key says so instead of failing the notification).
        let key_set = |p: &crate::config::PagerDuty| {
            std::env::var(&p.routing_key_env).is_ok_and(|v| !v.trim().is_empty())
        };
        let mut skipped_page = None;
        let pager = match (&env.pagerduty, self.channel.contains(&Channel::Pagerduty)) {
            (Some(p), false) if wanted(Channel::Pagerduty) && !key_set(p) && page.is_some() => {
                skipped_page = Some(format!("${} is not set: no page sent", p.routing_key_env));
                None
            }
            (Some(p), _) if wanted(Channel::Pagerduty) => page.map(|a| (p, a)),
            (None, true) => {
                return Err(Error::config(
                    ctx.config.path.display().to_string(),
                    format!("--channel pagerduty: environments.{environment}.pagerduty is not set"),
                ));
            }
            _ => None,
        };
        // Everything is built (and every secret read) before anything is sent: no half-sent
        // notification because the second channel's config was wrong.
        let url = webhook.then(|| env.notify_webhook()).transpose()?;
        let message = email
            .map(|e| channels::email_message(e, &subject, &text))
            .transpose()?;
        if let Some((p, _)) = pager {
            env.pagerduty_key(p)?;
        }
        let page_body = pager.map(|(_, a)| {
            channels::page_body(a, environment, &subject, &text, self.link.as_deref())
        });
        let mut report = ctx.report();
        if let Some(why) = skipped_page {
            report.push(Check::skip("notify", "Page sent", why));
        }
        if self.dry.dry_run {
            if url.is_some() {
                let body = serde_json::json!({ "text": text });
                report.push(Check::skip(
                    "notify",
                    "Notification sent",
                    format!("dry run: would POST to ${}: {body}", env.notify_webhook_env),
                ));
            }
            if let Some(e) = email {
                report.push(Check::skip(
                    "notify",
                    "Email sent",
                    format!(
                        "dry run: would email {} through {}: {subject}",
                        e.to.join(", "),
                        e.smtp
                    ),
                ));
            }
            if let Some(b) = &page_body {
                report.push(Check::skip(
                    "notify",
                    "Page sent",
                    format!("dry run: would send PagerDuty {}", b["event_action"]),
                ));
            }
            return Ok(report);
        }
        let mut attempted = 0;
        let mut unreachable = vec![];
        if let Some(url) = url {
            attempted += 1;
            report.push(match post(&url, &env, ctx.timeout, &text).await {
                Ok(status) => {
                    Check::ok("notify", "Notification sent").message(format!("HTTP {status}"))
                }
                Err(Posted::Unreachable(e)) => {
                    let m = e.to_string();
                    unreachable.push(Error::unreachable("the notification webhook", e));
                    Check::fail("notify", "Notification sent", m)
                        .hint("check the webhook host is reachable from here")
                }
                Err(e @ Posted::Refused(..)) => {
                    Check::fail("notify", "Notification sent", e.to_string()).hint(format!(
                        "check the webhook URL in ${} (revoked or mistyped?)",
                        env.notify_webhook_env
                    ))
                }
            });
        }
        if let (Some(e), Some(m)) = (email, message) {
            attempted += 1;
            report.push(match channels::send_email(&env, e, ctx.timeout, m).await? {
                Ok(answer) => Check::ok("notify", "Email sent").message(format!(
                    "{} took it for {}: {answer}",
                    e.smtp,
                    e.to.join(", ")
                )),
                Err(f) => {
                    if matches!(f, Failed::Unreachable(_)) {
                        unreachable.push(Error::unreachable("a notification channel", &f));
                    }
                    Check::fail("notify", "Email sent", f.to_string())
                        .hint("check notify_email's relay, sender and recipients")
                }
            });
        }
        if let (Some((p, _)), Some(body)) = (pager, page_body) {
            attempted += 1;
            let action = body["event_action"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            report.push(
                match channels::send_page(&env, p, ctx.timeout, body).await? {
                    Ok(status) => {
                        Check::ok("notify", "Page sent").message(format!("{action}: HTTP {status}"))
                    }
                    Err(f) => {
                        if matches!(f, Failed::Unreachable(_)) {
                            unreachable.push(Error::unreachable("a notification channel", &f));
                        }
                        Check::fail("notify", "Page sent", f.to_string()).hint(format!(
                            "check the routing key in ${} and pagerduty.url",
                            p.routing_key_env
                        ))
                    }
                },
            );
        }
        // Nothing reached at all: the network, not a channel, is the problem (exit 4).
        if attempted > 0 && unreachable.len() == attempted {
            return Err(unreachable.remove(0));
        }
        Ok(report)
    }
}
