//! cutover on a real HAProxy with client traffic: zero failed or lost orders, drain detected
//! from counters, traffic switched within 100 ms, automatic rollback on a degraded colour,
//! journal-based resume after a crash.

use crate::support::stack::Stack;
use crate::support::{client, eventually_async};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// cutover through the shared stack helper, with a journal directory of the test's own.
/// `cutover run --to TO --watch WATCH --baseline-window 1s`: the run most tests start.
pub(crate) fn run_to<'a>(to: &'a str, watch: &'a str) -> [&'a str; 7] {
    [
        "run",
        "--to",
        to,
        "--watch",
        watch,
        "--baseline-window",
        "1s",
    ]
}

pub(crate) trait CutoverStack {
    fn cutover_cmd(&self, args: &[&str]) -> std::process::Command;
    async fn cutover(&self, args: &[&str]) -> (i32, serde_json::Value, String);
}

impl CutoverStack for Stack {
    fn cutover_cmd(&self, args: &[&str]) -> std::process::Command {
        let mut c = self.cmd("cutover", args);
        c.arg("--journal-dir").arg(self.dir.path().join("journal"));
        c
    }
    async fn cutover(&self, args: &[&str]) -> (i32, serde_json::Value, String) {
        let mut a = args.to_vec();
        let jd = self.dir.path().join("journal");
        a.extend(["--journal-dir", jd.to_str().unwrap()]);
        let r = self.run("cutover", &a).await;
        (
            r.code,
            serde_json::from_str(&r.stdout).unwrap_or(serde_json::Value::Null),
            r.stderr,
        )
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub(crate) sent: i64,
    pub(crate) done: i64,
    pub(crate) client_order_id: String,
    pub(crate) result: Result<String, String>, // order colour, or the failure
}

/// Orders through HAProxy at `rate`/s (open loop, alternating sides so positions stay small),
/// plus one long-lived keep-alive connection polling positions.
pub(crate) struct Load {
    stop: tokio_util::sync::CancellationToken,
    samples: Arc<Mutex<Vec<Sample>>>,
    long_lived: Arc<Mutex<(u64, Vec<String>)>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

pub(crate) fn start_load(url: &str, rate: u64) -> Load {
    let stop = tokio_util::sync::CancellationToken::new();
    let samples = Arc::new(Mutex::new(vec![]));
    let long_lived = Arc::new(Mutex::new((0u64, vec![])));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let (s, st, u) = (samples.clone(), stop.clone(), url.to_string());
    let generator = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
        let mut i = 0u64;
        let mut inflight = tokio::task::JoinSet::new();
        while !st.is_cancelled() {
            tick.tick().await;
            i += 1;
            let (http, s, u) = (http.clone(), s.clone(), u.clone());
            let id = format!("load-{}-{i}", now_ms());
            inflight.spawn(async move {
                let sent = now_ms();
                let body = serde_json::json!({"account": "CLIENT-A", "symbol": "MSFT", "side": if i.is_multiple_of(2) { "buy" } else { "sell" },
                    "qty": 1, "type": "market", "client_order_id": id});
                let r = http.post(format!("{u}/orders")).json(&body).send().await;
                let result = match r {
                    Ok(resp) if resp.status().is_success() => match resp.json::<serde_json::Value>().await {
                        Ok(v) => Ok(v["color"].as_str().unwrap_or("?").to_string()),
                        Err(e) => Err(e.to_string()),
                    },
                    Ok(resp) => Err(format!("HTTP {}: {}", resp.status(), resp.text().await.unwrap_or_default())),
                    Err(e) => Err(e.to_string()),
                };
                s.lock().unwrap().push(Sample { sent, done: now_ms(), client_order_id: id, result });
            });
            while inflight.try_join_next().is_some() {}
        }
        while inflight.join_next().await.is_some() {}
    });
    let (ll, st2, u2) = (long_lived.clone(), stop.clone(), url.to_string());
    let long = tokio::spawn(async move {
        let one = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        while !st2.is_cancelled() {
            match one
                .get(format!("{u2}/positions?account=CLIENT-A"))
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => ll.lock().unwrap().0 += 1,
                Ok(r) => ll.lock().unwrap().1.push(format!("HTTP {}", r.status())),
                Err(e) => ll.lock().unwrap().1.push(e.to_string()),
            }
            // Pacing of the background reader, not a wait for a condition.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    Load {
        stop,
        samples,
        long_lived,
        tasks: vec![generator, long],
    }
}

impl Load {
    pub(crate) async fn finish(self) -> (Vec<Sample>, (u64, Vec<String>)) {
        self.stop.cancel();
        for t in self.tasks {
            t.await.unwrap();
        }
        let s = self.samples.lock().unwrap().clone();
        let l = self.long_lived.lock().unwrap().clone();
        (s, l)
    }
}

fn step_data(v: &serde_json::Value, step: &str, key: &str) -> i64 {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == step)
        .unwrap_or_else(|| panic!("no step {step} in {v}"))["data"][key]
        .as_i64()
        .unwrap_or_else(|| panic!("no {key} in {step}"))
}

pub(crate) async fn orders_by_id(urls: &[String]) -> HashMap<String, usize> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for u in urls {
        for o in client(u).orders("CLIENT-A").await.unwrap() {
            *seen.entry(o.client_order_id).or_default() += 1;
        }
    }
    seen
}

