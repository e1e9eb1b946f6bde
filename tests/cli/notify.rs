//! notify: the Slack-compatible webhook message, delivered to a loopback HTTP receiver.

use crate::support::{config, run_async};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A one-request-at-a-time HTTP receiver on loopback that answers `status` and keeps the bodies
/// it got.
pub struct Receiver {
    pub url: String,
    pub bodies: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
}

pub async fn receiver(status: u16) -> Receiver {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/services/T000/B000/s3cr3t-webhook-token",
        l.local_addr().unwrap()
    );
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(vec![]));
    let keep = bodies.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let mut buf = vec![];
            let mut chunk = [0u8; 4096];
            // Headers, then exactly content-length bytes of body.
            let (head, body) = loop {
                let n = s.read(&mut chunk).await.unwrap();
                assert!(n > 0, "connection closed mid-request");
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some(i) = text.find("\r\n\r\n") {
                    let head = text[..i].to_string();
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if buf.len() >= i + 4 + len {
                        break (
                            head,
                            String::from_utf8_lossy(&buf[i + 4..i + 4 + len]).to_string(),
                        );
                    }
                }
            };
            // A 404 echoes the request path, as Express and friends do ("Cannot POST /…").
            let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
            keep.lock().unwrap().push((head, body));
            let reply = match status {
                200 => "ok".to_string(),
                404 => format!("Cannot POST {path}"),
                _ => "invalid_token".to_string(),
            };
            let _ = s
                .write_all(
                    format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
                        reply.len()
                    )
                    .as_bytes(),
                )
                .await;
        }
    });
    Receiver { url, bodies }
}

const FAILED_REPORT: &str = r#"{"tool":"smoke_tests","environment":"staging","outcome":"fail","checks":[
 {"name":"Market data fresh","group":"marketdata","status":"fail","message":"feed NASDAQ last message 5200 ms ago","hint":"check the feed handler; restart it if stalled"},
 {"name":"Order routing","group":"orders","status":"ok"}]}"#;

