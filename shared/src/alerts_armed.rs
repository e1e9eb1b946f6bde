//! "The standing alerts are armed" (issue 23 item 6): the last check of a production pipeline,
//! `verify_env --only alerts`. Without silencing anything it asks the environment's Prometheus
//! whether every standing alert rule of monitoring/rules is loaded and evaluating cleanly,
//! whether the trading servers and the Pushgateway are scraped and up, and whether an
//! Alertmanager takes its alerts; and the environment's Alertmanager whether a silence mutes
//! any of them. A check that cannot ask fails: an unanswered question is not an armed alert.

use crate::config::Environment;
use crate::report::Check;
use std::time::Duration;

/// Every standing alert the rules in monitoring/rules define (a test keeps the two in step).
pub const ALERTS: &[&str] = &[
    "DeploymentErrorRateHigh",
    "DeploymentLatencyHigh",
    "TradingServiceDown",
    "TradingTargetsMissing",
    "DeploymentFailed",
    "DeploymentRolledBack",
    "ColourStuckInMaintenance",
    "ServerIsolatedTooLong",
    "DeploymentMetricsUnscraped",
];

const GROUP: &str = "alerts";

async fn get(http: &crate::http::Http, url: &str) -> Result<serde_json::Value, String> {
    http.get_json::<serde_json::Value>(url)
        .await
        .map_err(|e| crate::redact::redact(&e.to_string()))
}

pub async fn checks(env: &Environment, timeout: Duration) -> Vec<Check> {
    let http = crate::http::Http::new(env.timeouts.connect.0, timeout);
    let Some(prom) = env.prometheus.as_ref().map(|p| p.to_string()) else {
        return vec![
            Check::fail(
                GROUP,
                "Standing alerts armed",
                "the environment names no Prometheus",
            )
            .hint("set `prometheus = \"http://…\"` for this environment in the config"),
        ];
    };
    let prom = prom.trim_end_matches('/').to_string();
    let (r, t, a) = (
        format!("{prom}/api/v1/rules?type=alert"),
        format!("{prom}/api/v1/targets?state=active"),
        format!("{prom}/api/v1/alertmanagers"),
    );
    let (rules, targets, ams) = tokio::join!(get(&http, &r), get(&http, &t), get(&http, &a));
    let mut out = vec![
        rules_loaded(rules),
        targets_up(env, targets),
        alertmanager_attached(ams),
    ];
    out.push(match &env.alertmanager {
        Some(am) => {
            let am = am.to_string();
            no_silence(
                get(
                    &http,
                    &format!("{}/api/v2/silences", am.trim_end_matches('/')),
                )
                .await,
            )
        }
        None => Check::skip(
            GROUP,
            "No silence mutes them",
            "the environment names no `alertmanager`: its silences were not read",
        ),
    });
    out
}