/// The acceptance test: run and rollback under steady traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cutover_and_rollback_lose_no_order() {
    let st = Stack::up();
    let (blue, green) = (st.url("BLUE_URL"), st.url("GREEN_URL"));
    let load = start_load(&st.url("HAPROXY_URL"), 500);
    // About time: blue serves 1.5 s of load before the switch, so orders are in flight at it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Slow in-flight requests on blue at the moment of the switch.
    client(&blue)
        .set_faults(&deploykit::contract::Faults {
            latency_ms: Some(300),
            ..Default::default()
        })
        .await
        .unwrap();
    let (code, run, err) = st.cutover(&crate::cutover::run_to("green", "2s")).await;
    assert_eq!(code, 0, "{run}\n{err}");
    assert_eq!(st.live().await, "green");
    client(&blue).clear_faults().await.unwrap();
    // About time: the load runs on after the cutover, so a late loss would be counted.
    tokio::time::sleep(Duration::from_millis(800)).await;
    client(&green)
        .set_faults(&deploykit::contract::Faults {
            latency_ms: Some(300),
            ..Default::default()
        })
        .await
        .unwrap();
    let (code, rb, err) = st.cutover(&["rollback"]).await;
    assert_eq!(code, 0, "{rb}\n{err}");
    client(&green).clear_faults().await.unwrap();
    // About time: the load runs on after the rollback, so a late loss would be counted.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (samples, (ll_ok, ll_err)) = load.finish().await;
    assert_eq!(st.live().await, "blue");

    // 1. No failed, reset or timed-out request.
    assert_no_order_failed(&samples);
    assert!(
        ll_err.is_empty() && ll_ok > 50,
        "long-lived connection: {ll_ok} ok, errors {ll_err:?}"
    );
    let secs = (samples.last().unwrap().sent - samples[0].sent) as f64 / 1000.0;
    let rate = samples.len() as f64 / secs;
    assert!(rate >= 450.0, "offered rate {rate:.0}/s");
    // 2. Every acknowledged order exists exactly once on blue or green.
    let seen = orders_by_id(&[blue.clone(), green.clone()]).await;
    for s in &samples {
        assert_eq!(
            seen.get(&s.client_order_id),
            Some(&1),
            "order {} not found exactly once",
            s.client_order_id
        );
    }
    // 3. Drain detected ≤ 200 ms after the last in-flight blue request finished.
    let switched = step_data(&run, "stop_new_orders", "switch_decided_unix_ms");
    let drained = step_data(&run, "drain", "drain_done_unix_ms");
    let last_blue_done = samples
        .iter()
        .filter(|s| s.sent <= switched && s.result.as_deref() == Ok("blue"))
        .map(|s| s.done)
        .max()
        .unwrap();
    let detect = drained - last_blue_done;
    assert!(
        (-5..=200).contains(&detect),
        "drain detected {detect} ms after the last blue request ended"
    );
    // 4. New traffic on the new colour ≤ 100 ms after each decision.
    let late_blue = samples
        .iter()
        .filter(|s| {
            s.sent > switched + 100 && s.sent < switched + 1500 && s.result.as_deref() == Ok("blue")
        })
        .count();
    assert_eq!(
        late_blue, 0,
        "requests sent >100 ms after the switch still reached blue"
    );
    let back = step_data(&rb, "switch_back", "rollback_decided_unix_ms");
    let late_green = samples
        .iter()
        .filter(|s| s.sent > back + 100 && s.result.as_deref() == Ok("green"))
        .count();
    assert_eq!(
        late_green, 0,
        "requests sent >100 ms after the rollback decision still reached green"
    );
    let first_green = samples
        .iter()
        .filter(|s| s.result.as_deref() == Ok("green"))
        .map(|s| s.sent)
        .min()
        .unwrap();
    println!(
        "requests {} at {rate:.0}/s; drain detected {detect} ms after the last blue request; first green request sent {} ms after the switch decision; switch applied in {} ms; rollback applied in {} ms",
        samples.len(),
        first_green - switched,
        step_data(&run, "stop_new_orders", "switch_applied_unix_ms") - switched,
        step_data(&rb, "switch_back", "rollback_applied_unix_ms") - back,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhealthy_or_wrong_version_green_is_refused_and_blue_stays() {
    let st = Stack::up();
    let (code, v, _) = st
        .cutover(&[
            "run",
            "--to",
            "green",
            "--expect-version",
            "9.9.9",
            "--watch",
            "1s",
        ])
        .await;
    assert_eq!(code, 1, "{v}");
    assert!(
        v["checks"][0]["message"]
            .as_str()
            .unwrap()
            .contains("runs 1.0.0 (expected 9.9.9)"),
        "{v}"
    );
    assert_eq!(st.live().await, "blue");
    client(&st.url("GREEN_URL"))
        .set_faults(&deploykit::contract::Faults {
            crash: Some(true),
            ..Default::default()
        })
        .await
        .unwrap();
    let green = client(&st.url("GREEN_URL"));
    eventually_async("green crashed", Duration::from_secs(5), async || {
        green.health().await.is_err().then_some(())
    })
    .await;
    let (code, v, _) = st.cutover(&["run", "--to", "green", "--watch", "1s"]).await;
    assert_eq!(code, 1, "{v}");
    assert!(
        v["checks"][0]["message"]
            .as_str()
            .unwrap()
            .contains("nothing changed"),
        "{v}"
    );
    assert_eq!(st.live().await, "blue");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn green_degrading_during_the_watch_rolls_back_automatically() {
    for fault in [
        deploykit::contract::Faults {
            error_rate: Some(0.5),
            ..Default::default()
        },
        deploykit::contract::Faults {
            latency_ms: Some(150),
            ..Default::default()
        },
    ] {
        let st = Stack::up();
        let load = start_load(&st.url("HAPROXY_URL"), 200);
        // About time: the baseline window needs blue under load.
        tokio::time::sleep(Duration::from_millis(500)).await;
        client(&st.url("GREEN_URL"))
            .set_faults(&fault)
            .await
            .unwrap();
        let (code, v, err) = st
            .cutover(&[
                "run",
                "--to",
                "green",
                "--watch",
                "10s",
                "--baseline-window",
                "1500ms",
            ])
            .await;
        let _ = load.finish().await;
        assert_eq!(code, 1, "{fault:?}: {v}\n{err}");
        rolled_back_on(&st, &v, "regressed").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_haproxy_is_exit_4_and_nothing_changes() {
    let st = Stack::up();
    let cfg = PathBuf::from(&st.env["DEPLOYKIT_CONFIG"]);
    let broken = st.dir.path().join("broken.toml");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(&st.env["HAPROXY_SOCKET"], "/nonexistent/haproxy.sock");
    std::fs::write(&broken, text).unwrap();
    let (code, _, err) = st
        .cutover(&["--config", broken.to_str().unwrap(), "run", "--to", "green"])
        .await;
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("cannot reach HAProxy runtime API"), "{err}");
    assert_eq!(st.live().await, "blue");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_cutover_resumes_or_rolls_back_and_two_at_once_are_refused() {
    let st = Stack::up();
    // Client traffic, as in production: the watch fails closed on a colour nobody uses.
    let load = start_load(&st.url("HAPROXY_URL"), 20);
    // Kill -9 during the watch (after the switch).
    let mut child = spawn_cutover(&st, &["--watch", "30s", "--baseline-window", "1s"]);
    until_live(&st, "green").await;
    // While it runs, a second cutover is refused.
    let (code, _, err) = st.cutover(&["run", "--to", "green"]).await;
    assert_eq!(code, 5, "{err}");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        st.live().await,
        "green",
        "the switch had happened before the kill"
    );
    // --resume continues from the last completed step (the watch) and finishes.
    let (code, v, err) = st
        .cutover(&["run", "--to", "green", "--resume", "--watch", "1s"])
        .await;
    assert_eq!(code, 0, "{v}\n{err}");
    assert!(v["notes"].to_string().contains("resuming"), "{v}");
    assert!(
        !v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "drain"),
        "done steps are not repeated: {v}"
    );
    // Killed again mid-cutover the other way round: rollback brings blue back from any step.
    let (code, _, _) = st.cutover(&["rollback"]).await;
    assert_eq!(code, 0);
    let mut child = spawn_cutover(&st, &["--watch", "30s", "--baseline-window", "1s"]);
    until_live(&st, "green").await;
    child.kill().unwrap();
    child.wait().unwrap();
    let (code, v, err) = st.cutover(&["rollback"]).await;
    assert_eq!(code, 0, "{v}\n{err}");
    assert_eq!(st.live().await, "blue");
    let (code, v, _) = st.cutover(&["status"]).await;
    assert_eq!(code, 0);
    assert!(v.to_string().contains("blue is live"));
    let _ = load.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_prints_the_runtime_api_commands_and_changes_nothing() {
    let st = Stack::up();
    let (code, v, _) = st.cutover(&["run", "--to", "green", "--dry-run"]).await;
    assert_eq!(code, 0);
    let text = v.to_string();
    assert!(
        text.contains("set server trading/green state ready; set server trading/blue state drain"),
        "{text}"
    );
    assert!(text.contains("set server trading/blue state maint"));
    assert!(text.contains("/admin/feeds"));
    assert_eq!(st.live().await, "blue");
    let _ = Path::new("");
}

/// Spawns `cutover run --to green` with `args` (JSON on stdout), returning the child.
pub(crate) fn spawn_cutover(st: &Stack, args: &[&str]) -> std::process::Child {
    let mut a = vec!["run", "--to", "green", "--format", "json"];
    a.extend_from_slice(args);
    st.cutover_cmd(&a)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// A stack under 200 orders/s, a cutover to green watching for `watch` (baseline 1.5 s of
/// blue under that load), returned once green is live.
async fn switched_under_load(watch: &str) -> (Stack, Load, std::process::Child) {
    let st = Stack::up();
    let load = start_load(&st.url("HAPROXY_URL"), 200);
    // About time: blue under load before the baseline window opens.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let child = spawn_cutover(&st, &["--watch", watch, "--baseline-window", "1500ms"]);
    until_live(&st, "green").await;
    (st, load, child)
}

/// Waits (bounded, 20 s) until HAProxy answers from `color`.
pub(crate) async fn until_live(st: &Stack, color: &str) {
    let url = format!("{}/health", st.url("HAPROXY_URL"));
    eventually_async(
        &format!("{color} becoming live"),
        Duration::from_secs(20),
        async || {
            let v = reqwest::get(&url)
                .await
                .ok()?
                .json::<serde_json::Value>()
                .await
                .ok()?;
            (v["color"] == color).then_some(())
        },
    )
    .await
}

pub(crate) async fn finish(child: std::process::Child) -> (i32, serde_json::Value, String) {
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// No client request of the load failed, was reset or timed out.
pub(crate) fn assert_no_order_failed(samples: &[Sample]) {
    let failed: Vec<&Sample> = samples.iter().filter(|s| s.result.is_err()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} client orders failed, e.g. {:?}",
        failed.len(),
        samples.len(),
        failed.first()
    );
}

pub(crate) fn check<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    v["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("no checks in {v}"))
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {v}"))
}

/// The watch failed saying `why`, the run rolled back by itself, and blue is live again.
async fn rolled_back_on(st: &Stack, v: &serde_json::Value, why: &str) {
    let watch = check(v, "watch");
    assert_eq!(watch["status"], "fail", "{v}");
    assert!(watch["message"].as_str().unwrap().contains(why), "{watch}");
    assert!(
        v["notes"].to_string().contains("rolled back automatically"),
        "{v}"
    );
    assert_eq!(st.live().await, "blue");
}

/// The 6 am repro: blue idle during the baseline window, then ~10 req/s reach green, which
/// fails half of them. The error-rate ceiling is judged without a baseline: rollback.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn half_errors_after_an_idle_baseline_roll_back() {
    let st = Stack::up();
    client(&st.url("GREEN_URL"))
        .set_faults(&deploykit::contract::Faults {
            error_rate: Some(0.5),
            ..Default::default()
        })
        .await
        .unwrap();
    let child = spawn_cutover(&st, &["--watch", "20s", "--baseline-window", "1s"]);
    until_live(&st, "green").await;
    let load = start_load(&st.url("HAPROXY_URL"), 10);
    let (code, v, err) = finish(child).await;
    let (samples, _) = load.finish().await;
    assert_eq!(code, 1, "{v}\n{err}");
    rolled_back_on(&st, &v, "error_rate").await;
    println!(
        "idle baseline, green at 50 % errors: rolled back; {} client orders, {} failed",
        samples.len(),
        samples.iter().filter(|s| s.result.is_err()).count()
    );
}

/// Green completes no business traffic after the switch (stalled): the loudest failure there
/// is, not missing data.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_new_colour_rolls_back() {
    let (st, load, child) = switched_under_load("15s").await;
    let green = client(&st.url("GREEN_URL"));
    green
        .set_faults(&deploykit::contract::Faults {
            stall_ms: Some(8_000),
            ..Default::default()
        })
        .await
        .unwrap();
    // Let go of the stall once blue is back, so the rollback's drain of green can finish.
    until_live(&st, "blue").await;
    green.clear_faults().await.unwrap();
    let (code, v, err) = finish(child).await;
    let _ = load.finish().await;
    assert_eq!(code, 1, "{v}\n{err}");
    rolled_back_on(&st, &v, "throughput").await;
}

/// HAProxy dies during the watch: green completes no traffic, the rollback cannot reach the
/// load balancer, and the run exits non-zero saying what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn haproxy_killed_during_the_watch_is_not_a_success() {
    let (st, load, child) = switched_under_load("15s").await;
    // About time: the watch has judged a few ticks of green before HAProxy dies.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = std::fs::read_to_string(st.dir.path().join("s/haproxy.pid")).unwrap();
    crate::support::signal("-9", pid.trim());
    let (code, v, err) = finish(child).await;
    let _ = load.finish().await;
    assert_ne!(code, 0, "{v}\n{err}");
    let text = format!("{v}{err}");
    assert!(
        text.contains("cutover rollback") || text.contains("HAProxy"),
        "says what to do: {text}"
    );
    assert!(!text.contains("cutover complete"), "{text}");
}

/// Killed during the watch, resumed while green fails half its requests: the resumed watch
/// judges against the baseline the first attempt journaled, and rolls back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resumed_watch_judges_against_the_journaled_baseline() {
    let (st, load, mut child) = switched_under_load("60s").await;
    // About time: killed a second into the watch, with ticks of it already judged.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    client(&st.url("GREEN_URL"))
        .set_faults(&deploykit::contract::Faults {
            error_rate: Some(0.5),
            ..Default::default()
        })
        .await
        .unwrap();
    let (code, v, err) = st
        .cutover(&["run", "--to", "green", "--resume", "--watch", "10s"])
        .await;
    let _ = load.finish().await;
    assert_eq!(code, 1, "{v}\n{err}");
    assert!(
        check(&v, "prepare")["message"]
            .as_str()
            .unwrap()
            .contains("baseline from the journal"),
        "{v}"
    );
    rolled_back_on(&st, &v, "error_rate").await;
}

