//! cutover under the faults an SRE hits (issue 15): kill -9 at every step under client load,
//! each followed by `--resume` and, separately, by `rollback`; a lock whose database session
//! dies mid-run; two operators at once (another cutover, maintenance_mode, a second working
//! directory); and the old colour, which must stop trading after a switch.

use crate::cutover::{
    CutoverStack, check, finish, orders_by_id, spawn_cutover, start_load, until_live,
};
use crate::support::stack::Stack;
use deploykit::contract::{AdminState, Strategy};
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::Duration;

/// Every step of `cutover run`, in order (the library's list, so a new step is covered).
const STEPS: &[&str] = deploykit::cutover::RUN_STEPS;
const STRATEGY: &str = "MM_EQ_001";

fn other(c: &str) -> &'static str {
    if c == "blue" { "green" } else { "blue" }
}

async fn admin(st: &Stack, color: &str) -> AdminState {
    st.client(color).admin_state().await.unwrap()
}

async fn strategy_pnl(st: &Stack, color: &str) -> f64 {
    st.client(color).metric_totals().await.unwrap().strategy_pnl
}

/// Exactly one colour live and trading the strategy, the other a standby that refuses orders
/// and trades nothing; `cutover status` agrees (exit 0).
async fn one_colour_trades(st: &Stack, live: &str, trial: &str) {
    assert_eq!(st.live().await, live, "{trial}: live colour");
    let (l, o) = (admin(st, live).await, admin(st, other(live)).await);
    assert!(l.trading_active && l.accepting_orders, "{trial}: {l:?}");
    assert!(
        l.strategies[STRATEGY].active,
        "{trial}: the strategy runs on the live colour: {l:?}"
    );
    assert!(!o.trading_active && !o.accepting_orders, "{trial}: {o:?}");
    assert!(
        o.strategies.values().all(|s| !s.active),
        "{trial}: the standby runs no strategy: {o:?}"
    );
    let (code, v, err) = st.cutover(&["status"]).await;
    assert_eq!(code, 0, "{trial}: status\n{v}\n{err}");
}

