//! strategy_rollout: staged activation judged by compare_metrics' judge; a fault at a step
//! stops the rollout there and restores the last good size.

use crate::support::{
    ADMIN_TOKEN, Run, check_message, checks_with, client, config, run_async, sim,
};
use deploykit::contract::{Faults, OrderRequest, OrderType, Side};
use std::time::Duration;

async fn rollout(url: &str, dir: &std::path::Path, args: &[&str]) -> Run {
    let (_d, cfg) = config(&format!(
        "[environments.local]\ncolors = [\"blue\"]\n[environments.local.services.blue]\ntrading-engine = [\"{url}\"]\nrisk-engine = [\"{url}\"]\n"
    ));
    let mut a = vec![
        "--config",
        cfg.to_str().unwrap(),
        "--format",
        "json",
        "--journal-dir",
        dir.to_str().unwrap(),
        "--baseline-window",
        "1s",
        "--tick",
        "200ms",
    ];
    a.extend_from_slice(args);
    run_async(
        "strategy_rollout",
        &a,
        &[("DEPLOYKIT_ADMIN_TOKEN", ADMIN_TOKEN)],
    )
    .await
}

/// Steady risk checks so the judge has traffic to look at.
fn traffic(url: String) -> tokio_util::sync::CancellationToken {
    let stop = tokio_util::sync::CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move {
        let c = client(&url);
        let o = OrderRequest {
            account: "TEST-SMOKE-01".into(),
            symbol: "AAPL".into(),
            side: Side::Buy,
            qty: 1,
            order_type: OrderType::Market,
            price: None,
            client_order_id: "t".into(),
            strategy: None,
        };
        while !s.is_cancelled() {
            let _ = c.risk_check(&o).await;
            // Pacing of the background load, not a wait for a condition.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    stop
}

/// Waits until MM_EQ_001 is set to 50 % (bounded: false if the rollout never gets there, and
/// the test's assertions then say why).
async fn reached_50_percent(url: &str) -> bool {
    let c = client(url);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        if c.admin_state()
            .await
            .is_ok_and(|s| s.strategies["MM_EQ_001"].size_pct == 50)
        {
            return true;
        }
        // Pacing of the poll: this runs in a spawned task, where `until`'s borrowing closure
        // is not `Send`.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// A rollout under steady traffic whose target gets `faults` as soon as the 50 % step is set.
async fn rollout_with_faults_at_50_percent(
    faults: Faults,
    args: &[&str],
) -> (trading_sim::SimHandle, Run) {
    let s = sim("blue", "1.0.0").await;
    let dir = tempfile::tempdir().unwrap();
    let stop = traffic(s.url());
    let url = s.url();
    let injector = tokio::spawn(async move {
        if reached_50_percent(&url).await {
            client(&url).set_faults(&faults).await.unwrap();
        }
    });
    let r = rollout(&s.url(), dir.path(), args).await;
    stop.cancel();
    injector.abort();
    (s, r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_through_each_strategy_in_turn() {
    let s = sim("blue", "1.0.0").await;
    let dir = tempfile::tempdir().unwrap();
    let stop = traffic(s.url());
    let r = rollout(
        &s.url(),
        dir.path(),
        &[
            "--strategy",
            "MM_EQ_001",
            "--then",
            "STAT_ARB_PAIRS_001",
            "--hold",
            "800ms",
        ],
    )
    .await;
    stop.cancel();
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        checks_with(&r.stdout, "ok"),
        vec![
            "MM_EQ_001 at 10%",
            "MM_EQ_001 at 50%",
            "MM_EQ_001 at 100%",
            "STAT_ARB_PAIRS_001 at 10%",
            "STAT_ARB_PAIRS_001 at 50%",
            "STAT_ARB_PAIRS_001 at 100%"
        ]
    );
    let st = client(&s.url()).admin_state().await.unwrap();
    assert_eq!(st.strategies["MM_EQ_001"].size_pct, 100);
    assert!(st.strategies["STAT_ARB_PAIRS_001"].active);
    assert!(
        !st.strategies["MOMENTUM_ST_001"].active,
        "strategies not named stay off"
    );
    let journal = std::fs::read_to_string(dir.path().join("journal-local.jsonl")).unwrap();
    assert!(
        journal.contains("\"step\":\"MM_EQ_001 at 50%\",\"state\":\"done\""),
        "{journal}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_at_the_50_percent_step_stops_there_and_restores_10() {
    let (s, r) = rollout_with_faults_at_50_percent(
        Faults {
            error_rate: Some(0.3),
            ..Default::default()
        },
        &[
            "--strategy",
            "MM_EQ_001",
            "--then",
            "STAT_ARB_PAIRS_001",
            "--hold",
            "2s",
        ],
    )
    .await;
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(checks_with(&r.stdout, "ok"), vec!["MM_EQ_001 at 10%"]);
    assert_eq!(checks_with(&r.stdout, "fail"), vec!["MM_EQ_001 at 50%"]);
    let m = check_message(&r.stdout, "MM_EQ_001 at 50%");
    assert!(
        m.contains("error_rate") && m.contains("set back to 10%"),
        "{m}"
    );
    let st = client(&s.url()).admin_state().await.unwrap();
    assert_eq!(
        (
            st.strategies["MM_EQ_001"].active,
            st.strategies["MM_EQ_001"].size_pct
        ),
        (true, 10)
    );
    assert!(
        !st.strategies["STAT_ARB_PAIRS_001"].active,
        "later strategies are not started"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_prints_the_plan_and_bad_steps_are_usage_errors() {
    let s = sim("blue", "1.0.0").await;
    let dir = tempfile::tempdir().unwrap();
    let r = rollout(
        &s.url(),
        dir.path(),
        &["--strategy", "MM_EQ_001", "--dry-run"],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(checks_with(&r.stdout, "skip").len(), 3);
    assert!(r.stdout.contains("/admin/strategies/MM_EQ_001"));
    assert!(!client(&s.url()).admin_state().await.unwrap().strategies["MM_EQ_001"].active);
    for bad in ["50,10", "0,50", "10,150"] {
        let r = rollout(
            &s.url(),
            dir.path(),
            &["--strategy", "MM_EQ_001", "--steps", bad],
        )
        .await;
        assert_eq!(r.code, 2, "{bad}: {}", r.stderr);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn risk_rejections_rising_at_a_step_stop_the_rollout() {
    let s = sim("blue", "1.0.0").await;
    let dir = tempfile::tempdir().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let oversized = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (st, ov, url) = (stop.clone(), oversized.clone(), s.url());
    // Orders that fill (alternating sides) until the 50 % step, then orders the risk engine rejects.
    tokio::spawn(async move {
        let c = client(&url);
        let mut i = 0u64;
        while !st.is_cancelled() {
            i += 1;
            let big = ov.load(std::sync::atomic::Ordering::Relaxed);
            let o = OrderRequest {
                account: "TEST-SMOKE-01".into(),
                symbol: "AAPL".into(),
                side: if i.is_multiple_of(2) {
                    Side::Buy
                } else {
                    Side::Sell
                },
                qty: if big { 50_000 } else { 1 },
                order_type: OrderType::Market,
                price: None,
                client_order_id: format!("rr-{i}"),
                strategy: None,
            };
            let _ = c.place_order(&o).await;
            // Pacing of the background load, not a wait for a condition.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let url = s.url();
    let ov2 = oversized.clone();
    let injector = tokio::spawn(async move {
        if reached_50_percent(&url).await {
            ov2.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let r = rollout(
        &s.url(),
        dir.path(),
        &["--strategy", "MM_EQ_001", "--hold", "2s"],
    )
    .await;
    stop.cancel();
    injector.abort();
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let m = check_message(&r.stdout, "MM_EQ_001 at 50%");
    assert!(m.contains("risk_rejections"), "{m}");
    assert_eq!(
        client(&s.url()).admin_state().await.unwrap().strategies["MM_EQ_001"].size_pct,
        10
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strategy_losing_money_at_50_percent_is_set_back_to_10() {
    // The strategy's P&L trend turns bad once it trades at 50 %: 40/s at full size is 1,200 per
    // minute at 50 %, far over the default ceiling of 100 per minute.
    let (s, r) = rollout_with_faults_at_50_percent(
        Faults {
            strategy_loss_per_s: Some(40.0),
            ..Default::default()
        },
        &["--strategy", "MM_EQ_001", "--hold", "2s"],
    )
    .await;
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(checks_with(&r.stdout, "ok"), vec!["MM_EQ_001 at 10%"]);
    let m = check_message(&r.stdout, "MM_EQ_001 at 50%");
    assert!(
        m.contains("strategy_loss_per_min") && m.contains("set back to 10%"),
        "{m}"
    );
    assert_eq!(
        client(&s.url()).admin_state().await.unwrap().strategies["MM_EQ_001"].size_pct,
        10
    );
}

/// The journal a rollout leaves when its process dies during the 50 % step.
fn crashed_journal(dir: &std::path::Path) {
    let line = |step: &str, state: &str, detail: &str| {
        serde_json::json!({"run_id": "rollout-1", "environment": "local", "action": "strategy_rollout",
            "from_color": "blue", "to_color": "blue", "step": step, "state": state, "detail": detail,
            "at": "2026-11-26T06:00:00Z"})
        .to_string()
    };
    let plan = r#"{"strategies":["MM_EQ_001","STAT_ARB_PAIRS_001"],"steps":[10,50,100],"hold_ms":300,"color":"blue"}"#;
    let lines = [
        line("plan", "started", plan),
        line(
            "MM_EQ_001 before",
            "done",
            r#"{"active":false,"size_pct":0}"#,
        ),
        line("MM_EQ_001 at 10%", "started", ""),
        line("MM_EQ_001 at 10%", "done", ""),
        line("MM_EQ_001 at 50%", "started", ""),
    ];
    std::fs::write(dir.join("journal-local.jsonl"), lines.join("\n") + "\n").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_rollout_resumes_where_it_stopped_and_can_be_reversed() {
    let s = sim("blue", "1.0.0").await;
    let dir = tempfile::tempdir().unwrap();
    let c = client(&s.url());
    // As the crashed run left it: MM_EQ_001 at 50 %; STAT_ARB_PAIRS_001 was at 30 % before.
    for (name, pct) in [("MM_EQ_001", 50), ("STAT_ARB_PAIRS_001", 30)] {
        c.set_strategy(
            name,
            &deploykit::contract::Strategy {
                active: true,
                size_pct: pct,
            },
        )
        .await
        .unwrap();
    }
    crashed_journal(dir.path());
    let stop = traffic(s.url());
    let dry = rollout(&s.url(), dir.path(), &["--resume", "--dry-run"]).await;
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert_eq!(checks_with(&dry.stdout, "skip").len(), 6, "{}", dry.stdout);
    assert!(check_message(&dry.stdout, "MM_EQ_001 at 10%").contains("done in the interrupted run"));

    let r = rollout(&s.url(), dir.path(), &["--resume"]).await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        checks_with(&r.stdout, "ok"),
        vec![
            "MM_EQ_001 at 50%",
            "MM_EQ_001 at 100%",
            "STAT_ARB_PAIRS_001 at 10%",
            "STAT_ARB_PAIRS_001 at 50%",
            "STAT_ARB_PAIRS_001 at 100%"
        ],
        "the finished 10 % step is not repeated"
    );
    let journal = std::fs::read_to_string(dir.path().join("journal-local.jsonl")).unwrap();
    assert!(
        journal.contains(r#""run_id":"rollout-1","environment":"local","action":"strategy_rollout","from_color":"blue","to_color":"blue","step":"finished","state":"finished""#),
        "{journal}"
    );
    // Finished: nothing left to resume (usage error, exit 2).
    let again = rollout(&s.url(), dir.path(), &["--resume"]).await;
    assert_eq!(again.code, 2, "{}", again.stdout);
    assert!(
        again.stderr.contains("finished: nothing to resume"),
        "{}",
        again.stderr
    );

    // Reverse: every strategy back to its size before the rollout, last one first.
    let r = rollout(&s.url(), dir.path(), &["--reverse"]).await;
    stop.cancel();
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        checks_with(&r.stdout, "ok"),
        vec!["STAT_ARB_PAIRS_001 back to 30%", "MM_EQ_001 deactivated"]
    );
    let st = c.admin_state().await.unwrap();
    assert!(!st.strategies["MM_EQ_001"].active);
    assert_eq!(
        (
            st.strategies["STAT_ARB_PAIRS_001"].active,
            st.strategies["STAT_ARB_PAIRS_001"].size_pct
        ),
        (true, 30)
    );
    let twice = rollout(&s.url(), dir.path(), &["--reverse"]).await;
    assert_eq!(twice.code, 2);
    assert!(
        twice.stderr.contains("already reversed"),
        "{}",
        twice.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_without_an_interrupted_rollout_is_a_usage_error() {
    let s = sim("blue", "1.0.0").await;
    let dir = tempfile::tempdir().unwrap();
    let r = rollout(&s.url(), dir.path(), &["--resume"]).await;
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(r.stderr.contains("nothing to resume"), "{}", r.stderr);
    let r = rollout(
        &s.url(),
        dir.path(),
        &["--resume", "--strategy", "MM_EQ_001"],
    )
    .await;
    assert_eq!(r.code, 2, "--resume takes its plan from the journal");
}