/// One pipeline stage script against the stack, as Jenkins runs it (ENVIRONMENT=local).
async fn stage(
    st: &Stack,
    reports: &Path,
    script: &str,
    vars: &[(&str, &str)],
) -> crate::support::Run {
    let mut c = std::process::Command::new("bash");
    c.arg(
        crate::support::repo_root()
            .join("scripts/pipeline")
            .join(script),
    )
    .current_dir(crate::support::repo_root())
    .envs(st.env.clone())
    .env("BIN", crate::support::bin_dir())
    .env("DEPLOYKIT_BIN_DIR", crate::support::bin_dir())
    .env("ENVIRONMENT", "local")
    .env("STACK_DIR", st.dir.path().join("s"))
    .env("REPORTS", reports)
    .envs(vars.iter().copied());
    let t = std::time::Instant::now();
    let out = tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap();
    crate::support::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
        elapsed: t.elapsed(),
    }
}

/// The pid of a `--fleet 1` stack's colour (its one host is named after it).
fn pid(st: &Stack, color: &str) -> String {
    host_pids(st, &[color]).remove(0)
}

/// Two production deploys in a row through the stage scripts, under client orders: each goes
/// to the idle colour (green, then blue), the live colour's process is never restarted, and
/// deploying to or "cutting over" to the live colour is refused (exit 5) instead of passing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_production_deploys_alternate_and_never_restart_the_live_colour() {
    let st = Stack::up();
    let reports = st.dir.path().join("reports");
    let load = start_load(&st.url("HAPROXY_URL"), 50);
    let mut order = vec![];
    for (version, live_before) in [("1.1.0", "blue"), ("1.2.0", "green")] {
        let r = stage(&st, &reports, "idle.sh", &[]).await;
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
        let idle = std::fs::read_to_string(reports.join("idle_color")).unwrap();
        let idle = idle.trim().to_string();
        let expected = if live_before == "blue" {
            "green"
        } else {
            "blue"
        };
        assert_eq!(idle, expected, "{}", r.stdout);
        order.push(idle.clone());

        // Injected: the pipeline asks to deploy the live colour. Refused before any restart.
        let live_pid = pid(&st, live_before);
        let r = stage(
            &st,
            &reports,
            "deploy.sh",
            &[
                ("COLOR", live_before),
                ("VERSION", version),
                ("BLUE_GREEN", "1"),
            ],
        )
        .await;
        assert_eq!(r.code, 5, "{}{}", r.stdout, r.stderr);
        assert!(
            r.stderr.contains(&format!("{live_before} is live")),
            "{}",
            r.stderr
        );
        assert!(
            r.stderr
                .contains(&format!("deploy to the idle colour, {idle}")),
            "{}",
            r.stderr
        );

        let r = stage(
            &st,
            &reports,
            "deploy.sh",
            &[("COLOR", &idle), ("VERSION", version), ("BLUE_GREEN", "1")],
        )
        .await;
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
        assert_eq!(
            pid(&st, live_before),
            live_pid,
            "the live colour was restarted"
        );
        // Injected: a cutover to the colour that is already live is a conflict, not a pass.
        let (code, v, err) = st
            .cutover(&["run", "--to", live_before, "--expect-version", version])
            .await;
        assert_eq!(code, 5, "{v}\n{err}");
        assert!(err.contains("already live"), "{err}");

        let (code, v, err) = st
            .cutover(&[
                "run",
                "--to",
                &idle,
                "--expect-version",
                version,
                "--watch",
                "1s",
                "--baseline-window",
                "1s",
            ])
            .await;
        assert_eq!(code, 0, "{v}\n{err}");
        assert_eq!(
            pid(&st, live_before),
            live_pid,
            "the old colour stays up for a rollback"
        );
        // A retried stage of the run that just did it is nothing to do, not a conflict.
        let (code, v, err) = st
            .cutover(&["run", "--to", &idle, "--expect-version", version])
            .await;
        assert_eq!(code, 0, "{v}\n{err}");
        assert!(v.to_string().contains("nothing to do"), "{v}");
        let h = st.health("HAPROXY_URL").await;
        assert_eq!(
            (h["color"].as_str(), h["version"].as_str()),
            (Some(idle.as_str()), Some(version))
        );
    }
    assert_eq!(order, ["green", "blue"]);
    let (samples, _) = load.finish().await;
    assert_no_order_failed(&samples);
}

