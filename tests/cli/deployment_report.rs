//! generate_deployment_report: runs, stages, verdicts and DORA figures from a deploy journal
//! (the file journal and the PostgreSQL one), text, JSON and HTML.

use crate::support::{TestDb, checks_with, config, run, run_async};
use deploykit::journal::{Entry, Journal};

/// `(run_id, action, step, state, detail, seconds after the start of the history)`
type Row = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    i64,
);

/// Four runs: a clean cutover; a cutover whose watch failed and rolled back automatically; a
/// cutover undone later by a manual rollback; a strategy rollout that failed its judgement.
const HISTORY: &[Row] = &[
    ("cutover-1", "cutover", "prepare", "started", "", 0),
    ("cutover-1", "cutover", "prepare", "done", "", 2),
    ("cutover-1", "cutover", "watch", "started", "", 2),
    ("cutover-1", "cutover", "watch", "done", "", 62),
    (
        "cutover-1",
        "cutover",
        "finished",
        "finished",
        "cutover complete",
        62,
    ),
    ("cutover-2", "cutover", "prepare", "started", "", 1000),
    ("cutover-2", "cutover", "prepare", "done", "", 1001),
    ("cutover-2", "cutover", "watch", "started", "", 1001),
    (
        "cutover-2",
        "cutover",
        "watch",
        "failed",
        "error_rate: 30%",
        1010,
    ),
    ("cutover-2", "rollback", "switch_back", "started", "", 1010),
    ("cutover-2", "rollback", "switch_back", "done", "", 1011),
    (
        "cutover-2",
        "rollback",
        "finished",
        "finished",
        "rolled back",
        1014,
    ),
    ("cutover-3", "cutover", "prepare", "started", "", 2000),
    (
        "cutover-3",
        "cutover",
        "finished",
        "finished",
        "cutover complete",
        2030,
    ),
    ("rollback-4", "rollback", "switch_back", "started", "", 3000),
    ("rollback-4", "rollback", "switch_back", "done", "", 3001),
    (
        "rollback-4",
        "rollback",
        "finished",
        "finished",
        "rolled back",
        3006,
    ),
    (
        "rollout-5",
        "strategy_rollout",
        "plan",
        "started",
        "{}",
        4000,
    ),
    (
        "rollout-5",
        "strategy_rollout",
        "MM_EQ_001 at 10%",
        "started",
        "",
        4000,
    ),
    (
        "rollout-5",
        "strategy_rollout",
        "MM_EQ_001 at 10%",
        "done",
        "",
        4300,
    ),
    (
        "rollout-5",
        "strategy_rollout",
        "MM_EQ_001 at 50%",
        "started",
        "",
        4300,
    ),
    (
        "rollout-5",
        "strategy_rollout",
        "MM_EQ_001 at 50%",
        "failed",
        "strategy_loss_per_min",
        4320,
    ),
    (
        "rollout-5",
        "strategy_rollout",
        "finished",
        "failed",
        "",
        4320,
    ),
];

pub fn entries(start: chrono::DateTime<chrono::Utc>) -> Vec<Entry> {
    HISTORY
        .iter()
        .map(|(run_id, action, step, state, detail, t)| Entry {
            run_id: run_id.to_string(),
            environment: "local".into(),
            action: action.to_string(),
            from_color: "blue".into(),
            to_color: "green".into(),
            step: step.to_string(),
            state: state.to_string(),
            detail: detail.to_string(),
            at: (start + chrono::Duration::seconds(*t)).to_rfc3339(),
            deployment_id: format!("deploy-{run_id}"),
        })
        .collect()
}

