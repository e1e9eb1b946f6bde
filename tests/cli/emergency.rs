//! The guide's §10 kill switch on a fleet stack (3 trading engines and an OMS a colour): one
//! server refusing connections and one not answering at all; every other trading server stops
//! and keeps no working order, the two are named, a second run is the same stop, and trading
//! resumes on every server that answers.

use crate::support::stack::Stack;
use crate::support::{checks_with, signal};
use deploykit::contract::{OrderRequest, OrderType, Side};

fn resting(id: &str) -> OrderRequest {
    OrderRequest {
        account: "TEST-SMOKE-01".into(),
        symbol: "AAPL".into(),
        side: Side::Buy,
        qty: 1,
        order_type: OrderType::Limit,
        price: Some(1.0),
        client_order_id: id.into(),
        strategy: None,
    }
}

const TRADING: &[&str] = &[
    "trade-blue-01",
    "trade-blue-02",
    "trade-blue-03",
    "oms-blue-01",
    "trade-green-01",
    "trade-green-02",
    "trade-green-03",
    "oms-green-01",
];

/// Every trading server but `except` refuses orders, trades nothing and holds no working order.
async fn stopped(st: &Stack, except: &[&str]) {
    for name in TRADING.iter().filter(|n| !except.contains(n)) {
        let c = st.host_client(name);
        let a = c.admin_state().await.unwrap();
        assert!(
            !a.accepting_orders && !a.trading_active && a.active_strategies().is_empty(),
            "{name} still trading: {a:?}"
        );
        let open: Vec<_> = c
            .orders("TEST-SMOKE-01")
            .await
            .unwrap()
            .into_iter()
            .filter(|o| o.status.is_open())
            .collect();
        assert!(open.is_empty(), "{name} keeps working orders {open:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emergency_stop_stops_every_reachable_server_and_names_the_dead_and_the_stalled() {
    let st = Stack::up_with(&["--fleet", "3,1,1,1,1"]);
    // Working orders on the live colour's engines.
    for n in ["trade-blue-01", "trade-blue-02", "trade-blue-03"] {
        st.host_client(n)
            .place_order(&resting(&format!("rest-{n}")))
            .await
            .unwrap();
    }
    // trade-blue-02 refuses connections; trade-green-03 accepts them and never answers.
    signal("-KILL", &st.host_pid("trade-blue-02"));
    let stalled = st.host_pid("trade-green-03");
    signal("-STOP", &stalled);

    let r = st.run("emergency_stop", &["--deadline", "2s"]).await;
    assert_eq!(r.code, 1, "{}", r.all());
    assert_eq!(
        checks_with(&r.stdout, "fail"),
        vec!["Stop trade-blue-02 (blue)", "Stop trade-green-03 (green)"],
        "{}",
        r.stdout
    );
    assert!(
        crate::support::check_message(&r.stdout, "Stop trade-green-03 (green)")
            .contains("no answer within 2s"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("NOT STOPPED: stop trade-blue-02"));
    let ok = checks_with(&r.stdout, "ok");
    for n in [
        "Stop trade-blue-01 (blue)",
        "Stop oms-green-01 (green)",
        "Maintenance page on load balancer haproxy-local",
        "Maintenance page on web-blue-01 (blue)",
    ] {
        assert!(ok.iter().any(|c| c == n), "{n} not ok: {ok:?}");
    }
    assert!(
        crate::support::check_message(&r.stdout, "Stop trade-blue-01 (blue)")
            .contains("1 working order(s) cancelled"),
        "{}",
        r.stdout
    );
    stopped(&st, &["trade-blue-02", "trade-green-03"]).await;
    let page = reqwest::get(format!("{}/", st.url("HAPROXY_URL")))
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 503);

    // The stalled server answers again: the same command, run again, stops it too and still
    // names the dead one; the servers it already stopped stay stopped.
    signal("-CONT", &stalled);
    let r = st.run("emergency_stop", &["--deadline", "2s"]).await;
    assert_eq!(r.code, 1, "{}", r.all());
    assert_eq!(
        checks_with(&r.stdout, "fail"),
        vec!["Stop trade-blue-02 (blue)"]
    );
    stopped(&st, &["trade-blue-02"]).await;
    // Trading again, the runbook's way: every blue server that answers is back, and the dead
    // one is named, not hidden behind the first failure.
    let r = st
        .run(
            "maintenance_mode",
            &["--disable", "--resume-strategies", "--color", "blue"],
        )
        .await;
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stdout
            .contains("on 3/4 server(s); failed: trade-blue-02 ("),
        "{}",
        r.stdout
    );
    for n in ["trade-blue-01", "trade-blue-03", "oms-blue-01"] {
        assert!(
            st.host_client(n)
                .admin_state()
                .await
                .unwrap()
                .accepting_orders,
            "{n} does not take orders again"
        );
    }
    // The dead one restarted by its supervisor: the runbook's "run it again until it exits 0".
    st.restart_host("trade-blue-02");
    let r = st.run("emergency_stop", &["--deadline", "2s"]).await;
    assert_eq!(r.code, 0, "{}", r.all());
    stopped(&st, &[]).await;
}

/// HAProxy's view of one server from `show servers state`: "maint", "drain" or "ready" (the
/// admin-state bits; 0x04 only records the config's `disabled`).
fn lb_admin_state(st: &Stack, server: &str) -> &'static str {
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "echo 'show servers state trading' | socat - UNIX-CONNECT:{}",
            st.url("HAPROXY_SOCKET")
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 6 && f[3] == server).then(|| f[6].parse::<u8>().unwrap())
        })
        .map(|a| match a {
            a if a & 0x01 != 0 => "maint",
            a if a & 0x18 != 0 => "drain",
            _ => "ready",
        })
        .unwrap_or_else(|| panic!("{server} not in HAProxy"))
}

