//! The one report model rendered as human lines, JSON and JUnit.

use deploykit::report::{Check, Report};
use std::time::Duration;

fn sample() -> Report {
    let mut r = Report::new("verify_env", "production");
    r.push(Check::ok("git", "Git repository clean").took(Duration::from_millis(12)));
    r.push(
        Check::fail(
            "docker",
            "Docker daemon running",
            "cannot reach /var/run/docker.sock",
        )
        .hint("start it with: systemctl start docker")
        .took(Duration::from_micros(1500)),
    );
    r.push(
        Check::warn(
            "git",
            "Latest code pulled",
            "the current branch has no upstream",
        )
        .hint("git branch --set-upstream-to=origin/main"),
    );
    r.push(Check::skip("vpn", "VPN connected", "not required for dev"));
    r.push(
        Check::ok("tools", "Required tool git (>= 2.40)")
            .message("git 2.47.3")
            .data(serde_json::json!({"found": "2.47.3", "required": "2.40"})),
    );
    r.note("cleaned up 0 orders");
    r.finish(Duration::from_millis(42));
    r
}

#[test]
fn human_lines_follow_the_guide() {
    let r = sample();
    insta::assert_snapshot!(r.render_human(false));
    assert_eq!(r.exit_code(), 1);
    // Colour only when asked (the runner asks only on a terminal).
    assert!(r.render_human(true).contains("\x1b[31;1m[FAIL]\x1b[0m"));
    assert!(!r.render_human(false).contains('\x1b'));
}

#[test]
fn json_document_has_every_field() {
    let r = sample();
    let v: serde_json::Value = serde_json::from_str(&r.render_json()).unwrap();
    insta::assert_json_snapshot!(v, { ".started" => "[started]" });
}

#[test]
fn junit_is_what_jenkins_reads() {
    let xml = sample().render_junit();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let cases: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    assert_eq!(cases.len(), 5);
    for c in &cases {
        let class = c.attribute("classname").unwrap();
        assert!(class.starts_with("verify_env."), "{class}");
        let t: f64 = c.attribute("time").unwrap().parse().unwrap();
        assert!(t >= 0.0);
    }
    let docker = cases
        .iter()
        .find(|c| c.attribute("name") == Some("Docker daemon running"))
        .unwrap();
    assert_eq!(docker.attribute("classname"), Some("verify_env.docker"));
    let t: f64 = docker.attribute("time").unwrap().parse().unwrap();
    assert!((t - 0.0015).abs() <= 0.0005, "{t}");
    let failure = docker
        .children()
        .find(|n| n.has_tag_name("failure"))
        .unwrap();
    assert_eq!(
        failure.attribute("message"),
        Some("cannot reach /var/run/docker.sock")
    );
    assert!(failure.text().unwrap().contains("systemctl start docker"));
    let vpn = cases
        .iter()
        .find(|c| c.attribute("name") == Some("VPN connected"))
        .unwrap();
    let skipped = vpn.children().find(|n| n.has_tag_name("skipped")).unwrap();
    assert_eq!(skipped.attribute("message"), Some("not required for dev"));
    let suite = doc
        .descendants()
        .find(|n| n.has_tag_name("testsuite"))
        .unwrap();
    assert_eq!(suite.attribute("failures"), Some("1"));
    assert_eq!(suite.attribute("tests"), Some("5"));
}

#[test]
fn junit_is_never_an_empty_suite() {
    let mut r = Report::new("smoke_tests", "local");
    r.finish(Duration::ZERO);
    let xml = r.render_junit();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let case = doc
        .descendants()
        .find(|n| n.has_tag_name("testcase"))
        .unwrap();
    assert_eq!(case.attribute("name"), Some("no checks ran"));
    assert!(case.children().any(|n| n.has_tag_name("failure")));
}

#[test]
fn inconclusive_is_exit_6_unless_something_failed() {
    let mut r = Report::new("compare_metrics", "local");
    r.push(Check::ok("m", "a"));
    r.set_inconclusive();
    assert_eq!(r.exit_code(), 6);
    r.push(Check::fail("m", "b", "worse"));
    assert_eq!(r.exit_code(), 1);
}

/// A reader that goes away early (`| head -n1`) ends the output quietly: no panic, the tool's
/// own exit code — for results far larger than a pipe's buffer, in both formats.
#[test]
fn a_closed_pipe_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    for i in 1..=1500 {
        std::fs::write(
            dir.path().join(format!("V{i}__t{i}.sql")),
            format!("CREATE TABLE t{i} (id int);"),
        )
        .unwrap();
    }
    let (_c, cfg) = crate::support::config("[environments.local]\n");
    for format in ["json", "human"] {
        let script = format!(
            "{} --config {} --format {format} lint --migrations {} | head -n1 >/dev/null; echo \"rc=${{PIPESTATUS[0]}}\"",
            crate::support::bin("db_migrate").display(),
            cfg.display(),
            dir.path().display()
        );
        let out = std::process::Command::new("bash")
            .args(["-c", &script])
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(!stderr.contains("panicked"), "{format}: {stderr}");
        // 1: the lint found the missing rollbacks; never 101 (a panic).
        assert!(stdout.contains("rc=1"), "{format}: {stdout} {stderr}");
    }
}

/// A usage error asked for as JSON prints a JSON error document too, like every other failure.
#[test]
fn a_usage_error_under_format_json_is_a_json_document() {
    let r = crate::support::run(
        "cutover",
        &["--format", "json", "run", "--to", "purple"],
        &[],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect(&r.stdout);
    assert_eq!(v["exit_code"], 2);
    assert_eq!(v["outcome"], "error");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("purple"),
        "{v}"
    );
}

/// An error keeps its causes: the JSON document lists the chain, the human line names the
/// server's message once, without the bare "db error" label.
#[test]
fn an_error_keeps_its_causes() {
    let admin = crate::support::pg_admin_url();
    let url = format!("{}/no_such_database_dk", admin.rsplit_once('/').unwrap().0);
    let (_d, cfg) =
        crate::support::config("[environments.local]\ndatabase = { url_env = \"DATABASE_URL\" }\n");
    let c = cfg.to_str().unwrap();
    let r = crate::support::run(
        "db_migrate",
        &["--config", c, "--format", "json", "info"],
        &[("DATABASE_URL", url.as_str())],
    );
    assert_eq!(r.code, 4, "{}", r.all());
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect(&r.stdout);
    let causes = v["error"]["causes"].as_array().unwrap();
    assert!(
        causes
            .iter()
            .any(|c| c.as_str().unwrap().contains("does not exist")),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("SQLSTATE 3D000"),
        "{v}"
    );
    let r = crate::support::run(
        "db_migrate",
        &["--config", c, "info"],
        &[("DATABASE_URL", url.as_str())],
    );
    assert!(!r.stderr.contains("caused by: db error"), "{}", r.stderr);
    assert_eq!(
        r.stderr.matches("does not exist").count(),
        1,
        "{}",
        r.stderr
    );
}
