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
