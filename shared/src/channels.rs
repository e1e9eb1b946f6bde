//! `notify`'s channels beyond the team webhook (issue 23): email to the deployment team (SMTP,
//! through the `lettre` crate) and PagerDuty's Events API v2. They use the same relay,
//! recipients and endpoint as Alertmanager's receivers (monitoring/alertmanager), so a deploy
//! tool's message and a standing alert reach the same people the same way. Every text is
//! redacted before it leaves; the routing key and SMTP password are registered secrets.

use crate::config::{Environment, NotifyEmail, PagerDuty};
use crate::error::{Error, Result};
use std::time::Duration;

/// Why a channel did not take a message: not reached at all, or reached and refused.
#[derive(Debug)]
pub enum Failed {
    Unreachable(String),
    Refused(String),
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failed::Unreachable(m) | Failed::Refused(m) => f.write_str(m),
        }
    }
}

/// The message `notify_email` would send, checked before anything is sent: a bad address is a
/// config error naming the field, not a half-sent notification.
pub fn email_message(e: &NotifyEmail, subject: &str, text: &str) -> Result<lettre::Message> {
    let bad = |field: &str, v: &str, why: String| {
        Error::config(
            "notify_email",
            format!("{field} `{v}` is not an email address ({why})"),
        )
    };
    let from: lettre::message::Mailbox = e
        .from
        .parse()
        .map_err(|x: lettre::address::AddressError| bad("from", &e.from, x.to_string()))?;
    if e.to.is_empty() {
        return Err(Error::config("notify_email", "`to` lists no recipient"));
    }
    let mut m = lettre::Message::builder()
        .from(from)
        .subject(crate::redact::redact(subject))
        .header(lettre::message::header::ContentType::TEXT_PLAIN);
    for t in &e.to {
        m = m.to(t
            .parse()
            .map_err(|x: lettre::address::AddressError| bad("to", t, x.to_string()))?);
    }
    m.body(crate::redact::redact(text))
        .map_err(|x| Error::config("notify_email", x.to_string()))
}

/// Send `message` through the relay; `Ok` is the relay's answer (`250 …`).
pub async fn send_email(
    env: &Environment,
    e: &NotifyEmail,
    timeout: Duration,
    message: lettre::Message,
) -> Result<std::result::Result<String, Failed>> {
    use lettre::AsyncTransport;
    use lettre::transport::smtp::client::{Tls, TlsParameters};
    let (host, port) = e
        .smtp
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
        .ok_or_else(|| {
            Error::config(
                "notify_email",
                format!("smtp `{}` must be host:port", e.smtp),
            )
        })?;
    let mut b = lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous(&host)
        .port(port)
        .timeout(Some(timeout));
    b = if e.starttls {
        let tls = TlsParameters::new(host.clone())
            .map_err(|x| Error::config("notify_email", x.to_string()))?;
        b.tls(Tls::Required(tls))
    } else {
        b.tls(Tls::None)
    };
    if let (Some(user), Some(pw)) = (&e.username, env.smtp_password(e)?) {
        b = b.credentials(lettre::transport::smtp::authentication::Credentials::new(
            user.clone(),
            pw.expose().to_string(),
        ));
    }
    Ok(match b.build().send(message).await {
        Ok(r) => Ok(format!(
            "{} {}",
            r.code(),
            r.first_line().unwrap_or_default()
        )),
        Err(x) if x.is_permanent() || x.is_transient() => Err(Failed::Refused(format!(
            "the relay {} refused the message: {}",
            e.smtp,
            crate::redact::redact(&x.to_string())
        ))),
        Err(x) => Err(Failed::Unreachable(format!(
            "cannot reach the relay {}: {}",
            e.smtp,
            crate::redact::redact(&x.to_string())
        ))),
    })
}

/// PagerDuty: a failure opens (triggers) the deployment's incident; a later success resolves
/// the same one (one dedup key per environment and deployment id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageAction {
    Trigger,
    Resolve,
}

/// The Events API v2 body (without the routing key, which is added when sent).
pub fn page_body(
    action: PageAction,
    environment: &str,
    summary: &str,
    text: &str,
    link: Option<&str>,
) -> serde_json::Value {
    let id = crate::deploy_metrics::deployment_id();
    let mut v = serde_json::json!({
        "event_action": match action { PageAction::Trigger => "trigger", PageAction::Resolve => "resolve" },
        "dedup_key": format!("deploykit/{environment}/{id}"),
    });
    if action == PageAction::Trigger {
        // PagerDuty truncates a summary at 1024 characters; say so rather than lose the end.
        let summary: String = crate::redact::redact(summary).chars().take(1024).collect();
        v["payload"] = serde_json::json!({
            "summary": summary,
            "source": format!("deploykit ({environment})"),
            "severity": "critical",
            "component": environment,
            "custom_details": { "deployment_id": id, "text": crate::redact::redact(text) },
        });
        if let Some(l) = link {
            v["links"] = serde_json::json!([{ "href": l, "text": "details" }]);
        }
    }
    v
}

/// Send a page event; `Ok` is PagerDuty's status (202).
pub async fn send_page(
    env: &Environment,
    pd: &PagerDuty,
    timeout: Duration,
    mut body: serde_json::Value,
) -> Result<std::result::Result<u16, Failed>> {
    let key = env.pagerduty_key(pd)?;
    body["routing_key"] = key.expose().into();
    let http = crate::http::Http::new(env.timeouts.connect.0, timeout);
    Ok(
        match http.post_json_text(&pd.url.to_string(), &body).await {
            Ok((s, _)) if (200..300).contains(&s) => Ok(s),
            Ok((s, answer)) => Err(Failed::Refused(format!(
                "PagerDuty answered HTTP {s}: {}",
                crate::redact::redact(&answer.chars().take(200).collect::<String>())
            ))),
            Err(e) => Err(Failed::Unreachable(crate::redact::redact(&e.to_string()))),
        },
    )
}
