//! measure_latency: coordinated-omission correction, baselines and the gate, safety.

use crate::support::{
    ADMIN_TOKEN, Run, check_message, checks_with, client, config, run_async, sim,
};
use deploykit::contract::Faults;
use std::time::Duration;

fn cfg(url: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    config(&format!(
        "[environments.local]\ncolors = [\"blue\"]\ntest_account = \"TEST-SMOKE-01\"\n\
         [environments.local.services.blue]\ntrading-engine = [\"{url}\"]\nrisk-engine = [\"{url}\"]\nmarketdata = [\"{url}\"]\n"
    ))
}

async fn ml(cfg: &std::path::Path, args: &[&str]) -> Run {
    let mut a = vec!["--config", cfg.to_str().unwrap(), "--format", "json"];
    a.extend_from_slice(args);
    run_async(
        "measure_latency",
        &a,
        &[("DEPLOYKIT_ADMIN_TOKEN", ADMIN_TOKEN)],
    )
    .await
}

fn data(r: &Run, name: &str, key: &str) -> f64 {
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap()["data"][key]
        .as_f64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_stall_dominates_the_corrected_p99_and_not_the_naive_one() {
    let s = sim("blue", "1.0.0").await;
    let (_d, c) = cfg(&s.url());
    let cl = client(&s.url());
    // One 200 ms stall, 5 s into a 10 s run at 2000 req/s.
    let stall = tokio::spawn(async move {
        // About time: the stall lands mid-run, with steady samples on both sides of it.
        tokio::time::sleep(Duration::from_millis(6000)).await;
        cl.set_faults(&Faults {
            stall_ms: Some(200),
            ..Default::default()
        })
        .await
        .unwrap();
    });
    let r = ml(
        &c,
        &[
            "--metrics",
            "risk",
            "--rate",
            "2000",
            "--connections",
            "4",
            "--duration",
            "10s",
            "--warmup",
            "1s",
        ],
    )
    .await;
    stall.await.unwrap();
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let (corrected, naive) = (data(&r, "risk", "p99_us"), data(&r, "risk", "naive_p99_us"));
    println!(
        "corrected p99 {corrected} µs, naive p99 {naive} µs, ratio {:.0}",
        corrected / naive
    );
    assert!(
        corrected >= 90_000.0,
        "the stall must show in the corrected p99: {corrected} µs"
    );
    // What the stall determines, not a ratio of two figures one of which is machine noise:
    // the naive p99 sees only the handful of requests that were in flight during the stall
    // (4 connections of ~19 000 requests, under 1 %), so it stays far below the stall.
    assert!(
        naive < 50_000.0,
        "the naive p99 {naive} µs should not see the 200 ms stall (coordinated omission)"
    );
    assert!(data(&r, "risk", "count") >= 19_000.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_target_passes_its_baseline_and_30_percent_slower_fails() {
    let s = sim("blue", "1.0.0").await;
    let (d, c) = cfg(&s.url());
    let base = d.path().join("baseline.json");
    let cl = client(&s.url());
    // A 10 ms service time makes a 30 % change far larger than scheduling noise.
    cl.set_faults(&Faults {
        latency_ms: Some(10),
        ..Default::default()
    })
    .await
    .unwrap();
    let common = [
        "--metrics",
        "risk,marketdata",
        "--rate",
        "100",
        "--duration",
        "3s",
        "--warmup",
        "500ms",
        // Gated on the median: with 300 samples p90 is at the mercy of the machine (a busy
        // 2-core CI run moved an unchanged p90 by +15 %); the median is what a 30 % slower
        // service moves and noise does not. p99.9 stays to show it is reported, never gated.
        "--percentiles",
        "50,99.9",
    ];
    let mut a = common.to_vec();
    a.extend(["--save-baseline", base.to_str().unwrap()]);
    let r = ml(&c, &a).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        std::fs::metadata(&base).unwrap().len() < 64 * 1024,
        "baseline file ≤ 64 KB"
    );
    let mut a = common.to_vec();
    a.extend(["--baseline", base.to_str().unwrap()]);
    let r = ml(&c, &a).await;
    assert_eq!(
        r.code, 0,
        "unchanged target failed its own baseline:\n{}",
        r.stdout
    );
    cl.set_faults(&Faults {
        latency_ms: Some(13),
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    a.extend(["--report-dir", dir.path().to_str().unwrap()]);
    let r = ml(&c, &a).await;
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        checks_with(&r.stdout, "fail").contains(&"risk p50 vs baseline".to_string()),
        "{}",
        r.stdout
    );
    let m = check_message(&r.stdout, "risk p50 vs baseline");
    assert!(
        m.contains("baseline") && m.contains("current") && m.contains("%"),
        "{m}"
    );
    // 300 samples say nothing about p99.9 (the max): reported, never gated.
    assert!(checks_with(&r.stdout, "skip").contains(&"risk p99.9 vs baseline".to_string()));
    assert!(
        check_message(&r.stdout, "risk p99.9 vs baseline")
            .contains("not gated: p99.9 needs ≥ 10000 samples"),
        "{}",
        r.stdout
    );
    let svg = std::fs::read_to_string(dir.path().join("risk.svg")).unwrap();
    assert!(svg.contains("risk baseline") && svg.contains("risk current"));
    assert!(
        std::fs::read_to_string(dir.path().join("risk.hgrm"))
            .unwrap()
            .contains("Percentile")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_corrupt_baseline_is_exit_3_before_any_load() {
    let s = sim("blue", "1.0.0").await;
    let (d, c) = cfg(&s.url());
    let base = d.path().join("b.json");
    let r = ml(
        &c,
        &[
            "--metrics",
            "risk",
            "--requests",
            "50",
            "--warmup",
            "0s",
            "--save-baseline",
            base.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = ml(
        &c,
        &[
            "--metrics",
            "order,risk",
            "--requests",
            "50",
            "--baseline",
            base.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("the baseline holds [risk], this run measures [order, risk]"),
        "{}",
        r.stderr
    );
    std::fs::write(
        &base,
        "{\"format\":1,\"recorded\":\"x\",\"metrics\":{\"risk\":\"AAAA\"}}",
    )
    .unwrap();
    let r = ml(
        &c,
        &[
            "--metrics",
            "risk",
            "--requests",
            "50",
            "--baseline",
            base.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(r.code, 3);
    assert!(
        r.stderr.contains("histogram `risk` is corrupt"),
        "{}",
        r.stderr
    );
    std::fs::write(&base, "garbage").unwrap();
    assert_eq!(
        ml(
            &c,
            &["--metrics", "risk", "--baseline", base.to_str().unwrap()]
        )
        .await
        .code,
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_caps_the_rate_stops_on_errors_and_leaves_the_account_flat() {
    let s = sim("blue", "1.0.0").await;
    let (_d, c) = cfg(&s.url());
    let r = ml(
        &c,
        &[
            "--production",
            "--metrics",
            "order",
            "--rate",
            "1000",
            "--duration",
            "1s",
            "--warmup",
            "0s",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("caps the rate at 50"));
    assert!(data(&r, "order", "achieved_rate") <= 60.0);
    let cl = client(&s.url());
    assert!(
        cl.positions("TEST-SMOKE-01")
            .await
            .unwrap()
            .positions
            .iter()
            .all(|p| p.qty == 0)
    );
    cl.set_faults(&Faults {
        error_rate: Some(1.0),
        ..Default::default()
    })
    .await
    .unwrap();
    let r = ml(
        &c,
        &[
            "--production",
            "--metrics",
            "risk",
            "--duration",
            "20s",
            "--warmup",
            "0s",
        ],
    )
    .await;
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("stopped early"), "{}", r.stdout);
    assert!(
        r.elapsed < Duration::from_secs(10),
        "did not stop early: {:?}",
        r.elapsed
    );
}

/// The accepted baseline's lifecycle in the environment's PostgreSQL: none is a failure (never a
/// silent pass); the first is accepted on purpose; a passing release becomes the next one (the
/// earlier kept as history); a slower release fails against it and is not accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_baselines_live_in_postgresql_with_history_and_a_missing_one_fails() {
    let s = sim("blue", "1.0.0").await;
    let db = crate::support::TestDb::new();
    let (_d, c) = config(&format!(
        "[environments.staging]\ncolors = [\"blue\"]\ntest_account = \"TEST-SMOKE-01\"\n\
         database = {{ url_env = \"BASELINE_DB_URL\" }}\n\
         [environments.staging.services.blue]\ntrading-engine = [\"{u}\"]\nrisk-engine = [\"{u}\"]\nmarketdata = [\"{u}\"]\n",
        u = s.url()
    ));
    let cl = client(&s.url());
    cl.set_faults(&Faults {
        latency_ms: Some(10),
        ..Default::default()
    })
    .await
    .unwrap();
    let run = async |extra: &[&str]| {
        let mut a = vec![
            "--config",
            c.to_str().unwrap(),
            "-e",
            "staging",
            "--format",
            "json",
            "--metrics",
            "risk",
            "--rate",
            "100",
            "--duration",
            "3s",
            "--warmup",
            "500ms",
            "--percentiles",
            "50",
        ];
        a.extend_from_slice(extra);
        run_async(
            "measure_latency",
            &a,
            &[
                ("DEPLOYKIT_ADMIN_TOKEN", ADMIN_TOKEN),
                ("BASELINE_DB_URL", db.url.as_str()),
                ("DEPLOYKIT_BUILD", "jenkins-app-7"),
            ],
        )
        .await
    };
    let gate = ["--against", "accepted", "--accept-baseline"];

    // No baseline yet: the gate fails and says how to record one; nothing is stored.
    let mut a = gate.to_vec();
    a.extend(["--release", "1.0.0"]);
    let r = run(&a).await;
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(checks_with(&r.stdout, "fail").contains(&"Accepted baseline".to_string()));
    assert!(
        r.stdout.contains("has no accepted latency baseline")
            && r.stdout.contains("--accept-baseline"),
        "{}",
        r.stdout
    );
    assert_eq!(db.sql("SELECT count(*) FROM deploy_latency_baseline"), "0");

    // The first one, on purpose (no gate).
    let r = run(&["--accept-baseline", "--release", "1.0.0"]).await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("latency baseline #1"), "{}", r.stdout);

    // An unchanged release passes against it and becomes the next baseline.
    let mut a = gate.to_vec();
    a.extend(["--release", "1.1.0"]);
    let r = run(&a).await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let m = check_message(&r.stdout, "Accepted baseline");
    assert!(
        m.contains("#1 of release 1.0.0") && m.contains("build jenkins-app-7"),
        "{m}"
    );
    assert!(r.stdout.contains("latency baseline #2"), "{}", r.stdout);

    // 30 % slower: fails against #2 (release 1.1.0) and is not accepted.
    cl.set_faults(&Faults {
        latency_ms: Some(13),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut a = gate.to_vec();
    a.extend(["--release", "1.2.0"]);
    let r = run(&a).await;
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        checks_with(&r.stdout, "fail").contains(&"risk p50 vs baseline".to_string()),
        "{}",
        r.stdout
    );
    assert!(
        check_message(&r.stdout, "Accepted baseline").contains("#2 of release 1.1.0"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("not accepted as a baseline"),
        "{}",
        r.stdout
    );
    assert_eq!(
        db.sql("SELECT string_agg(release, ',' ORDER BY id) FROM deploy_latency_baseline WHERE environment = 'staging'"),
        "1.0.0,1.1.0"
    );
}
