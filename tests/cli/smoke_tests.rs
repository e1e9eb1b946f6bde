//! smoke_tests: a healthy stack passes every check; each injected fault fails exactly the check
//! that watches it, with a message naming the cause; the test account is always left clean.

use crate::support::{
    ADMIN_TOKEN, Run, check_message, checks_with, client, config, eventually_async, run_async, sim,
};
use deploykit::contract::Faults;
use std::time::Duration;

/// One sim per role so a fault in one service touches only its checks.
struct Fleet {
    trading: trading_sim::SimHandle,
    risk: trading_sim::SimHandle,
    md: Option<trading_sim::SimHandle>,
    web: trading_sim::SimHandle,
    md_url: String,
    _cfg: tempfile::TempDir,
    cfg: std::path::PathBuf,
}

async fn fleet(extra: &str) -> Fleet {
    let trading = sim("blue", "1.0.0").await;
    let risk = sim("blue", "1.0.0").await;
    let md = sim("blue", "1.0.0").await;
    let web = sim("blue", "1.0.0").await;
    let text = format!(
        "[environments.local]\ncolors = [\"blue\"]\ntest_account = \"TEST-SMOKE-01\"\n\
         [environments.local.services.blue]\ntrading-engine = [\"{t}\"]\noms = [\"{t}\"]\n\
         risk-engine = [\"{r}\"]\nmarketdata = [\"{m}\"]\nweb = [\"{w}\"]\n\
         [environments.local.smoke]\nmax_feed_age_ms = 250\n{extra}",
        t = trading.url(),
        r = risk.url(),
        m = md.url(),
        w = web.url()
    );
    let (d, p) = config(&text);
    // The feeds publish before the first check.
    let feeds = client(&md.url());
    eventually_async("feeds publishing", Duration::from_secs(5), async || {
        let f = feeds.feeds().await.ok()?;
        (!f.is_empty() && f.iter().all(|f| f.last_msg_age_ms < 250)).then_some(())
    })
    .await;
    Fleet {
        md_url: md.url(),
        trading,
        risk,
        md: Some(md),
        web,
        _cfg: d,
        cfg: p,
    }
}

async fn smoke(f: &Fleet, extra: &[&str]) -> Run {
    let mut args = vec!["--config", f.cfg.to_str().unwrap(), "--format", "json"];
    args.extend_from_slice(extra);
    run_async(
        "smoke_tests",
        &args,
        &[("DEPLOYKIT_ADMIN_TOKEN", ADMIN_TOKEN)],
    )
    .await
}