/// The guide's §10 isolation with a fleet: a crashed green engine stops the cutover, which
/// names it; isolated, the cutover proceeds on the other two under client load with no lost
/// order; `--return` refuses while it is down and puts it back once it is healthy; a slow
/// server during a later cutover's watch is named in its verdict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_server_stops_the_cutover_isolated_it_does_not_and_returns_only_when_healthy() {
    use crate::cutover::CutoverStack;
    let st = Stack::up_with(&["--fleet", "3,1,1,1,1"]);
    let _ = st
        .host_client("trade-green-02")
        .set_faults(&deploykit::contract::Faults {
            crash: Some(true),
            ..Default::default()
        })
        .await;
    // The crash lands 20 ms after the answer: a cutover started sooner would find the server
    // still up in its prepare step (seen on an idle machine) and fail at a later step instead.
    crate::support::eventually_async(
        "trade-green-02 crashed",
        std::time::Duration::from_secs(10),
        async || {
            st.host_client("trade-green-02")
                .health()
                .await
                .is_err()
                .then_some(())
        },
    )
    .await;
    let run = crate::cutover::run_to("green", "2s");
    let (code, v, err) = st.cutover(&run).await;
    assert_ne!(code, 0, "{v}\n{err}");
    assert!(v.to_string().contains("trade-green-02"), "{v}\n{err}");
    assert_eq!(st.live().await, "blue");

    let smoke = ["--color", "green", "--only", "health"];
    let r = st.run("smoke_tests", &smoke).await;
    assert_eq!(r.code, 1, "{}", r.all());

    // Isolated: drained and in maintenance on HAProxy, journaled; the dead service is named.
    let r = st
        .run(
            "isolate_server",
            &["trade-green-02", "--reason", "crashed at 06:02"],
        )
        .await;
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(
        crate::support::checks_with(&r.stdout, "warn"),
        vec!["Stop orders on trade-green-02"]
    );
    assert_eq!(lb_admin_state(&st, "trade-green-02"), "maint");
    // cutover status says it is out of service and how to bring it back.
    let (code, v, err) = st.cutover(&["status"]).await;
    assert_eq!(code, 0, "{v}\n{err}");
    assert!(
        v.to_string()
            .contains("isolate_server -e local trade-green-02 --return"),
        "{v}"
    );
    // Smoke tests skip it and say so.
    let r = st.run("smoke_tests", &smoke).await;
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        crate::support::checks_with(&r.stdout, "skip").contains(&"trade-green-02 isolated".into()),
        "{}",
        r.stdout
    );

    let load = crate::cutover::start_load(&st.url("HAPROXY_URL"), 100);
    // About time: the live colour under load before the cutover's baseline window opens.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let (code, v, err) = st.cutover(&run).await;
    let (samples, _) = load.finish().await;
    assert_eq!(code, 0, "{v}\n{err}");
    assert!(err.contains("trade-green-02 is isolated"), "{err}");
    let failed: Vec<_> = samples.iter().filter(|s| s.result.is_err()).collect();
    assert!(
        !samples.is_empty() && failed.is_empty(),
        "lost orders: {failed:?}"
    );
    assert_eq!(st.live().await, "green");
    // The isolated server stayed out of the switch.
    assert_eq!(lb_admin_state(&st, "trade-green-02"), "maint");
    assert_eq!(lb_admin_state(&st, "trade-green-01"), "ready");

    // Still down: --return refuses and it stays isolated.
    let r = st
        .run("isolate_server", &["trade-green-02", "--return"])
        .await;
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stdout.contains("not healthy"), "{}", r.stdout);
    assert_eq!(lb_admin_state(&st, "trade-green-02"), "maint");

    // Restarted: healthy, at green's version, smoke-tested alone, then back in HAProxy.
    st.restart_host("trade-green-02");
    let r = st
        .run("isolate_server", &["trade-green-02", "--return"])
        .await;
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(lb_admin_state(&st, "trade-green-02"), "ready");
    assert!(
        st.host_client("trade-green-02")
            .admin_state()
            .await
            .unwrap()
            .accepting_orders
    );
    // Not isolated any more: a second return is refused as a conflict.
    let r = st
        .run("isolate_server", &["trade-green-02", "--return"])
        .await;
    assert_eq!(r.code, 5, "{}", r.all());
    assert!(r.stderr.contains("is not isolated"), "{}", r.stderr);
    // And the fleet is whole for the next cutover's health check.
    let (code, v, err) = st.cutover(&["verify", "--to", "green"]).await;
    assert_eq!(code, 0, "{v}\n{err}");

    // The watch names the server whose metrics go bad: one of blue's three engines slow.
    st.host_client("trade-blue-02")
        .set_faults(&deploykit::contract::Faults {
            latency_ms: Some(200),
            ..Default::default()
        })
        .await
        .unwrap();
    let load = crate::cutover::start_load(&st.url("HAPROXY_URL"), 100);
    // About time: the live colour under load before the cutover's baseline window opens.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let (code, v, err) = st.cutover(&crate::cutover::run_to("blue", "5s")).await;
    load.finish().await;
    assert_ne!(code, 0, "{v}\n{err}");
    assert!(v.to_string().contains("worst server: trade-blue-02"), "{v}");
    assert_eq!(st.live().await, "green", "rolled back");
}

