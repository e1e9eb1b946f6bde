//! The standing alerts end to end on the local stack (issue 23 item 3): Prometheus evaluates
//! monitoring/rules (on the stack's short clock), Alertmanager routes with
//! monitoring/alertmanager's routes to local receivers (scripts/alert-receiver.py). A fault on
//! the live colour reaches PagerDuty, Slack and email; a failed deployment step (a warning) only
//! Slack and email; another team's alert only Slack — each naming its deployment id and a
//! runbook link — and each receiver gets the resolve when the fault clears.

use crate::support::eventually;
use crate::support::stack::Stack;
use std::time::Duration;

/// What one receiver got, as (alert name, status, deployment id, runbook, whole text).
#[derive(Debug, Clone)]
struct Got {
    alert: String,
    status: String,
    deployment_id: String,
    text: String,
}

fn received(path: &str) -> Vec<(String, Got)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|m| {
            let receiver = m["receiver"].as_str().unwrap_or_default().to_string();
            let (title, text, deployment_id) = match receiver.as_str() {
                "pagerduty" => {
                    let b = &m["body"];
                    let d = &b["payload"]["custom_details"];
                    (
                        // A resolve event carries no payload: the dedup key names the group.
                        b["payload"]["summary"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                        format!(
                            "{} {}",
                            b["event_action"],
                            d["alerts"].as_str().unwrap_or_default()
                        ),
                        d["deployment_id"].as_str().unwrap_or_default().to_string(),
                    )
                }
                "slack" => {
                    let a = &m["body"]["attachments"][0];
                    let t = a["text"].as_str().unwrap_or_default().to_string();
                    (
                        a["title"].as_str().unwrap_or_default().to_string(),
                        t.clone(),
                        id_in(&t),
                    )
                }
                _ => {
                    let t = m["text"].as_str().unwrap_or_default().to_string();
                    (
                        m["subject"].as_str().unwrap_or_default().to_string(),
                        t.clone(),
                        id_in(&t),
                    )
                }
            };
            let status = if title.starts_with("[RESOLVED]") || text.starts_with("\"resolve\"") {
                "resolved"
            } else {
                "firing"
            };
            let alert = title
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_string();
            (
                receiver,
                Got {
                    alert,
                    status: status.to_string(),
                    deployment_id,
                    text,
                },
            )
        })
        .collect()
}

fn id_in(text: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix("deployment_id: "))
        .unwrap_or_default()
        .to_string()
}