fn assert_history(stdout: &str) {
    let v: serde_json::Value = serde_json::from_str(stdout).unwrap();
    let checks = v["checks"].as_array().unwrap();
    let outcome = |id: &str| {
        checks
            .iter()
            .find(|c| c["data"]["run_id"] == id)
            .unwrap_or_else(|| panic!("no run {id}: {stdout}"))["data"]["outcome"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(outcome("cutover-1"), "succeeded");
    assert_eq!(outcome("cutover-2"), "rolled_back");
    assert_eq!(outcome("cutover-3"), "rolled_back_later");
    assert_eq!(outcome("rollback-4"), "succeeded");
    assert_eq!(outcome("rollout-5"), "failed");
    let run1 = checks
        .iter()
        .find(|c| c["data"]["run_id"] == "cutover-1")
        .unwrap();
    assert_eq!(run1["data"]["duration_ms"], 62_000);
    assert_eq!(run1["data"]["stages"][1]["step"], "watch");
    assert_eq!(run1["data"]["stages"][1]["duration_ms"], 60_000);
    let dora = &checks.iter().find(|c| c["group"] == "dora").unwrap()["data"];
    assert_eq!(dora["deployments"], 3);
    assert_eq!(dora["successful"], 1);
    assert_eq!(dora["change_failures"], 2);
    assert!((dora["change_failure_rate"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-9);
    // Recoveries: 4 s (automatic, failed watch → rolled back) and 6 s (the manual rollback).
    assert_eq!(dora["recoveries"], 2);
    assert_eq!(dora["median_time_to_recovery_ms"], 6_000);
    assert!(dora["lead_time"].is_null());
    // History is reported, not failed on.
    assert_eq!(v["outcome"], "pass");
    assert_eq!(checks_with(stdout, "fail"), Vec::<String>::new());
}

#[test]
fn a_file_journal_becomes_runs_with_stages_and_dora_figures() {
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = entries(chrono::Utc::now() - chrono::Duration::hours(3))
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect();
    std::fs::write(dir.path().join("journal-local.jsonl"), lines.join("\n")).unwrap();
    let (_d, cfg) = config("[environments.local]\n");
    let html = dir.path().join("report.html");
    let args = [
        "--config",
        cfg.to_str().unwrap(),
        "--journal-dir",
        dir.path().to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ];
    let mut json = args.to_vec();
    json.extend(["--format", "json"]);
    let r = run("generate_deployment_report", &json, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_history(&r.stdout);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<table>") && page.contains("rolled back automatically"));
    assert!(page.contains("change failure rate 67% (2 of 3)"), "{page}");
    // The text form: one line per run, failures as warnings, the DORA line last.
    let text = run("generate_deployment_report", &args, &[]);
    assert_eq!(text.code, 0);
    assert!(
        text.stdout
            .contains("[WARN] cutover-2 deployment blue → green: rolled back automatically"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains("DORA, last 30 days"),
        "{}",
        text.stdout
    );
    // Runs older than --since are left out.
    let mut old = args.to_vec();
    old.extend(["--since", "1h", "--format", "json"]);
    let r = run("generate_deployment_report", &old, &[]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("no runs in the journal"), "{}", r.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_journal_reads_the_same_without_taking_the_cutover_lock() {
    let db = TestDb::new();
    let (_d, cfg) = config(
        "[environments.local]\n[environments.local.database]\nurl_env = \"REPORT_DB_URL\"\n",
    );
    // No journal table yet: an empty report, and nothing created.
    let r = run(
        "generate_deployment_report",
        &["--config", cfg.to_str().unwrap(), "--format", "json"],
        &[("REPORT_DB_URL", &db.url)],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("no runs in the journal"));
    assert_eq!(db.sql("SELECT to_regclass('deploy_journal') IS NULL"), "t");
    // Written through the journal itself, which holds the cutover lock while the report runs.
    let (c, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let j = Journal::open_pg(c, "cutover", "local", Default::default())
        .await
        .unwrap();
    for e in entries(chrono::Utc::now() - chrono::Duration::hours(3)) {
        j.write(&e).await.unwrap();
    }
    let r = run_async(
        "generate_deployment_report",
        &["--config", cfg.to_str().unwrap(), "--format", "json"],
        &[("REPORT_DB_URL", &db.url)],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.all().contains(&db.url), "the URL never appears");
    assert_history(&r.stdout);
    j.release().await.unwrap();
}
