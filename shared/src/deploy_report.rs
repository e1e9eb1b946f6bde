//! The deployment report (guide §5 Phase 5, §11 "Track metrics"): each run of the deploy journal
//! with its stages, durations, verdict and rollbacks, and the DORA figures across runs.
//! Pure functions of the journal's entries, so every rule is testable without a deploy.

use crate::journal::Entry;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Finished as intended.
    Succeeded,
    /// A cutover rolled back automatically (its watch or a step failed).
    RolledBack,
    /// A cutover that was rolled back by a later `cutover rollback`.
    RolledBackLater,
    /// Failed and not (fully) recovered; or a rollout whose judgement failed.
    Failed,
    /// No end in the journal: interrupted, or still running.
    Interrupted,
    /// A strategy rollout that was reversed.
    Reversed,
}

impl Outcome {
    pub fn is_change_failure(self) -> bool {
        matches!(
            self,
            Outcome::RolledBack | Outcome::RolledBackLater | Outcome::Failed
        )
    }
    pub fn text(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::RolledBack => "rolled back automatically",
            Outcome::RolledBackLater => "rolled back later",
            Outcome::Failed => "failed",
            Outcome::Interrupted => "interrupted or running",
            Outcome::Reversed => "reversed",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Stage {
    pub step: String,
    /// done | failed | started (never finished)
    pub state: String,
    pub duration_ms: Option<u64>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub run_id: String,
    /// cutover | rollback | strategy_rollout
    pub kind: String,
    pub from: String,
    pub to: String,
    pub started: DateTime<Utc>,
    pub ended: Option<DateTime<Utc>>,
    pub duration_ms: Option<u64>,
    pub outcome: Outcome,
    pub stages: Vec<Stage>,
    /// Failure detected → old colour live again (automatic or a later manual rollback).
    pub recovery_ms: Option<u64>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// What the run put live (version, build, commit, change ticket), when it journaled it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release: Option<crate::cutover::Release>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Dora {
    pub window_days: f64,
    /// Cutovers started in the window (production deployments).
    pub deployments: usize,
    pub successful: usize,
    pub per_week: f64,
    pub change_failures: usize,
    pub change_failure_rate: Option<f64>,
    pub recoveries: usize,
    pub median_time_to_recovery_ms: Option<u64>,
    /// The journal records no commit times: lead time is not known from it.
    pub lead_time: Option<u64>,
}

fn at(e: &Entry) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(&e.at)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn ms(a: DateTime<Utc>, b: DateTime<Utc>) -> u64 {
    (b - a).num_milliseconds().max(0) as u64
}

/// Group entries (oldest first) into runs, oldest first.
pub fn runs(entries: &[Entry]) -> Vec<Run> {
    // Config deploys and smoke verdicts are promotion evidence (crate::promotion), not runs.
    let entries: Vec<Entry> = entries
        .iter()
        .filter(|e| {
            ![crate::promotion::CONFIG, crate::promotion::SMOKE].contains(&e.action.as_str())
        })
        .cloned()
        .collect();
    let entries = entries.as_slice();
    let mut order: Vec<&str> = vec![];
    for e in entries {
        if !order.contains(&e.run_id.as_str()) {
            order.push(&e.run_id);
        }
    }
    let mut out: Vec<Run> = order
        .iter()
        .filter_map(|id| {
            let es: Vec<&Entry> = entries.iter().filter(|e| e.run_id == *id).collect();
            one_run(&es)
        })
        .collect();
    // A manual rollback undoes the latest cutover that had succeeded before it.
    for i in 0..out.len() {
        if out[i].kind == "rollback" && out[i].outcome == Outcome::Succeeded {
            let recovery = out[i].duration_ms;
            if let Some(prev) = out[..i]
                .iter_mut()
                .rev()
                .find(|r| r.kind == "cutover" && r.outcome == Outcome::Succeeded)
            {
                prev.outcome = Outcome::RolledBackLater;
                prev.recovery_ms = recovery;
            }
        }
    }
    out
}

fn one_run(es: &[&Entry]) -> Option<Run> {
    let first = es.first()?;
    let started = es.iter().find_map(|e| at(e))?;
    let end = es.iter().rev().find(|e| e.step == "finished");
    let ended = end.and_then(|e| at(e));
    let mut stages: Vec<Stage> = vec![];
    let mut opened: Vec<(String, DateTime<Utc>)> = vec![];
    for e in es.iter().filter(|e| e.step != "finished") {
        let t = at(e);
        match e.state.as_str() {
            "started" => {
                if let Some(t) = t {
                    opened.push((e.step.clone(), t));
                }
                stages.push(Stage {
                    step: e.step.clone(),
                    state: "started".into(),
                    duration_ms: None,
                    detail: String::new(),
                });
            }
            state => {
                let began = opened
                    .iter()
                    .rev()
                    .find(|(s, _)| *s == e.step)
                    .map(|(_, b)| *b);
                let duration_ms = began.zip(t).map(|(b, t)| ms(b, t));
                let stage = Stage {
                    step: e.step.clone(),
                    state: state.into(),
                    duration_ms,
                    detail: e.detail.clone(),
                };
                match stages
                    .iter_mut()
                    .rev()
                    .find(|s| s.step == e.step && s.state == "started")
                {
                    Some(s) => *s = stage,
                    None => stages.push(stage),
                }
            }
        }
    }
    // Journal bookkeeping, not stages anyone waited for.
    // Records that carry state, not stages: a rollout's plan and "before" values, a cutover's
    // baseline figures.
    stages.retain(|s| {
        s.step != "plan"
            && s.step != crate::cutover::BASELINE_STEP
            && s.step != crate::cutover::RELEASE_STEP
            && s.step != crate::cutover::STRATEGIES_STEP
            && !s.step.ends_with(" before")
    });
    let release = es
        .iter()
        .find(|e| e.step == crate::cutover::RELEASE_STEP)
        .and_then(|e| serde_json::from_str(&e.detail).ok());
    let kind = first.action.clone();
    let end_state = end.map(|e| (e.state.as_str(), e.detail.as_str()));
    let rolled_back = es.iter().any(|e| e.action == "rollback");
    let outcome = match (kind.as_str(), end_state) {
        (_, None) => Outcome::Interrupted,
        ("strategy_rollout", Some(("finished", _))) => Outcome::Succeeded,
        ("strategy_rollout", Some(("reversed", _))) => Outcome::Reversed,
        ("strategy_rollout", Some(("interrupted", _))) => Outcome::Interrupted,
        ("strategy_rollout", Some(_)) => Outcome::Failed,
        ("cutover", Some((_, "rolled back"))) if rolled_back => Outcome::RolledBack,
        ("cutover", Some((_, "cutover complete"))) => Outcome::Succeeded,
        ("rollback", Some((_, "rolled back"))) => Outcome::Succeeded,
        _ => Outcome::Failed,
    };
    // Automatic rollback: from the first failed step to the end of the rollback.
    let recovery_ms = (outcome == Outcome::RolledBack)
        .then(|| {
            let failed = es.iter().find(|e| e.state == "failed").and_then(|e| at(e));
            failed.zip(ended).map(|(f, e)| ms(f, e))
        })
        .flatten();
    Some(Run {
        run_id: first.run_id.clone(),
        kind,
        from: first.from_color.clone(),
        to: first.to_color.clone(),
        started,
        ended,
        duration_ms: ended.map(|e| ms(started, e)),
        outcome,
        stages,
        recovery_ms,
        detail: end.map(|e| e.detail.clone()).unwrap_or_default(),
        release,
    })
}

/// DORA figures over the cutovers started in `[now - window, now]`.
pub fn dora(runs: &[Run], window: Duration, now: DateTime<Utc>) -> Dora {
    let since = now - chrono::Duration::from_std(window).unwrap_or(chrono::Duration::days(30));
    let deploys: Vec<&Run> = runs
        .iter()
        .filter(|r| r.kind == "cutover" && r.started >= since && r.started <= now)
        .collect();
    let judged: Vec<&&Run> = deploys
        .iter()
        .filter(|r| r.outcome != Outcome::Interrupted)
        .collect();
    let failures = judged
        .iter()
        .filter(|r| r.outcome.is_change_failure())
        .count();
    let mut rec: Vec<u64> = deploys.iter().filter_map(|r| r.recovery_ms).collect();
    rec.sort_unstable();
    let days = window.as_secs_f64() / 86_400.0;
    let successful = deploys
        .iter()
        .filter(|r| r.outcome == Outcome::Succeeded)
        .count();
    Dora {
        window_days: days,
        deployments: deploys.len(),
        successful,
        per_week: if days > 0.0 {
            successful as f64 / days * 7.0
        } else {
            0.0
        },
        change_failures: failures,
        change_failure_rate: (!judged.is_empty()).then(|| failures as f64 / judged.len() as f64),
        recoveries: rec.len(),
        median_time_to_recovery_ms: (!rec.is_empty()).then(|| rec[rec.len() / 2]),
        lead_time: None,
    }
}

pub fn secs(ms: u64) -> String {
    if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    }
}

impl Dora {
    pub fn summary(&self) -> String {
        format!(
            "{} deployment(s) in {:.0} days, {} successful ({:.1}/week); change failure rate {}; time to recovery {}; lead time not known (the journal records no commit times)",
            self.deployments,
            self.window_days,
            self.successful,
            self.per_week,
            self.change_failure_rate
                .map_or("n/a (no finished deployment)".into(), |r| format!(
                    "{:.0}% ({} of {})",
                    r * 100.0,
                    self.change_failures,
                    self.deployments
                )),
            self.median_time_to_recovery_ms
                .map_or("n/a (no recovery)".into(), |m| format!(
                    "median {} over {} recover{}",
                    secs(m),
                    self.recoveries,
                    if self.recoveries == 1 { "y" } else { "ies" }
                )),
        )
    }
}

impl Run {
    pub fn title(&self) -> String {
        let what = match self.kind.as_str() {
            "strategy_rollout" => format!("strategy rollout on {}", self.to),
            "rollback" => format!("rollback {} → {}", self.from, self.to),
            _ => match self.release.as_ref().and_then(|r| r.version.as_deref()) {
                Some(v) => format!("deployment of {v} {} → {}", self.from, self.to),
                None => format!("deployment {} → {}", self.from, self.to),
            },
        };
        format!("{} {what}: {}", self.run_id, self.outcome.text())
    }