/// Alert names `receiver` got with `status`, sorted and deduplicated.
fn names(all: &[(String, Got)], receiver: &str, status: &str) -> Vec<String> {
    let mut v: Vec<String> = all
        .iter()
        .filter(|(r, g)| r == receiver && g.status == status)
        .map(|(_, g)| g.alert.clone())
        .collect();
    v.sort();
    v.dedup();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_on_the_live_colour_pages_mails_and_posts_by_route_and_each_receiver_gets_the_resolve()
 {
    let s = Stack::up();
    let rx = s.url("ALERTS_RECEIVED");
    let journal = s.dir.path().join("journal");

    // Orders through HAProxy all along (the cutover's watch judges them too).
    let _load = KillOnDrop(
        std::process::Command::new(crate::support::bin("trading_sim"))
            .args([
                "--load",
                &s.url("HAPROXY_URL"),
                "--load-rate",
                "30",
                "--load-duration-s",
                "600",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Deployment 1.0.0+7 goes live on green through a real cutover: the live colour, version and
    // deployment id are pushed, so the standing alerts can name the deployment.
    let out = s
        .cmd(
            "cutover",
            &[
                "run",
                "--to",
                "green",
                "--expect-version",
                "1.0.0",
                "--watch",
                "1s",
            ],
        )
        .arg("--journal-dir")
        .arg(&journal)
        .env("DEPLOYKIT_DEPLOYMENT_ID", "1.0.0+7")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // The standing alerts are armed for it (the production pipeline's last stage) — and a silence
    // left behind by the deploy disarms them, which the same check fails on.
    let armed = || {
        s.cmd("verify_env", &["--only", "alerts", "--format", "json"])
            .output()
            .unwrap()
    };
    let am = s.url("ALERTMANAGER_URL");
    let http = reqwest::Client::new();
    let out = tokio::task::block_in_place(|| {
        eventually("the alerts armed", Duration::from_secs(30), || {
            let out = armed();
            out.status.success().then_some(out)
        })
    });
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["checks"].as_array().unwrap().len(), 4, "{v}");
    let silence = serde_json::json!({
        "matchers": [{ "name": "team", "value": "deployment", "isRegex": false, "isEqual": true }],
        "startsAt": chrono::Utc::now().to_rfc3339(),
        "endsAt": (chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339(),
        "createdBy": "deployer", "comment": "quiet during the deploy",
    });
    let id: serde_json::Value = http
        .post(format!("{am}/api/v2/silences"))
        .json(&silence)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let out = armed();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("quiet during the deploy"));
    let r = http
        .delete(format!(
            "{am}/api/v2/silence/{}",
            id["silenceID"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert!(armed().status.success());

    // Half of green's answers become errors.
    let fault = deploykit::contract::Faults {
        error_rate: Some(0.5),
        ..Default::default()
    };
    s.client("green").set_faults(&fault).await.unwrap();

    // A failed deployment step of the next deployment (a warning: not a page).
    let mig = tempfile::tempdir().unwrap();
    std::fs::write(mig.path().join("V1__boom.sql"), "SELECT 1 / 0;\n").unwrap();
    let out = s
        .cmd(
            "db_migrate",
            &["--migrations", mig.path().to_str().unwrap(), "migrate"],
        )
        .env("DEPLOYKIT_DEPLOYMENT_ID", "1.0.1+8")
        .output()
        .unwrap();
    assert!(!out.status.success(), "the failing migration passed");

    // Another team's alert: the team channel only.
    let other = serde_json::json!([{
        "labels": { "alertname": "TradingDeskNotice", "severity": "info", "team": "trading-desk" },
        "annotations": { "summary": "desk notice", "runbook_url": "docs/runbook.md#operators-runbook" },
    }]);
    let r = reqwest::Client::new()
        .post(format!("{am}/api/v2/alerts"))
        .json(&other)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());

    // About time: the stack's rules hold a fault 6 s over a 20 s window, Prometheus evaluates
    // every 2 s and Alertmanager waits 1 s per group; 90 s covers it on a loaded machine.
    // Each receiver must get the alerts its route asks for, and never one its route excludes:
    // PagerDuty only critical ones, email only the deployment team's. (A genuine alert of a
    // loaded machine — a slow p95, a missed scrape — may also arrive; its route is checked too.)
    let required: [(&str, &[&str]); 3] = [
        ("pagerduty", &["DeploymentErrorRateHigh"]),
        ("email", &["DeploymentErrorRateHigh", "DeploymentFailed"]),
        (
            "slack",
            &[
                "DeploymentErrorRateHigh",
                "DeploymentFailed",
                "TradingDeskNotice",
            ],
        ),
    ];
    let excluded: [(&str, &[&str]); 2] = [
        (
            "pagerduty",
            &[
                "DeploymentFailed",
                "TradingDeskNotice",
                "DeploymentLatencyHigh",
                "DeploymentRolledBack",
                "ServerIsolatedTooLong",
                "DeploymentMetricsUnscraped",
            ],
        ),
        ("email", &["TradingDeskNotice"]),
    ];
    let all = tokio::task::block_in_place(|| {
        let got = std::panic::catch_unwind(|| {
            eventually(
                "every receiver got its alerts",
                Duration::from_secs(90),
                || {
                    let all = received(&rx);
                    required
                        .iter()
                        .all(|(r, w)| {
                            let got = names(&all, r, "firing");
                            w.iter().all(|a| got.contains(&a.to_string()))
                        })
                        .then_some(all)
                },
            )
        });
        got.unwrap_or_else(|e| {
            eprintln!("received: {:#?}", received(&rx));
            std::panic::resume_unwind(e)
        })
    });
    for (receiver, never) in excluded {
        let got = names(&all, receiver, "firing");
        assert!(
            never.iter().all(|a| !got.contains(&a.to_string())),
            "{receiver} got {got:?}, which its route excludes: {all:#?}"
        );
    }
    // Each injected alert names its deployment and a runbook section, at every receiver.
    for (receiver, g) in &all {
        let id = match g.alert.as_str() {
            "DeploymentErrorRateHigh" => "1.0.0+7",
            "DeploymentFailed" => "1.0.1+8",
            "TradingDeskNotice" => "none recorded",
            _ => continue,
        };
        assert_eq!(g.deployment_id, id, "{receiver} {}: {}", g.alert, g.text);
        assert!(
            g.text.contains("runbook: docs/runbook.md#")
                || receiver == "pagerduty" && g.text.contains("docs/runbook.md#"),
            "{receiver}: {}",
            g.text
        );
    }

    // The fix: green answers again; once the window holds no fault every receiver of the
    // error-rate alert gets its resolve.
    s.client("green").clear_faults().await.unwrap();
    tokio::task::block_in_place(|| {
        eventually("the resolves", Duration::from_secs(90), || {
            let all = received(&rx);
            ["pagerduty", "email", "slack"]
                .iter()
                .all(|r| {
                    names(&all, r, "resolved").contains(&"DeploymentErrorRateHigh".to_string())
                })
                .then_some(())
        })
    });
    dashboard_panels_have_data(&s.url("PROMETHEUS_URL")).await;
}

/// The deployment dashboard against this stack's Prometheus after its deploy (issue 23 item 4):
/// every query of every panel (and of the annotations) is valid PromQL, and each panel's first
/// query returns data. (A second "a day earlier" query has none on a fresh Prometheus.)
async fn dashboard_panels_have_data(prometheus: &str) {
    let d: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            crate::support::repo_root().join("monitoring/dashboards/deployment-monitoring.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let query = async |expr: &str| -> serde_json::Value {
        let expr = expr.replace("$__rate_interval", "1m");
        reqwest::Client::new()
            .get(format!("{prometheus}/api/v1/query"))
            .query(&[("query", expr.as_str())])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    };
    for a in d["annotations"]["list"].as_array().unwrap() {
        if let Some(expr) = a["expr"].as_str() {
            let v = query(expr).await;
            assert_eq!(v["status"], "success", "annotation {expr}: {v}");
        }
    }
    let panels = d["panels"].as_array().unwrap();
    assert_eq!(panels.len(), 6);
    for p in panels {
        for (i, t) in p["targets"].as_array().unwrap().iter().enumerate() {
            let expr = t["expr"].as_str().unwrap();
            // Data arrives within a scrape or two of the deploy; the queries are judged as is.
            let v = tokio::task::block_in_place(|| {
                eventually(
                    &format!("{}: {expr}", p["title"]),
                    Duration::from_secs(20),
                    || {
                        let v = tokio::runtime::Handle::current().block_on(query(expr));
                        let has = v["data"]["result"]
                            .as_array()
                            .is_some_and(|r| !r.is_empty());
                        (v["status"] == "success" && (i > 0 || has)).then_some(v)
                    },
                )
            });
            assert_eq!(v["status"], "success", "{}: {expr}: {v}", p["title"]);
        }
    }
}

/// The load generator stops with the test, passed or failed.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