/// Jenkins' failure handler runs rollback.sh with the build's id (DEPLOYKIT_BUILD): it undoes a
/// switch that build made and nothing else — not the previous build's cutover when this one
/// failed before its own, not a cutover that stopped before moving traffic — and a second run
/// after the rollback is nothing to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_builds_rollback_undoes_only_a_switch_that_build_made() {
    let st = Stack::up();
    let reports = st.dir.path().join("reports");
    let quick = ["--watch", "1s", "--baseline-window", "1s"];
    let cutover = async |to: &str, build: &str, extra: &[&str]| {
        let args = [&["run", "--to", to, "--build", build][..], &quick, extra].concat();
        st.cutover(&args).await
    };
    let rollback = async |build: &str| {
        stage(&st, &reports, "rollback.sh", &[("DEPLOYKIT_BUILD", build)]).await
    };
    let load = start_load(&st.url("HAPROXY_URL"), 50);
    // About time: blue under load before the baseline window opens.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let release = [
        "--expect-version",
        "1.0.0",
        "--commit",
        "0a1b2c3",
        "--change-ticket",
        "CHG-1234",
        "--policy-override",
        "INC-7 market outage",
    ];
    let (code, v, err) = cutover("green", "jenkins-trading-main-1", &release).await;
    assert_eq!(code, 0, "{v}\n{err}");

    // Injected: build 2 fails at its deploy, before any cutover of its own.
    let r = rollback("jenkins-trading-main-2").await;
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("is not build jenkins-trading-main-2's")
            && r.stdout.contains("nothing rolled back"),
        "{}",
        r.stdout
    );
    assert_eq!(
        st.live().await,
        "green",
        "a healthy release was rolled back"
    );

    // Injected: build 2's cutover is refused before it moves traffic (wrong version on blue).
    let (code, v, err) = cutover(
        "blue",
        "jenkins-trading-main-2",
        &["--expect-version", "9.9.9"],
    )
    .await;
    assert_ne!(code, 0, "{v}\n{err}");
    let r = rollback("jenkins-trading-main-2").await;
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("nothing rolled back"), "{}", r.stdout);
    assert_eq!(st.live().await, "green");

    // Build 3 switches to blue, then fails later (say, its strategy rollout): rolled back.
    let (code, v, err) = cutover("blue", "jenkins-trading-main-3", &[]).await;
    assert_eq!(code, 0, "{v}\n{err}");
    assert_eq!(st.live().await, "blue");
    let r = rollback("jenkins-trading-main-3").await;
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(st.live().await, "green");
    // Twice in a row: the second finds the rollback done and changes nothing.
    let r = rollback("jenkins-trading-main-3").await;
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("already a rollback"), "{}", r.stdout);
    assert_eq!(st.live().await, "green");
    let (samples, _) = load.finish().await;
    assert_no_order_failed(&samples);

    // The journal names what each cutover put live: one deployment's report (guide Phase 5).
    // (The stack's journal is its PostgreSQL database, which every tool here shares.)
    let r = st
        .run("generate_deployment_report", &["--deployment", "1.0.0"])
        .await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let ok = crate::support::checks_with(&r.stdout, "ok");
    assert!(
        ok.contains(&"Deployment of 1.0.0 (blue → green)".to_string()),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("@jenkins-trading-main-1: succeeded"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("build jenkins-trading-main-1, commit 0a1b2c3, change ticket CHG-1234, policy overridden: INC-7 market outage"),
        "{}",
        r.stdout
    );
    // Injected: a version never deployed — a failure naming the versions that were.
    let r = st
        .run("generate_deployment_report", &["--deployment", "9.9.9"])
        .await;
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("journaled versions: 1.0.0"),
        "{}",
        r.stdout
    );
}

