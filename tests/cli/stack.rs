//! scripts/stack: real HAProxy in front of blue and green trading_sim, PostgreSQL, and a
//! `down` that leaves no listener behind. Two stacks run at once.

use crate::support::{bin_dir, repo_root};
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

fn stack(args: &[&str], dir: &Path, extra: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new("bash");
    cmd.arg(repo_root().join("scripts/stack"))
        .args(args)
        .args(["--dir", dir.to_str().unwrap()])
        .env("DEPLOYKIT_BIN_DIR", bin_dir());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn read_env(dir: &Path) -> HashMap<String, String> {
    std::fs::read_to_string(dir.join("stack.env"))
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn port(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

fn listening(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

async fn health(url: &str) -> serde_json::Value {
    reqwest::get(format!("{url}/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn two_stacks_route_to_blue_and_leave_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    // Start both at once: port allocation must not collide.
    let (ra, rb) = std::thread::scope(|s| {
        let ha = s.spawn(|| stack(&["up"], &a, &[]));
        let hb = s.spawn(|| stack(&["up", "--fleet", "1"], &b, &[]));
        (ha.join().unwrap(), hb.join().unwrap())
    });
    assert!(
        ra.status.success(),
        "{}",
        String::from_utf8_lossy(&ra.stderr)
    );
    assert!(
        rb.status.success(),
        "{}",
        String::from_utf8_lossy(&rb.stderr)
    );
    let (ea, eb) = (read_env(&a), read_env(&b));
    let mut ports = vec![];
    for e in [&ea, &eb] {
        // HAProxy routes to blue; both colours are healthy at the stack's version.
        let via_lb = health(&e["HAPROXY_URL"]).await;
        assert_eq!(via_lb["color"], "blue");
        assert_eq!(health(&e["BLUE_URL"]).await["status"], "ok");
        assert_eq!(health(&e["GREEN_URL"]).await["color"], "green");
        assert!(Path::new(&e["HAPROXY_SOCKET"]).exists());
        // The written config is valid for every binary.
        let cfg = deploykit::config::Config::load(Path::new(&e["DEPLOYKIT_CONFIG"])).unwrap();
        cfg.environment(deploykit::config::EnvName::Local).unwrap();
        assert!(e["DATABASE_URL"].starts_with("postgres://"));
        assert!(!e["DEPLOYKIT_ADMIN_TOKEN"].is_empty());
        // Prometheus scrapes every process of both colours (18 on the default fleet, 2 on --fleet 1).
        let procs =
            std::fs::read_to_string(Path::new(&e["DEPLOYKIT_CONFIG"]).with_file_name("procs"))
                .unwrap();
        let want = procs.lines().count().to_string();
        let prom = &e["PROMETHEUS_URL"];
        let url = format!("{prom}/api/v1/query?query=sum(up{{job=\"trading\"}})");
        crate::support::eventually_async(
            "Prometheus scraping both colours",
            std::time::Duration::from_secs(10),
            async || {
                let v: serde_json::Value = reqwest::get(&url).await.ok()?.json().await.ok()?;
                (v["data"]["result"][0]["value"][1].as_str() == Some(want.as_str())).then_some(())
            },
        )
        .await;
        for k in ["HAPROXY_URL", "BLUE_URL", "GREEN_URL", "PROMETHEUS_URL"] {
            ports.push(port(&e[k]));
        }
    }
    let mut uniq = ports.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), ports.len(), "ports collide: {ports:?}");

    // The database the stack made is real and reachable.
    let out = Command::new("psql")
        .args([ea["DATABASE_URL"].as_str(), "-qAtc", "select 1"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");

    // deploy restarts one colour at a new version.
    let r = stack(
        &["deploy", "--color", "green", "--version", "2.0.0"],
        &a,
        &[],
    );
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(health(&ea["GREEN_URL"]).await["version"], "2.0.0");
    assert_eq!(health(&ea["HAPROXY_URL"]).await["version"], "1.0.0");

    let st = stack(&["status"], &a, &[]);
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(st.status.success(), "{text}");
    // The fleet's HAProxy servers are named like the guide's hosts; blue's are in service.
    assert!(
        text.contains("server trade-blue-01: admin_state=0"),
        "{text}"
    );
    assert!(
        text.contains("server trade-green-03: admin_state=5"),
        "{text}"
    );

    for d in [&a, &b] {
        let r = stack(&["down"], d, &[]);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    }
    for p in ports {
        assert!(!listening(p), "port {p} still listening after down");
    }
    // The stack's database is gone too.
    let db = ea["DATABASE_URL"].rsplit('/').next().unwrap().to_string();
    let out = Command::new("psql")
        .args([
            "postgres://postgres@127.0.0.1:5432/postgres",
            "-qAtc",
            &format!("select count(*) from pg_database where datname = '{db}'"),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");
}

#[tokio::test]
async fn throwaway_cluster_when_no_postgres_is_offered() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("s");
    let r = stack(
        &["up", "--fleet", "1"],
        &d,
        &[("DEPLOYKIT_STACK_PG", "throwaway")],
    );
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let e = read_env(&d);
    let pg_port = port(e["DATABASE_URL"].rsplit_once('/').unwrap().0);
    assert_ne!(pg_port, 5432);
    let out = Command::new("psql")
        .args([e["DATABASE_URL"].as_str(), "-qAtc", "select 1"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
    let r = stack(&["down"], &d, &[]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(!listening(pg_port), "throwaway PostgreSQL still listening");
}