    /// The release's build, commit and change ticket, for the one-deployment view.
    pub fn release_text(&self) -> String {
        let Some(r) = &self.release else {
            return "no release recorded (a run before versions were journaled)".into();
        };
        let part = |k: &str, v: &Option<String>| v.as_ref().map(|v| format!("{k} {v}"));
        [
            part("version", &r.version),
            part("build", &r.build),
            part("commit", &r.commit),
            part("change ticket", &r.change_ticket),
            part("policy overridden:", &r.policy_override),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", ")
    }

    pub fn stages_text(&self) -> String {
        let stages: Vec<String> = self
            .stages
            .iter()
            .map(|s| {
                let d = s.duration_ms.map(secs).unwrap_or_else(|| "?".into());
                match s.state.as_str() {
                    "done" => format!("{} {d}", s.step),
                    other => format!("{} {other} {d}", s.step),
                }
            })
            .collect();
        format!(
            "started {}, took {}: {}",
            self.started.format("%Y-%m-%d %H:%M:%SZ"),
            self.duration_ms.map(secs).unwrap_or_else(|| "?".into()),
            stages.join(" → ")
        )
    }
}

impl Run {
    /// Why the run did not simply succeed: the first failed stage and what it said (a
    /// rollback's reason is the failed stage of the run it undid), else the run's own detail.
    pub fn why(&self) -> Option<String> {
        if self.outcome == Outcome::Succeeded {
            return None;
        }
        self.stages
            .iter()
            .find(|s| s.state == "failed")
            .map(|s| format!("{} failed: {}", s.step, s.detail))
            .or_else(|| (!self.detail.is_empty()).then(|| self.detail.clone()))
    }
}

/// A self-contained page: the DORA figures, then one row per run with why it failed or rolled
/// back.
pub fn html(environment: &str, runs: &[Run], dora: &Dora) -> String {
    use maud::html;
    let body = html! {
        h1 { "Deployments — " (environment) }
        p { (dora.summary()) }
        table {
            tr { th { "run" } th { "kind" } th { "started" } th { "outcome" } th { "took" } th { "why" } th { "stages" } }
            @for r in runs.iter().rev() {
                tr {
                    td { (r.run_id) }
                    td { (r.kind) }
                    td { (r.started.format("%Y-%m-%d %H:%M:%SZ").to_string()) }
                    td class=(match r.outcome {
                        Outcome::Succeeded => "ok",
                        Outcome::Interrupted | Outcome::Reversed => "warn",
                        _ => "bad",
                    }) { (r.outcome.text()) }
                    td { (r.duration_ms.map(secs).unwrap_or_else(|| "?".into())) }
                    td { (r.why().unwrap_or_default()) }
                    td { (r.stages_text()) }
                }
            }
        }
    };
    crate::html::page(&format!("Deployments — {environment}"), body)
}