/// migrate.sh opens the maintenance window only when `db_migrate plan` says a pending migration
/// needs it; a failed migration lifts it again (nothing half-applied), except after a
/// no-transaction file, where the window stays on and the stage says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrate_stage_opens_maintenance_only_when_needed_and_lifts_it_after_a_failure() {
    let st = Stack::up();
    let reports = st.dir.path().join("reports");
    let dir = st.dir.path().join("migrations");
    std::fs::create_dir_all(&dir).unwrap();
    let put = |name: &str, sql: &str| std::fs::write(dir.join(name), sql).unwrap();
    let vars = [("DEPLOYKIT_MIGRATIONS", dir.to_str().unwrap())];
    let page = async || {
        reqwest::get(format!("{}/orders", st.url("HAPROXY_URL")))
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    let trading = page().await;
    put(
        "V1__accounts.sql",
        "CREATE TABLE accounts (id bigint PRIMARY KEY);",
    );
    put("V1__accounts_rollback.sql", "DROP TABLE accounts;");
    for _ in 0..2 {
        let r = stage(&st, &reports, "migrate.sh", &vars).await;
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
        assert!(
            r.stderr.contains("maintenance window: not needed"),
            "{}",
            r.stderr
        );
        assert!(
            !reports.join("maintenance_on.xml").exists(),
            "maintenance was switched on"
        );
    }

    // Injected: an index built without CONCURRENTLY (needs the window) on a missing table.
    put(
        "V2__index.sql",
        "CREATE INDEX orders_account ON missing_table (account);",
    );
    put("V2__index_rollback.sql", "DROP INDEX orders_account;");
    let r = stage(&st, &reports, "migrate.sh", &vars).await;
    assert_ne!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("maintenance window: needed"),
        "{}",
        r.stderr
    );
    assert!(reports.join("maintenance_on.xml").exists());
    assert!(r.stderr.contains("maintenance lifted"), "{}", r.stderr);
    assert_eq!(page().await, trading, "the window was left on");

    // Injected: the failing file runs outside a transaction — the window stays on, said so.
    put(
        "V2__index.sql",
        "-- deploykit: no-transaction\nCREATE INDEX CONCURRENTLY orders_account ON missing_table (account);",
    );
    let r = stage(&st, &reports, "migrate.sh", &vars).await;
    assert_ne!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("maintenance LEFT ON"), "{}", r.stderr);
    assert_eq!(page().await, 503, "the maintenance page is not up");
}