async fn notify(
    cfg: &std::path::Path,
    args: &[&str],
    webhook: Option<&str>,
) -> crate::support::Run {
    let mut a = vec!["--config", cfg.to_str().unwrap(), "-e", "staging"];
    a.extend_from_slice(args);
    let envs: Vec<(&str, &str)> = webhook
        .map(|w| vec![("DEPLOYKIT_NOTIFY_WEBHOOK", w)])
        .unwrap_or_default();
    run_async("notify", &a, &envs).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_is_posted_with_the_failed_checks_and_their_hints() {
    let rx = receiver(200).await;
    let (d, cfg) = config("[environments.staging]\n");
    let report = d.path().join("smoke.json");
    std::fs::write(&report, FAILED_REPORT).unwrap();
    let r = notify(
        &cfg,
        &[
            "--event",
            "failure",
            "--title",
            "staging deploy of 3.2.2",
            "--report",
            report.to_str().unwrap(),
            "--link",
            "https://jenkins.example/job/deploy/42/",
        ],
        Some(&rx.url),
    )
    .await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("[OK] Notification sent"), "{}", r.stdout);
    assert!(
        !r.all().contains("s3cr3t-webhook-token"),
        "the webhook URL is a secret: {}",
        r.all()
    );
    let got = rx.bodies.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let (head, body) = &got[0];
    assert!(
        head.starts_with("POST /services/T000/B000/s3cr3t-webhook-token "),
        "{head}"
    );
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    let text = v["text"].as_str().unwrap();
    assert!(
        text.starts_with(":x: *staging deploy of 3.2.2* (staging)"),
        "{text}"
    );
    assert!(text.contains("1 failed check(s):"), "{text}");
    assert!(
        text.contains("• smoke_tests: Market data fresh — feed NASDAQ last message 5200 ms ago → check the feed handler"),
        "{text}"
    );
    assert!(
        !text.contains("Order routing"),
        "passing checks are not listed"
    );
    assert!(text.contains("<https://jenkins.example/job/deploy/42/|details>"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_webhook_fails_and_a_missing_one_is_a_config_error() {
    let rx = receiver(403).await;
    let (_d, cfg) = config("[environments.staging]\n");
    let r = notify(&cfg, &["--title", "x"], Some(&rx.url)).await;
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stdout.contains("HTTP 403: invalid_token"), "{}", r.stdout);
    assert!(!r.all().contains("s3cr3t-webhook-token"));
    // A receiver echoing the URL's path (the token) in its error: masked in every output.
    let rx = receiver(404).await;
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("n.xml");
    for format in ["human", "json"] {
        let r = notify(
            &cfg,
            &[
                "--title",
                "x",
                "--format",
                format,
                "--junit",
                junit.to_str().unwrap(),
            ],
            Some(&rx.url),
        )
        .await;
        assert_eq!(r.code, 1, "{}", r.stdout);
        assert!(r.stdout.contains("Cannot POST"), "{}", r.stdout);
        let junit = std::fs::read_to_string(&junit).unwrap();
        for out in [&r.stdout, &r.stderr, &junit] {
            assert!(!out.contains("s3cr3t-webhook-token"), "{out}");
        }
    }
    let r = notify(&cfg, &["--title", "x"], None).await;
    assert_eq!(r.code, 3, "{}", r.all());
    assert!(
        r.stderr.contains("DEPLOYKIT_NOTIFY_WEBHOOK"),
        "{}",
        r.stderr
    );
    // Nothing listening: unreachable (exit 4), bounded by the timeout.
    let r = notify(
        &cfg,
        &["--title", "x", "--timeout", "2s"],
        Some("http://127.0.0.1:9/hook"),
    )
    .await;
    assert_eq!(r.code, 4, "{}", r.all());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_shows_the_message_and_sends_nothing() {
    let rx = receiver(200).await;
    let (_d, cfg) = config("[environments.staging]\n");
    let r = notify(
        &cfg,
        &[
            "--event",
            "success",
            "--title",
            "weekly staging refresh",
            "--dry-run",
        ],
        Some(&rx.url),
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        r.stdout
            .contains(":white_check_mark: *weekly staging refresh*"),
        "{}",
        r.stdout
    );
    assert!(rx.bodies.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reports_directory_lists_the_failures_of_every_report_and_skips_other_json() {
    let rx = receiver(200).await;
    let (d, cfg) = config("[environments.staging]\n");
    let dir = d.path().join("reports");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("smoke_green.json"), FAILED_REPORT).unwrap();
    std::fs::write(
        dir.join("latency-baseline.json"),
        r#"{"format":1,"metrics":{}}"#,
    )
    .unwrap();
    let r = notify(
        &cfg,
        &[
            "--event",
            "failure",
            "--title",
            "t",
            "--reports-dir",
            dir.to_str().unwrap(),
        ],
        Some(&rx.url),
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.all());
    let text = serde_json::from_str::<serde_json::Value>(&rx.bodies.lock().unwrap()[0].1).unwrap()
        ["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        text.contains("1 failed check(s)") && text.contains("Market data fresh"),
        "{text}"
    );
    // A file named explicitly must be a report.
    let r = notify(
        &cfg,
        &[
            "--title",
            "t",
            "--report",
            dir.join("latency-baseline.json").to_str().unwrap(),
        ],
        Some(&rx.url),
    )
    .await;
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.stderr.contains("is not a deploykit JSON report"),
        "{}",
        r.stderr
    );
}

/// Email and PagerDuty through the same receivers Alertmanager uses (issue 23): a failure is
/// emailed to the deployment team and opens a page keyed by the deployment; the next success
/// resolves that page. The routing key is a secret (never printed); a bad recipient is a config
/// error before anything is sent, so no channel gets a message the others did not.
#[test]
fn a_failure_emails_and_pages_and_the_next_success_resolves_the_page() {
    use crate::support::receivers::Receivers;
    const KEY: &str = "R0UT1NG-key-0f-the-service";
    let rx = Receivers::start();
    let toml = |to: &str| {
        format!(
            "[environments.staging]\n\
             notify_email = {{ smtp = \"127.0.0.1:{}\", from = \"deploykit@firm.example\", to = [\"{to}\"], starttls = false }}\n\
             pagerduty = {{ url = \"http://127.0.0.1:{}/pagerduty/v2/enqueue\" }}\n",
            rx.smtp, rx.http
        )
    };
    let (_d, cfg) = config(&toml("deployment-team@firm.example"));
    let send = |cfg: &std::path::Path, event: &str, id: &str| {
        crate::support::run(
            "notify",
            &[
                "--config",
                cfg.to_str().unwrap(),
                "-e",
                "staging",
                "--event",
                event,
                "--title",
                "staging deploy of 3.2.2",
                "--link",
                "https://jenkins.example.com/job/x/41/",
            ],
            &[
                ("DEPLOYKIT_PAGERDUTY_ROUTING_KEY", KEY),
                ("DEPLOYKIT_DEPLOYMENT_ID", id),
            ],
        )
    };

    let r = send(&cfg, "failure", "3.2.2+41");
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(!r.all().contains(KEY), "{}", r.all());
    assert!(
        r.stdout.contains("[OK] Email sent") && r.stdout.contains("[OK] Page sent"),
        "{}",
        r.stdout
    );
    let mail = rx.of("email");
    assert_eq!(mail.len(), 1, "{mail:?}");
    assert_eq!(mail[0]["to"][0], "<deployment-team@firm.example>");
    assert_eq!(mail[0]["subject"], "staging deploy of 3.2.2 (staging)");
    let text = mail[0]["text"].as_str().unwrap();
    assert!(text.contains("deployment_id: `3.2.2+41`"), "{text}");
    let pages = rx.of("pagerduty");
    assert_eq!(pages.len(), 1, "{pages:?}");
    let p = &pages[0]["body"];
    assert_eq!(p["event_action"], "trigger");
    assert_eq!(p["routing_key"], KEY);
    assert_eq!(p["dedup_key"], "deploykit/staging/3.2.2+41");
    assert_eq!(p["payload"]["severity"], "critical");
    assert_eq!(p["payload"]["custom_details"]["deployment_id"], "3.2.2+41");
    assert_eq!(
        p["links"][0]["href"],
        "https://jenkins.example.com/job/x/41/"
    );

    // The fixed build succeeds: the page of the same deployment is resolved.
    let r = send(&cfg, "success", "3.2.2+41");
    assert_eq!(r.code, 0, "{}", r.all());
    let pages = rx.of("pagerduty");
    assert_eq!(pages.len(), 2, "{pages:?}");
    assert_eq!(pages[1]["body"]["event_action"], "resolve");
    assert_eq!(pages[1]["body"]["dedup_key"], "deploykit/staging/3.2.2+41");
    assert_eq!(rx.of("email").len(), 2);

    // A recipient that is no address: exit 3 naming it, and no channel got anything.
    let before = rx.got().len();
    let (_d2, bad) = config(&toml("deployment team"));
    let r = send(&bad, "failure", "3.2.3+42");
    assert_eq!(r.code, 3, "{}", r.all());
    assert!(
        r.stderr
            .contains("`deployment team` is not an email address"),
        "{}",
        r.stderr
    );
    assert_eq!(rx.got().len(), before, "{:?}", rx.got());
}