/// The promise of the tool: no open order and a flat position on the test account.
async fn assert_account_clean(f: &Fleet) {
    let c = client(&f.trading.url());
    c.clear_faults().await.unwrap();
    let open = c
        .orders("TEST-SMOKE-01")
        .await
        .unwrap()
        .into_iter()
        .filter(|o| o.status.is_open())
        .count();
    assert_eq!(open, 0, "open orders left on the test account");
    let pos = c.positions("TEST-SMOKE-01").await.unwrap();
    assert!(
        pos.positions.iter().all(|p| p.qty == 0),
        "position not flat: {pos:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_fleet_passes_every_check() {
    let f = fleet("").await;
    let r = smoke(&f, &["--expect-version", "1.0.0"]).await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(checks_with(&r.stdout, "fail").is_empty());
    let ok = checks_with(&r.stdout, "ok");
    for name in [
        "Limit order accepted and resting",
        "Cancel confirmed",
        "Market order filled",
        "Fills match the order",
        "Position moved by the filled quantity",
        "P&L consistent with fills and marks",
        "All feeds connected",
        "Message rates in range",
        "No stale data",
        "Feed latency acceptable",
        "Position limit enforced",
        "Loss limit checked",
        "Invalid orders rejected",
        "Test account clean after the run",
    ] {
        assert!(
            ok.contains(&name.to_string()),
            "{name} did not pass: {ok:?}"
        );
    }
    assert_account_clean(&f).await;
}

/// Inject `faults` into one service, run, and return the names of the failed checks.
async fn failing_with(
    f: &Fleet,
    target: &str,
    faults: Faults,
    args: &[&str],
) -> (Vec<String>, Run) {
    client(target).set_faults(&faults).await.unwrap();
    if faults.stale_feed == Some(true) {
        let feeds = client(target);
        eventually_async("feeds going stale", Duration::from_secs(5), async || {
            let f = feeds.feeds().await.ok()?;
            f.iter().all(|f| f.last_msg_age_ms > 300).then_some(())
        })
        .await;
    }
    let r = smoke(f, args).await;
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    client(target).clear_faults().await.unwrap();
    assert_account_clean(f).await;
    let mut failed = checks_with(&r.stdout, "fail");
    failed.sort();
    (failed, r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_risk_limits_ignored() {
    let f = fleet("").await;
    let (failed, r) = failing_with(
        &f,
        &f.risk.url(),
        Faults {
            risk_ignore_limits: Some(true),
            ..Default::default()
        },
        &[],
    )
    .await;
    assert_eq!(
        failed,
        vec!["Loss limit checked", "Position limit enforced"]
    );
    assert!(check_message(&r.stdout, "Position limit enforced").contains("was allowed"));
    assert!(check_message(&r.stdout, "Loss limit checked").contains("not enforced"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_stale_feed() {
    let f = fleet("").await;
    let (failed, r) = failing_with(
        &f,
        &f.md_url,
        Faults {
            stale_feed: Some(true),
            ..Default::default()
        },
        &[],
    )
    .await;
    assert_eq!(failed, vec!["No stale data"]);
    assert!(check_message(&r.stdout, "No stale data").contains("equities last message"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_added_latency() {
    let f = fleet("").await;
    let (failed, r) = failing_with(
        &f,
        &f.md_url,
        Faults {
            latency_ms: Some(150),
            ..Default::default()
        },
        &[],
    )
    .await;
    assert_eq!(failed, vec!["Feed latency acceptable"]);
    assert!(check_message(&r.stdout, "Feed latency acceptable").contains("limit 5000 µs"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_error_rate() {
    let f = fleet("").await;
    let (failed, r) = failing_with(
        &f,
        &f.trading.url(),
        Faults {
            error_rate: Some(1.0),
            ..Default::default()
        },
        &[],
    )
    .await;
    // Stable names (JUnit history), the URL in the message.
    let rate = "Error rate during the run (trading-engine #1)".to_string();
    assert!(failed.contains(&rate), "{failed:?}");
    assert!(check_message(&r.stdout, &rate).contains(&f.trading.url()));
    assert!(
        failed.contains(&"Limit order accepted and resting".to_string()),
        "{failed:?}"
    );
    assert!(
        check_message(&r.stdout, "Limit order accepted and resting").contains("injected fault")
    );
    // Nothing outside the trading engine fails.
    for name in [
        "No stale data",
        "Position limit enforced",
        "Invalid orders rejected",
        "All feeds connected",
    ] {
        assert!(
            !failed.contains(&name.to_string()),
            "{name} failed: {failed:?}"
        );
    }
    // Later steps are skipped, not failed for the same cause.
    assert!(checks_with(&r.stdout, "skip").contains(&"Market order filled".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_wrong_version() {
    let f = fleet("").await;
    let (failed, r) = failing_with(
        &f,
        &f.web.url(),
        Faults {
            version: Some("0.9.9".into()),
            ..Default::default()
        },
        &["--expect-version", "1.0.0"],
    )
    .await;
    let name = "web #1 healthy".to_string();
    assert_eq!(failed, vec![name.clone()]);
    assert!(check_message(&r.stdout, &name).contains("runs version 0.9.9 (expected 1.0.0)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_service_down() {
    let mut f = fleet("").await;
    drop(f.md.take());
    let md = client(&f.md_url);
    eventually_async("marketdata down", Duration::from_secs(5), async || {
        md.health().await.is_err().then_some(())
    })
    .await;
    let r = smoke(&f, &[]).await;
    assert_eq!(r.code, 1);
    let mut failed = checks_with(&r.stdout, "fail");
    failed.sort();
    assert_eq!(
        failed,
        vec![
            "All feeds connected".to_string(),
            "marketdata #1 healthy".to_string()
        ]
    );
    assert!(check_message(&r.stdout, "All feeds connected").contains("connection failed"));
    assert_account_clean(&f).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_fails_the_check_and_leaves_the_account_clean() {
    let f = fleet("").await;
    let (failed, r) = failing_with(
        &f,
        &f.trading.url(),
        Faults {
            latency_ms: Some(1500),
            ..Default::default()
        },
        &["--timeout", "500ms", "--only", "orders"],
    )
    .await;
    assert!(
        failed.contains(&"Limit order accepted and resting".to_string()),
        "{failed:?}"
    );
    assert!(
        check_message(&r.stdout, "Limit order accepted and resting")
            .contains("no answer within 500ms")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_mid_run_cleans_up_and_exits_130() {
    let f = fleet("").await;
    // The order flow fills quickly; the risk engine hangs, so the run is mid-way when SIGINT lands.
    client(&f.risk.url())
        .set_faults(&Faults {
            latency_ms: Some(4000),
            ..Default::default()
        })
        .await
        .unwrap();
    let child = std::process::Command::new(crate::support::bin("smoke_tests"))
        .args(["--config", f.cfg.to_str().unwrap(), "--timeout", "10s"])
        .env("DEPLOYKIT_ADMIN_TOKEN", ADMIN_TOKEN)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Signalled once it is mid-run: its risk check is being served (and hangs).
    let risk = client(&f.risk.url());
    eventually_async(
        "smoke_tests reaching the risk check",
        Duration::from_secs(10),
        async || (risk.inflight().await.ok()?.inflight_requests > 0).then_some(()),
    )
    .await;
    crate::support::signal("-INT", &child.id().to_string());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("interrupted; cleanup: created 2 order(s)"),
        "{stderr}"
    );
    assert!(stderr.contains("flattened AAPL -1"), "{stderr}");
    assert_account_clean(&f).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_to_trade_without_a_test_account() {
    let s = sim("blue", "1.0.0").await;
    let (_d, p) = config(&format!(
        "[environments.local.services.blue]\ntrading-engine = [\"{}\"]\n",
        s.url()
    ));
    let r = run_async("smoke_tests", &["--config", p.to_str().unwrap()], &[]).await;
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("test_account is not set"), "{}", r.stderr);
    // Health alone needs no account.
    let r = run_async(
        "smoke_tests",
        &["--config", p.to_str().unwrap(), "--only", "health"],
        &[],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(
        client(&s.url())
            .orders("TEST-SMOKE-01")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_lists_checks_and_sends_nothing() {
    let f = fleet("").await;
    let r = smoke(&f, &["--dry-run", "--database-focused"]).await;
    assert_eq!(r.code, 0, "{}", r.stdout);
    let skipped = checks_with(&r.stdout, "skip");
    assert!(skipped.contains(&"Market order filled".to_string()));
    assert!(skipped.contains(&"Schema version".to_string()));
    let m = client(&f.trading.url()).metrics().await.unwrap();
    assert!(
        m.contains("orders_total{status=\"accepted\"} 0")
            && m.contains("orders_total{status=\"rejected\"} 0"),
        "dry run sent orders"
    );
    assert!(
        client(&f.trading.url())
            .orders("TEST-SMOKE-01")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junit_has_one_case_per_check() {
    let f = fleet("").await;
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("smoke.xml");
    let r = smoke(&f, &["--junit", junit.to_str().unwrap()]).await;
    assert_eq!(r.code, 0);
    let xml = std::fs::read_to_string(&junit).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let cases = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .count();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(cases, v["checks"].as_array().unwrap().len());
    assert!(xml.contains("classname=\"smoke_tests.orders\""));
}

mod database {
    use crate::support::{TestDb, check_message, checks_with, config, repo_root, run_async};

    async fn migrated() -> (TestDb, tempfile::TempDir, std::path::PathBuf) {
        let db = TestDb::new();
        let (d, cfg) = config("[environments.local]\ndatabase = { url_env = \"DATABASE_URL\" }\n");
        let m = repo_root().join("migrations");
        let r = run_async(
            "db_migrate",
            &[
                "--config",
                cfg.to_str().unwrap(),
                "--migrations",
                m.to_str().unwrap(),
                "migrate",
            ],
            &[("DATABASE_URL", &db.url)],
        )
        .await;
        assert_eq!(r.code, 0, "{}", r.stderr);
        (db, d, cfg)
    }

    async fn db_smoke(db: &TestDb, cfg: &std::path::Path) -> crate::support::Run {
        let m = repo_root().join("migrations");
        run_async(
            "smoke_tests",
            &[
                "--config",
                cfg.to_str().unwrap(),
                "--only",
                "database",
                "--migrations",
                m.to_str().unwrap(),
                "--format",
                "json",
            ],
            &[("DATABASE_URL", &db.url)],
        )
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn migrated_database_passes() {
        let (db, _d, cfg) = migrated().await;
        let r = db_smoke(&db, &cfg).await;
        assert_eq!(r.code, 0, "{}", r.stdout);
        assert!(checks_with(&r.stdout, "ok").contains(&"Schema version".to_string()));
        assert!(check_message(&r.stdout, "Schema version").starts_with("3.2.2, as expected"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn missing_table_fails_exactly_that_check() {
        let (db, _d, cfg) = migrated().await;
        db.sql("DROP TABLE positions");
        let r = db_smoke(&db, &cfg).await;
        assert_eq!(r.code, 1);
        assert_eq!(
            checks_with(&r.stdout, "fail"),
            vec!["Required tables exist"]
        );
        assert!(check_message(&r.stdout, "Required tables exist").contains("missing: positions"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn older_schema_fails_the_version_check() {
        let (db, _d, cfg) = migrated().await;
        let m = repo_root().join("migrations");
        let r = run_async(
            "db_migrate",
            &[
                "--config",
                cfg.to_str().unwrap(),
                "--migrations",
                m.to_str().unwrap(),
                "rollback",
                "--to-version",
                "3.2.1",
            ],
            &[("DATABASE_URL", &db.url)],
        )
        .await;
        assert_eq!(r.code, 0);
        let r = db_smoke(&db, &cfg).await;
        let mut failed = checks_with(&r.stdout, "fail");
        failed.sort();
        assert_eq!(failed, vec!["Required tables exist", "Schema version"]);
        assert!(
            check_message(&r.stdout, "Schema version")
                .contains("the database is at 3.2.1, expected 3.2.2")
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn orphans_unvalidated_constraints_and_invalid_indexes_are_caught() {
        let (db, _d, cfg) = migrated().await;
        db.sql("ALTER TABLE positions DROP CONSTRAINT positions_account_id_fkey");
        db.sql("INSERT INTO positions (account_id, symbol, qty) VALUES ('GHOST', 'AAPL', 5)");
        db.sql("ALTER TABLE positions ADD CONSTRAINT positions_account_fk FOREIGN KEY (account_id) REFERENCES accounts NOT VALID");
        db.sql("INSERT INTO strategies (strategy_id) VALUES ('A'), ('B')");
        db.sql("UPDATE strategies SET description = 'same'");
        // A failed concurrent unique build leaves an INVALID index.
        let _ = std::process::Command::new("psql")
            .args([
                db.url.as_str(),
                "-qc",
                "CREATE UNIQUE INDEX CONCURRENTLY strategies_desc ON strategies (description)",
            ])
            .output();
        let r = db_smoke(&db, &cfg).await;
        let mut failed = checks_with(&r.stdout, "fail");
        failed.sort();
        assert_eq!(
            failed,
            vec![
                "All constraints validated",
                "No invalid indexes",
                "No orphaned foreign keys"
            ]
        );
        assert!(
            check_message(&r.stdout, "No orphaned foreign keys")
                .contains("positions.positions_account_fk: 1 row(s) without a accounts")
        );
        assert!(check_message(&r.stdout, "No invalid indexes").contains("strategies_desc"));
    }
}

/// Every server of a role is checked, not the first: with two market-data and two risk servers,
/// a stale feed on the second market-data server and a dead second risk engine fail under that
/// server's name (and URL), while the first ones pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_server_of_a_role_is_checked_and_a_failure_names_it() {
    let trading = sim("blue", "1.0.0").await;
    let (md1, md2) = (sim("blue", "1.0.0").await, sim("blue", "1.0.0").await);
    let (risk1, risk2) = (sim("blue", "1.0.0").await, sim("blue", "1.0.0").await);
    let (d, p) = config(&format!(
        "[environments.local]\ncolors = [\"blue\"]\ntest_account = \"TEST-SMOKE-01\"\n\
         [environments.local.services.blue]\ntrading-engine = [\"{t}\"]\noms = [\"{t}\"]\n\
         risk-engine = [\"{r1}\", \"{r2}\"]\nmarketdata = [\"{m1}\", \"{m2}\"]\n\
         [environments.local.smoke]\nmax_feed_age_ms = 250\n",
        t = trading.url(),
        r1 = risk1.url(),
        r2 = risk2.url(),
        m1 = md1.url(),
        m2 = md2.url(),
    ));
    let _keep = d;
    let feeds = client(&md1.url());
    eventually_async("feeds publishing", Duration::from_secs(5), async || {
        let f = feeds.feeds().await.ok()?;
        (!f.is_empty() && f.iter().all(|f| f.last_msg_age_ms < 250)).then_some(())
    })
    .await;
    let args = [
        "--config",
        p.to_str().unwrap(),
        "--format",
        "json",
        "--only",
        "marketdata,risk",
    ];
    let r = run_async(
        "smoke_tests",
        &args,
        &[("DEPLOYKIT_ADMIN_TOKEN", ADMIN_TOKEN)],
    )
    .await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let ok = checks_with(&r.stdout, "ok");
    for name in [
        "No stale data (marketdata #1)",
        "No stale data (marketdata #2)",
        "Position limit enforced (risk-engine #2)",
    ] {
        assert!(ok.contains(&name.to_string()), "{name}: {ok:?}");
    }

    // Injected: the second market-data server goes stale, the second risk engine dies.
    client(&md2.url())
        .set_faults(&Faults {
            stale_feed: Some(true),
            ..Default::default()
        })
        .await
        .unwrap();
    let m2 = client(&md2.url());
    eventually_async("feeds going stale", Duration::from_secs(5), async || {
        let f = m2.feeds().await.ok()?;
        f.iter().all(|f| f.last_msg_age_ms > 300).then_some(())
    })
    .await;
    let r2_url = risk2.url();
    drop(risk2);
    let dead = client(&r2_url);
    eventually_async("risk engine #2 down", Duration::from_secs(5), async || {
        dead.health().await.is_err().then_some(())
    })
    .await;
    let r = run_async(
        "smoke_tests",
        &args,
        &[("DEPLOYKIT_ADMIN_TOKEN", ADMIN_TOKEN)],
    )
    .await;
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let failed = checks_with(&r.stdout, "fail");
    assert!(
        failed.contains(&"No stale data (marketdata #2)".to_string()),
        "{failed:?}"
    );
    assert!(
        !failed
            .iter()
            .any(|n| n.ends_with("(marketdata #1)") || n.ends_with("(risk-engine #1)")),
        "{failed:?}"
    );
    assert!(
        failed.iter().any(|n| n.ends_with("(risk-engine #2)")),
        "{failed:?}"
    );
    assert!(
        check_message(&r.stdout, "No stale data (marketdata #2)").starts_with(&md2.url()),
        "{}",
        r.stdout
    );
    let _ = (trading, md1, risk1);
}