/// The previous colour's lifecycle: kept for the rollback window (refused inside it, a forced
/// stop needs a reason), refused while it trades, then stopped and read back as gone; a
/// rollback after that says what to do instead, and the next release deploys to it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn decommission_waits_out_the_rollback_window_and_a_rollback_after_it_refuses() {
    let st = Stack::up();
    let cfg = st.dir.path().join("s/deploy.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("keep_previous_for = \"1h\"", "keep_previous_for = \"5s\""),
    )
    .unwrap();
    let reports = st.dir.path().join("reports");
    let load = start_load(&st.url("HAPROXY_URL"), 50);
    // About time: blue under load before the baseline window opens.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (code, v, err) = st.cutover(&crate::cutover::run_to("green", "1s")).await;
    assert_eq!(code, 0, "{v}\n{err}");
    let blue_pid = pid(&st, "blue");

    // Inside the window: refused, blue untouched; a force without a reason is a usage error.
    let (code, _, err) = st.cutover(&["decommission"]).await;
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("blue is the rollback target until"), "{err}");
    let (code, _, err) = st.cutover(&["decommission", "--force", " "]).await;
    assert_eq!(code, 2, "{err}");
    assert_eq!(pid(&st, "blue"), blue_pid);
    assert!(st.client("blue").health().await.is_ok());

    // About time: the rollback window is wall-clock time since the cutover.
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Injected: blue trades again (someone switched it on) — not a standby, not stopped.
    st.client("blue").set_trading(true).await.unwrap();
    let (code, _, err) = st.cutover(&["decommission"]).await;
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("still trades"), "{err}");
    assert!(st.client("blue").health().await.is_ok());
    st.client("blue").set_trading(false).await.unwrap();

    let (code, v, err) = st.cutover(&["decommission"]).await;
    assert_eq!(code, 0, "{v}\n{err}");
    assert!(v.to_string().contains("read back as gone"), "{v}");
    assert!(
        st.client("blue").health().await.is_err(),
        "blue still answers"
    );
    assert_eq!(st.live().await, "green");

    // Nothing to roll back to: refused, saying what to do instead.
    let (code, _, err) = st.cutover(&["rollback"]).await;
    assert_eq!(code, 5, "{err}");
    assert!(
        err.contains("decommissioned") && err.contains("redeploy the previous release to blue"),
        "{err}"
    );
    assert_eq!(st.live().await, "green");

    // The next release goes to the retired colour and cuts over as usual.
    let r = stage(&st, &reports, "idle.sh", &[]).await;
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(
        std::fs::read_to_string(reports.join("idle_color"))
            .unwrap()
            .trim(),
        "blue"
    );
    let r = stage(
        &st,
        &reports,
        "deploy.sh",
        &[("COLOR", "blue"), ("VERSION", "1.2.0"), ("BLUE_GREEN", "1")],
    )
    .await;
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let (code, v, err) = st
        .cutover(&[
            "run",
            "--to",
            "blue",
            "--expect-version",
            "1.2.0",
            "--watch",
            "1s",
            "--baseline-window",
            "1s",
        ])
        .await;
    assert_eq!(code, 0, "{v}\n{err}");
    assert_eq!(st.live().await, "blue");
    let (samples, _) = load.finish().await;
    assert_no_order_failed(&samples);
}

/// The pid of each named host of a stack (its supervisor's pid file).
fn host_pids(st: &Stack, names: &[&str]) -> Vec<String> {
    names.iter().map(|n| st.host_pid(n)).collect()
}

/// The version each named host's /health reports ("down" when it does not answer).
async fn host_versions(st: &Stack, names: &[&str]) -> Vec<String> {
    let mut out = vec![];
    for n in names {
        let port = st.host_port(n);
        let v = async {
            let h: serde_json::Value = reqwest::get(format!("http://127.0.0.1:{port}/health"))
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            Some(h["version"].as_str()?.to_string())
        };
        out.push(v.await.unwrap_or_else(|| "down".into()));
    }
    out
}