/// `emergency_rollback` with the stack's environment and a team webhook.
async fn emergency_rollback(st: &Stack, webhook: &str, args: &[&str]) -> crate::support::Run {
    let mut cmd = st.cmd("emergency_rollback", &["--format", "json"]);
    cmd.args(args).env("DEPLOYKIT_NOTIFY_WEBHOOK", webhook);
    let junit = crate::support::junit::Capture::attach(&mut cmd, "emergency_rollback", args, &[]);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    junit.verify(out.status.code().unwrap_or(-1));
    crate::support::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: std::time::Duration::ZERO,
    }
}

/// The guide's §10 "total deployment failure", twice: after a completed cutover, and in the
/// middle of one (the cutover SIGKILLed right after its switch, its journal half-written).
/// Each time, under client load: traffic back on the previous colour, no lost order, the failed
/// colour stopped, the rollback journaled and the team told; then a normal cutover works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emergency_rollback_after_a_cutover_and_in_the_middle_of_one_loses_no_order() {
    use crate::cutover::CutoverStack;
    let st = Stack::up();
    let hook = crate::notify::receiver(200).await;
    let run = crate::cutover::run_to("green", "1s");
    let stopped = async |color: &str| {
        let a = st.client(color).admin_state().await.unwrap();
        !a.accepting_orders && !a.trading_active
    };

    // Client orders through HAProxy for the whole story: none may be lost.
    let load = crate::cutover::start_load(&st.url("HAPROXY_URL"), 100);
    // About time: the live colour under load before the cutover's baseline window opens.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    // 1. After a completed cutover to green.
    let (code, v, err) = st.cutover(&run).await;
    assert_eq!(code, 0, "{v}\n{err}");
    assert_eq!(st.live().await, "green");
    let r = emergency_rollback(&st, &hook.url, &[]).await;
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(st.live().await, "blue");
    assert!(stopped("green").await);
    let told = std::mem::take(&mut *hook.bodies.lock().unwrap());
    assert!(
        told.len() == 1
            && told[0].1.contains("EMERGENCY ROLLBACK")
            && told[0].1.contains("back on blue"),
        "{told:?}"
    );
    assert!(!told[0].1.contains("s3cr3t-webhook-token"));

    // 2. In the middle of a cutover: killed right after its switch.
    crate::cutover_faults::killed_at(&st, "green", "switch").await;
    assert_eq!(st.live().await, "green");
    let r = emergency_rollback(&st, &hook.url, &[]).await;
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(st.live().await, "blue");
    assert!(stopped("green").await);
    assert!(!stopped("blue").await);
    assert!(crate::support::checks_with(&r.stdout, "ok").contains(&"Journaled".to_string()));

    // The journal's last run is the emergency rollback: status is clean, and the next
    // cutover runs as usual.
    let (code, v, err) = st.cutover(&["status"]).await;
    assert_eq!(code, 0, "{v}\n{err}");
    let (code, v, err) = st.cutover(&run).await;
    assert_eq!(code, 0, "{v}\n{err}");
    assert_eq!(st.live().await, "green");
    let (samples, _) = load.finish().await;
    let failed: Vec<_> = samples.iter().filter(|s| s.result.is_err()).collect();
    assert!(
        samples.len() > 100 && failed.is_empty(),
        "lost orders: {failed:?}"
    );

    // 3. The failed colour hung (SIGSTOP): traffic still moves back, and the report names the
    // server it could not stop.
    let green = st.pids("green");
    for p in &green {
        signal("-STOP", p);
    }
    let r = emergency_rollback(
        &st,
        &hook.url,
        &["--timeout", "2s", "--drain-deadline", "1s"],
    )
    .await;
    for p in &green {
        signal("-CONT", p);
    }
    assert_eq!(r.code, 1, "{}", r.all());
    assert_eq!(st.live().await, "blue");
    assert_eq!(
        crate::support::checks_with(&r.stdout, "fail"),
        vec!["Stop green (green)"],
        "{}",
        r.stdout
    );
}