/// `cutover run --to <to>` that SIGKILLs itself after `step`'s action, before journaling it.
pub(crate) async fn killed_at(st: &Stack, to: &str, step: &str) {
    let mut cmd = st.cutover_cmd(&crate::cutover::run_to(to, "1s"));
    cmd.env("DEPLOYKIT_FAULT_KILL_AFTER", step)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert_eq!(
        out.status.signal(),
        Some(9),
        "killed after {step}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The acceptance matrix: 7 steps × {resume, rollback} under 100 orders/s, starting with a
/// plain cutover whose old colour must stop trading.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_at_every_step_then_resume_or_rollback_loses_no_order() {
    let st = Stack::up();
    st.client("blue")
        .set_strategy(
            STRATEGY,
            &Strategy {
                active: true,
                size_pct: 100,
            },
        )
        .await
        .unwrap();
    let load = start_load(&st.url("HAPROXY_URL"), 100);
    // About time: blue under load before the baseline window opens.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // A plain cutover: blue becomes a standby (its P&L stops moving), green runs the strategy.
    let (code, v, err) = st.cutover(&crate::cutover::run_to("green", "1s")).await;
    assert_eq!(code, 0, "{v}\n{err}");
    assert!(
        check(&v, "standby")["message"]
            .as_str()
            .unwrap()
            .contains("read back"),
        "{v}"
    );
    assert!(
        check(&v, "activate")["message"]
            .as_str()
            .unwrap()
            .contains(STRATEGY),
        "{v}"
    );
    one_colour_trades(&st, "green", "plain cutover").await;
    let before = strategy_pnl(&st, "blue").await;
    // About time: a standby's P&L stays still for a second of market ticks.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        strategy_pnl(&st, "blue").await,
        before,
        "the standby's P&L does not move"
    );

    let mut live = "green";
    let mut trials = 0;
    for step in STEPS {
        for recovery in ["resume", "rollback"] {
            let to = other(live);
            let trial = format!("kill -9 after {step} ({live} → {to}), then {recovery}");
            killed_at(&st, to, step).await;
            // Status tells the truth about the interrupted run.
            let (code, v, _) = st.cutover(&["status"]).await;
            assert_eq!(code, 1, "{trial}: status must fail\n{v}");
            let last = check(&v, "Last cutover finished");
            assert_eq!(last["status"], "fail", "{trial}: {last}");
            assert!(
                last["message"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("interrupted at {step}")),
                "{trial}: {last}"
            );
            assert!(
                last["hint"].as_str().unwrap().contains("--resume"),
                "{trial}: {last}"
            );
            let (code, v, err) = if recovery == "resume" {
                st.cutover(&["run", "--to", to, "--resume", "--watch", "1s"])
                    .await
            } else {
                st.cutover(&["rollback"]).await
            };
            assert_eq!(code, 0, "{trial}\n{v}\n{err}");
            if recovery == "resume" {
                assert!(v["notes"].to_string().contains("resuming"), "{trial}: {v}");
                live = to;
            }
            one_colour_trades(&st, live, &trial).await;
            trials += 1;
        }
    }
    assert_eq!(trials, 14);

    let (samples, (_, long_errors)) = load.finish().await;
    let acked: Vec<_> = samples.iter().filter(|s| s.result.is_ok()).collect();
    let seen = orders_by_id(&[st.url("BLUE_URL"), st.url("GREEN_URL")]).await;
    let lost: Vec<&str> = acked
        .iter()
        .filter(|s| seen.get(&s.client_order_id) != Some(&1))
        .map(|s| s.client_order_id.as_str())
        .collect();
    assert!(acked.len() > 1000, "load ran: {} acknowledged", acked.len());
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged orders lost or duplicated: {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
    eprintln!(
        "14 kill -9 trials: {} acknowledged orders, 0 lost; {} not acknowledged; {} long-lived errors",
        acked.len(),
        samples.len() - acked.len(),
        long_errors.len()
    );
}

/// A run whose lock session dies stops at once, saying so, and changes nothing more (no
/// automatic rollback); while its process lives nobody else starts; maintenance_mode is
/// refused while a cutover holds the environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lock_stops_the_run_and_a_live_holder_is_never_overtaken() {
    let st = Stack::up();
    let load = start_load(&st.url("HAPROXY_URL"), 50);
    // About time: blue under load before the baseline window opens.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let child = spawn_cutover(&st, &["--watch", "60s", "--baseline-window", "1s"]);
    let pid = child.id();
    until_live(&st, "green").await;
    // About time: the run is into its watch, heartbeating its lease, before anyone contends.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Two operators at once: maintenance_mode and a second cutover are refused, naming the holder.
    let r = st.run("maintenance_mode", &["--enable"]).await;
    let (code, err) = (r.code, r.stderr);
    assert_eq!(code, 5, "{err}");
    assert!(err.contains(&format!("cutover (pid {pid}")), "{err}");
    assert_eq!(
        st.health("HAPROXY_URL").await["status"],
        "ok",
        "no maintenance page"
    );
    let (code, v, _) = st.cutover(&["status"]).await;
    assert!(
        check(&v, "Last cutover finished")["message"]
            .as_str()
            .unwrap()
            .contains("in progress"),
        "status during a run: {v} (exit {code})"
    );

    // The lock's database session dies (a DBA, a failover, a proxy restart).
    let out = std::process::Command::new("psql")
        .args([
            st.url("DATABASE_URL").as_str(),
            "-qAtc",
            "SELECT count(pg_terminate_backend(backend_pid)) FROM deploy_lock WHERE environment = 'local'",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1", "{out:?}");
    // At once, before the first run has even noticed: nobody overtakes a live holder.
    let (code, _, err) = st.cutover(&["run", "--to", "blue"]).await;
    assert_eq!(code, 5, "{err}");
    assert!(err.contains(&format!("pid {pid}")), "{err}");

    let (code, v, err) = finish(child).await;
    assert_eq!(code, 5, "{v}\n{err}");
    assert!(err.contains("lost the environment lock"), "{err}");
    assert!(
        !v.to_string().contains("rolled back automatically"),
        "a run without its lock changes nothing more: {v}"
    );
    assert_eq!(st.live().await, "green", "nothing more changed");

    // The truth afterwards, and the way out.
    let (code, v, _) = st.cutover(&["status"]).await;
    assert_eq!(code, 1, "{v}");
    assert!(
        check(&v, "Last cutover finished")["message"]
            .as_str()
            .unwrap()
            .contains("interrupted at watch"),
        "{v}"
    );
    let (code, v, err) = st.cutover(&["rollback"]).await;
    assert_eq!(code, 0, "{v}\n{err}");
    assert_eq!(st.live().await, "blue");
    let _ = load.finish().await;
}

/// Without a database the journal and its OS lock live beside the config file, not in the
/// working directory: two runs from two directories exclude each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_journal_lock_holds_across_working_directories() {
    let st = Stack::up();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg/deploy.toml");
    std::fs::create_dir_all(cfg.parent().unwrap()).unwrap();
    let text = std::fs::read_to_string(st.url("DEPLOYKIT_CONFIG")).unwrap();
    let without_db: String = text
        .lines()
        .filter(|l| !l.starts_with("database ="))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(
        text.len(),
        without_db.len(),
        "the stack config names a database"
    );
    std::fs::write(&cfg, without_db).unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let cmd = |cwd: &std::path::Path, tool: &str, args: &[&str]| {
        let mut c = st.cmd(tool, args);
        c.env("DEPLOYKIT_CONFIG", &cfg).current_dir(cwd);
        c
    };
    let mut first = cmd(&a, "cutover", &crate::cutover::run_to("green", "60s"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    until_live(&st, "green").await;
    for (tool, args) in [
        ("cutover", &["run", "--to", "blue"][..]),
        ("maintenance_mode", &["--enable"][..]),
    ] {
        let out = cmd(&b, tool, args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(5), "{tool}: {err}");
        assert!(
            err.contains(&format!("cutover (pid {}", first.id())),
            "{tool}: {err}"
        );
    }
    first.kill().unwrap();
    first.wait().unwrap();
    // The OS lock went with the process; the journal is found from the other directory.
    let out = cmd(&b, "cutover", &["rollback", "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(st.live().await, "blue");
    assert!(
        cfg.parent()
            .unwrap()
            .join(".deploykit/journal-local.jsonl")
            .exists()
    );
    assert!(!a.join(".deploykit").exists() && !b.join(".deploykit").exists());
}

/// Many first-ever runs at once on a fresh database (no journal tables yet): exactly one gets
/// the environment lock, every other exits 5 naming it — never 4 from racing CREATE TABLEs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn first_ever_runs_at_once_one_wins_the_rest_exit_5() {
    for round in 0..3 {
        let db = crate::support::TestDb::new();
        let opens = (0..6).map(|_| {
            let url = db.url.clone();
            async move {
                let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .unwrap();
                tokio::spawn(conn);
                deploykit::journal::Journal::open_pg(c, "cutover", "local", Default::default())
                    .await
            }
        });
        let results = futures_util::future::join_all(opens).await;
        let codes: Vec<u8> = results
            .iter()
            .map(|r| r.as_ref().map_or_else(|e| e.exit_code(), |_| 0))
            .collect();
        assert_eq!(
            codes.iter().filter(|c| **c == 0).count(),
            1,
            "round {round}: {codes:?} {:?}",
            results
                .iter()
                .filter_map(|r| r.as_ref().err())
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
        );
        assert!(
            codes.iter().all(|c| *c == 0 || *c == 5),
            "round {round}: {codes:?}"
        );
        for r in results.into_iter().flatten() {
            r.release().await.unwrap();
        }
    }
}

/// A PostgreSQL failure says the server's message, its SQLSTATE and what to do — not "db error".
#[tokio::test]
async fn postgres_errors_say_the_servers_message_and_what_to_do() {
    let admin = crate::support::pg_admin_url();
    let base = admin.rsplit_once('/').unwrap().0;
    let url = deploykit::redact::Secret::new(format!("{base}/no_such_database_dk"));
    let Err(e) = deploykit::db::connect(&url, Duration::from_secs(5)).await else {
        panic!("no such database, yet connected");
    };
    let text = e.to_string();
    assert!(text.contains("does not exist"), "{text}");
    assert!(text.contains("SQLSTATE 3D000"), "{text}");
    assert!(text.contains("createdb"), "{text}");
    assert_eq!(e.exit_code(), 4);
    // Nothing listening: the cause chain, not a bare "error connecting to server".
    let url = deploykit::redact::Secret::new("postgres://postgres@127.0.0.1:9/x".to_string());
    let Err(e) = deploykit::db::connect(&url, Duration::from_secs(5)).await else {
        panic!("nothing listens on port 9, yet connected");
    };
    let text = e.to_string();
    assert!(text.contains("refused"), "{text}");
}