fn rules_loaded(answer: Result<serde_json::Value, String>) -> Check {
    let name = "Standing alert rules loaded";
    let v = match answer {
        Ok(v) => v,
        Err(e) => return Check::fail(GROUP, name, format!("Prometheus did not answer: {e}")),
    };
    let rules: Vec<&serde_json::Value> = v["data"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .collect();
    let missing: Vec<&str> = ALERTS
        .iter()
        .copied()
        .filter(|a| !rules.iter().any(|r| r["name"] == *a))
        .collect();
    let broken: Vec<String> = rules
        .iter()
        .filter(|r| ALERTS.contains(&r["name"].as_str().unwrap_or_default()))
        .filter(|r| r["health"] != "ok" && r["health"] != "unknown")
        .map(|r| {
            format!(
                "{} ({})",
                r["name"].as_str().unwrap_or("?"),
                r["lastError"].as_str().unwrap_or("error")
            )
        })
        .collect();
    if !missing.is_empty() {
        Check::fail(GROUP, name, format!("not loaded: {}", missing.join(", "))).hint(
            "add monitoring/rules/*.yml to Prometheus' rule_files and reload it (POST /-/reload)",
        )
    } else if !broken.is_empty() {
        Check::fail(
            GROUP,
            name,
            format!("failing to evaluate: {}", broken.join("; ")),
        )
        .hint("promtool check rules monitoring/rules/*.yml; fix the rule, reload Prometheus")
    } else {
        Check::ok(GROUP, name).message(format!("{} rules loaded and evaluating", ALERTS.len()))
    }
}

fn targets_up(env: &Environment, answer: Result<serde_json::Value, String>) -> Check {
    let name = "Alerted targets scraped and up";
    let v = match answer {
        Ok(v) => v,
        Err(e) => return Check::fail(GROUP, name, format!("Prometheus did not answer: {e}")),
    };
    let active: Vec<&serde_json::Value> = v["data"]["activeTargets"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let of = |job: &str| -> Vec<&&serde_json::Value> {
        active
            .iter()
            .filter(|t| t["labels"]["job"] == job || t["scrapePool"] == job)
            .collect()
    };
    let mut jobs = vec!["trading"];
    if env.pushgateway.is_some() {
        jobs.push("pushgateway");
    }
    let mut problems = vec![];
    let mut up = 0;
    for job in &jobs {
        let ts = of(job);
        if ts.is_empty() {
            problems.push(format!("job \"{job}\" has no target"));
        }
        for t in ts {
            if t["health"] == "up" {
                up += 1;
            } else {
                problems.push(format!(
                    "{} ({job}) is {}: {}",
                    t["labels"]["instance"].as_str().unwrap_or("?"),
                    t["health"].as_str().unwrap_or("?"),
                    t["lastError"].as_str().unwrap_or("")
                ));
            }
        }
    }
    if problems.is_empty() {
        Check::ok(GROUP, name).message(format!("{up} targets of {} up", jobs.join(", ")))
    } else {
        Check::fail(GROUP, name, problems.join("; "))
            .hint("a target down is a server the alerts cannot see: start it, or isolate it (isolate_server)")
    }
}

fn alertmanager_attached(answer: Result<serde_json::Value, String>) -> Check {
    let name = "Prometheus sends alerts to an Alertmanager";
    match answer {
        Err(e) => Check::fail(GROUP, name, format!("Prometheus did not answer: {e}")),
        Ok(v) => {
            let n = v["data"]["activeAlertmanagers"]
                .as_array()
                .map_or(0, Vec::len);
            if n > 0 {
                Check::ok(GROUP, name).message(format!("{n} active"))
            } else {
                Check::fail(
                    GROUP,
                    name,
                    "no active Alertmanager: alerts fire but reach no one",
                )
                .hint("set `alerting.alertmanagers` in prometheus.yml and reload Prometheus")
            }
        }
    }
}

/// An active silence whose matchers all hold for some standing alert (its name, or its
/// team/severity labels) mutes it.
fn no_silence(answer: Result<serde_json::Value, String>) -> Check {
    let name = "No silence mutes them";
    let v = match answer {
        Ok(v) => v,
        Err(e) => return Check::fail(GROUP, name, format!("Alertmanager did not answer: {e}")),
    };
    let muting: Vec<String> = v
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["status"]["state"] == "active")
        .filter(|s| {
            s["matchers"].as_array().into_iter().flatten().all(|m| {
                let (label, value) = (
                    m["name"].as_str().unwrap_or(""),
                    m["value"].as_str().unwrap_or(""),
                );
                let eq = m["isEqual"].as_bool().unwrap_or(true);
                let regex = m["isRegex"].as_bool().unwrap_or(false);
                let hit = |candidate: &str| {
                    if regex {
                        regex::Regex::new(&format!("^(?:{value})$"))
                            .is_ok_and(|r| r.is_match(candidate))
                    } else {
                        candidate == value
                    }
                };
                let any = match label {
                    "alertname" => ALERTS.iter().any(|a| hit(a)),
                    "team" => hit("deployment"),
                    "severity" => hit("critical") || hit("warning"),
                    // Any other label (color, environment…) may match one of them.
                    _ => true,
                };
                // A negative matcher (`!=`, `!~`) may hold for some of them: counted as muting.
                !eq || any
            })
        })
        .map(|s| {
            format!(
                "{} by {} until {} ({})",
                s["id"].as_str().unwrap_or("?"),
                s["createdBy"].as_str().unwrap_or("?"),
                s["endsAt"].as_str().unwrap_or("?"),
                s["comment"].as_str().unwrap_or("")
            )
        })
        .collect();
    if muting.is_empty() {
        Check::ok(GROUP, name).message("no active silence matches a standing alert")
    } else {
        Check::fail(
            GROUP,
            name,
            format!("active silence(s): {}", muting.join("; ")),
        )
        .hint("expire them once the change they covered is over: amtool silence expire <id>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Status;
    use serde_json::json;

    #[test]
    fn the_list_is_every_alert_of_monitoring_rules() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../monitoring/rules");
        let mut found: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flat_map(|e| {
                std::fs::read_to_string(e.unwrap().path())
                    .unwrap()
                    .lines()
                    .filter_map(|l| l.trim().strip_prefix("- alert: ").map(str::to_string))
                    .collect::<Vec<_>>()
            })
            .collect();
        found.sort();
        let mut ours: Vec<String> = ALERTS.iter().map(|a| a.to_string()).collect();
        ours.sort();
        assert_eq!(found, ours);
    }

    fn rules(names: &[&str], health: &str) -> serde_json::Value {
        let rules: Vec<_> = names
            .iter()
            .map(|n| json!({"name": n, "health": health, "lastError": "bad"}))
            .collect();
        json!({"status": "success", "data": {"groups": [{"name": "g", "rules": rules}]}})
    }

    #[test]
    fn each_check_fails_on_its_fault() {
        assert_eq!(rules_loaded(Ok(rules(ALERTS, "ok"))).status, Status::Ok);
        let c = rules_loaded(Ok(rules(&ALERTS[1..], "ok")));
        assert_eq!(c.status, Status::Fail);
        assert!(c.message.unwrap().contains("DeploymentErrorRateHigh"));
        assert_eq!(rules_loaded(Ok(rules(ALERTS, "err"))).status, Status::Fail);
        assert_eq!(rules_loaded(Err("refused".into())).status, Status::Fail);

        let env: Environment = toml::from_str("pushgateway = \"http://pg:9091\"").unwrap();
        let t = |job: &str, health: &str| json!({"labels": {"job": job, "instance": "i"}, "scrapePool": job, "health": health});
        let targets = |ts: Vec<serde_json::Value>| Ok(json!({"data": {"activeTargets": ts}}));
        let up = targets(vec![t("trading", "up"), t("pushgateway", "up")]);
        assert_eq!(targets_up(&env, up).status, Status::Ok);
        let down = targets(vec![t("trading", "down"), t("pushgateway", "up")]);
        assert_eq!(targets_up(&env, down).status, Status::Fail);
        // Nothing scraped at all is not "all up".
        assert_eq!(targets_up(&env, targets(vec![])).status, Status::Fail);
        let no_gateway = targets(vec![t("trading", "up")]);
        assert_eq!(targets_up(&env, no_gateway).status, Status::Fail);

        let ams = |n: usize| Ok(json!({"data": {"activeAlertmanagers": vec![json!({}); n]}}));
        assert_eq!(alertmanager_attached(ams(1)).status, Status::Ok);
        assert_eq!(alertmanager_attached(ams(0)).status, Status::Fail);

        let silence = |state: &str, name: &str, value: &str, regex: bool| {
            Ok(
                json!([{"id": "s1", "status": {"state": state}, "createdBy": "eve", "endsAt": "later", "comment": "deploy",
                "matchers": [{"name": name, "value": value, "isRegex": regex, "isEqual": true}]}]),
            )
        };
        assert_eq!(no_silence(Ok(json!([]))).status, Status::Ok);
        assert_eq!(
            no_silence(silence("expired", "team", "deployment", false)).status,
            Status::Ok
        );
        assert_eq!(
            no_silence(silence("active", "team", "trading-desk", false)).status,
            Status::Ok
        );
        assert_eq!(
            no_silence(silence("active", "team", "deployment", false)).status,
            Status::Fail
        );
        assert_eq!(
            no_silence(silence("active", "alertname", "Deployment.*", true)).status,
            Status::Fail
        );
        assert_eq!(
            no_silence(silence("active", "color", "green", false)).status,
            Status::Fail
        );
        assert_eq!(no_silence(Err("refused".into())).status, Status::Fail);
    }
}