/// The Ansible deploy on the fleet (blue, idle, just deployed at 1.2.0 through deploy.sh): every
/// host runs releases/1.2.0 through its `current` link; the same deploy again restarts nothing;
/// a broken artefact (its service dies at start) fails on the canary, which goes back to 1.2.0,
/// and no other host is touched; an artefact that does not match its SHA256SUMS touches none.
async fn ansible_deploys_every_host_once_and_stops_a_bad_artefact_at_the_canary(
    st: &Stack,
    reports: &Path,
) {
    let blue: Vec<String> = std::fs::read_to_string(st.dir.path().join("s/procs"))
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("blue "))
        .map(|l| l.split_whitespace().nth(1).unwrap().to_string())
        .collect();
    let names: Vec<&str> = blue.iter().map(String::as_str).collect();
    assert_eq!(names.len(), 9);
    assert_eq!(host_versions(st, &names).await, vec!["1.2.0"; 9]);
    for n in &names {
        let link = std::fs::read_link(st.dir.path().join(format!("s/hosts/{n}/current"))).unwrap();
        assert!(link.ends_with("releases/1.2.0"), "{n}: {link:?}");
    }
    let deploy = [("COLOR", "blue"), ("BLUE_GREEN", "1")];
    let pids = host_pids(st, &names);
    let r = stage(
        st,
        reports,
        "deploy.sh",
        &[deploy.as_slice(), &[("VERSION", "1.2.0")]].concat(),
    )
    .await;
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(
        host_pids(st, &names),
        pids,
        "a repeated deploy restarted a host"
    );

    // Injected: release 1.3.0's service exits at start (the checksum is right: a bad build).
    let bad = tempfile::tempdir().unwrap();
    let tree = bad.path().join("tree");
    std::fs::create_dir_all(tree.join("bin")).unwrap();
    std::fs::write(tree.join("VERSION"), "1.3.0\n").unwrap();
    let sim = tree.join("bin/trading_sim");
    std::fs::write(&sim, "#!/bin/sh\necho 'broken build' >&2\nexit 1\n").unwrap();
    let exec = <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755);
    std::fs::set_permissions(&sim, exec).unwrap();
    let sh = |script: &str| {
        let ok = std::process::Command::new("bash")
            .args(["-c", script])
            .current_dir(bad.path())
            .status()
            .unwrap()
            .success();
        assert!(ok, "{script}");
    };
    sh(
        "tar -czf trading-services-1.3.0.tar.gz -C tree VERSION bin && sha256sum trading-services-1.3.0.tar.gz > SHA256SUMS",
    );
    let art = bad.path().to_str().unwrap();
    let bad_deploy = [
        deploy.as_slice(),
        &[("VERSION", "1.3.0"), ("ARTEFACT_DIR", art)],
    ]
    .concat();
    let r = stage(st, reports, "deploy.sh", &bad_deploy).await;
    assert_ne!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(
        all.contains("release 1.3.0 failed on trade-blue-01")
            && all.contains("the host is back on 1.2.0"),
        "{all}"
    );
    assert_eq!(host_versions(st, &names).await, vec!["1.2.0"; 9]);
    let after = host_pids(st, &names);
    assert_ne!(after[0], pids[0], "the canary was not restarted");
    assert_eq!(
        after[1..],
        pids[1..],
        "a host after the canary batch was touched"
    );

    // Injected: the artefact no longer matches its SHA256SUMS — refused before any host.
    sh("echo tampered >> trading-services-1.3.0.tar.gz");
    let r = stage(st, reports, "deploy.sh", &bad_deploy).await;
    assert_ne!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(
        all.contains("does not match the checksum in SHA256SUMS"),
        "{all}"
    );
    assert_eq!(host_pids(st, &names), after, "a host was touched");
}

/// The fleet, once: per colour 3 trading engines, 2 risk engines, 2 market-data, 1 OMS and 1 web,
/// HAProxy with a server per trading engine named like the guide's hosts. Smoke tests reach every
/// engine; a cutover under client orders switches all of them and loses none; deploying the idle
/// colour leaves every live pid alone; one dead engine of the idle colour stops the next cutover
/// at prepare, naming that server, with nothing changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fleet_deploys_and_cuts_over_server_by_server_and_one_dead_engine_stops_it() {
    let st = Stack::up_with(&["--fleet", "3,2,2,1,1"]);
    let reports = st.dir.path().join("reports");
    let cfg = std::fs::read_to_string(st.dir.path().join("s/deploy.toml")).unwrap();
    assert!(
        cfg.contains(r#"servers = { blue = ["trade-blue-01", "trade-blue-02", "trade-blue-03"], green = ["trade-green-01", "trade-green-02", "trade-green-03"] }"#),
        "{cfg}"
    );
    assert_eq!(st.pids("blue").len(), 9);
    let r = st.run("smoke_tests", &[]).await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    for name in [
        "Market order filled (trading-engine #3)",
        "No stale data (marketdata #2)",
        "Position limit enforced (risk-engine #2)",
    ] {
        assert!(
            crate::support::checks_with(&r.stdout, "ok").contains(&name.to_string()),
            "{name}: {}",
            r.stdout
        );
    }

    let load = start_load(&st.url("HAPROXY_URL"), 100);
    // About time: blue under load before the baseline window opens.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (code, v, err) = st.cutover(&crate::cutover::run_to("green", "2s")).await;
    assert_eq!(code, 0, "{v}\n{err}");
    assert!(
        check(&v, "standby")["message"]
            .as_str()
            .unwrap()
            .contains("4/4 service(s)"),
        "{v}"
    );

    let live_pids = st.pids("green");
    let r = stage(
        &st,
        &reports,
        "deploy.sh",
        &[("COLOR", "blue"), ("VERSION", "1.2.0"), ("BLUE_GREEN", "1")],
    )
    .await;
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(st.pids("green"), live_pids, "a live server was restarted");
    ansible_deploys_every_host_once_and_stops_a_bad_artefact_at_the_canary(&st, &reports).await;
    assert_eq!(st.pids("green"), live_pids, "a live server was restarted");

    // One component (dev's `--component`): only blue's two risk engines restart, at 1.2.1; a
    // release rollback of that component puts them back on 1.2.0, the others untouched.
    let others = [
        "trade-blue-01",
        "data-blue-01",
        "oms-blue-01",
        "web-blue-01",
    ];
    let risk = ["risk-blue-01", "risk-blue-02"];
    let before = host_pids(&st, &others);
    let risk_before = host_pids(&st, &risk);
    let r = stage(
        &st,
        &reports,
        "deploy.sh",
        &[
            ("COLOR", "blue"),
            ("VERSION", "1.2.1"),
            ("COMPONENT", "risk-engine"),
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(
        host_pids(&st, &others),
        before,
        "a component deploy restarted another role"
    );
    let risk_after = host_pids(&st, &risk);
    assert!(
        risk_before[0] != risk_after[0] && risk_before[1] != risk_after[1],
        "the risk engines were not restarted"
    );
    assert_eq!(host_versions(&st, &risk).await, ["1.2.1", "1.2.1"]);
    let rollback = [
        ("ROLLBACK", "release"),
        ("COLOR", "blue"),
        ("COMPONENT", "risk-engine"),
    ];
    let r = stage(&st, &reports, "rollback.sh", &rollback).await;
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(host_versions(&st, &risk).await, ["1.2.0", "1.2.0"]);
    assert_eq!(
        host_pids(&st, &others),
        before,
        "a rollback restarted another role"
    );
    // Twice in a row: the second goes back to what the first left (previous = 1.2.1), and a
    // release that is not on the hosts is refused, naming the host, with nothing changed.
    let r = stage(&st, &reports, "rollback.sh", &rollback).await;
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(host_versions(&st, &risk).await, ["1.2.1", "1.2.1"]);
    let pinned = host_pids(&st, &risk);
    let r = stage(
        &st,
        &reports,
        "rollback.sh",
        &[rollback.as_slice(), &[("TO_RELEASE", "0.9.0")]].concat(),
    )
    .await;
    assert_ne!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("releases/0.9.0 is not on risk-blue-01"),
        "{}",
        r.stdout
    );
    assert_eq!(host_pids(&st, &risk), pinned);
    let r = stage(
        &st,
        &reports,
        "rollback.sh",
        &[rollback.as_slice(), &[("TO_RELEASE", "1.2.0")]].concat(),
    )
    .await;
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(host_versions(&st, &risk).await, ["1.2.0", "1.2.0"]);
    assert_eq!(st.pids("green"), live_pids);
    let r = stage(
        &st,
        &reports,
        "deploy.sh",
        &[
            ("COLOR", "blue"),
            ("VERSION", "1.2.0"),
            ("COMPONENT", "risk"),
        ],
    )
    .await;
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);

    // measure_latency measures every engine, sharing the load, and names the one that fails.
    let port = st.host_port("trade-blue-02");
    let engine2 = deploykit::contract::Client::new(
        format!("http://127.0.0.1:{port}"),
        crate::support::http().with_token(deploykit::redact::Secret::new(
            st.url("DEPLOYKIT_ADMIN_TOKEN"),
        )),
    );
    let measure = [
        "--color",
        "blue",
        "--metrics",
        "order",
        "--duration",
        "1s",
        "--warmup",
        "0s",
        "--rate",
        "150",
    ];
    let r = st.run("measure_latency", &measure).await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let ok = crate::support::checks_with(&r.stdout, "ok");
    for i in 1..=3 {
        let name = format!("order (trading-engine #{i})");
        assert!(ok.contains(&name), "{name}: {}", r.stdout);
    }
    // Injected: engine #2 answers every order with an error.
    let faults = deploykit::contract::Faults {
        error_rate: Some(1.0),
        ..Default::default()
    };
    engine2.set_faults(&faults).await.unwrap();
    let r = st.run("measure_latency", &measure).await;
    engine2.clear_faults().await.unwrap();
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let failed = crate::support::checks_with(&r.stdout, "fail");
    assert!(
        failed.contains(&"order (trading-engine #2)".to_string())
            && !failed.iter().any(|c| c.contains("#1") || c.contains("#3")),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains(&format!("127.0.0.1:{port}")),
        "{}",
        r.stdout
    );

    // Injected: one engine of the idle colour dies after its deploy.
    let dead = std::fs::read_to_string(st.dir.path().join("s/trade-blue-02.pid")).unwrap();
    crate::support::signal("-9", dead.trim());
    let (code, v, err) = st
        .cutover(&["run", "--to", "blue", "--expect-version", "1.2.0"])
        .await;
    assert_eq!(code, 1, "{v}\n{err}");
    let prepare = check(&v, "prepare")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        prepare.contains(&format!("127.0.0.1:{port}")) && prepare.contains("nothing changed"),
        "{prepare}"
    );
    // Warm-up reaches every server once per round and names the dead one (asked once, not per
    // round).
    let (code, v, err) = st
        .cutover(&["warmup", "--to", "blue", "--rounds", "3"])
        .await;
    assert_eq!(code, 1, "{v}\n{err}");
    let warm = check(&v, "Connections and caches warmed")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        warm.starts_with("1 of 9 server(s) failed") && warm.contains(&format!("127.0.0.1:{port}")),
        "{warm}"
    );
    assert_eq!(st.live().await, "green");
    let (samples, _) = load.finish().await;
    assert_no_order_failed(&samples);
}
