//! The exit-code table in code matches docs/exit-codes.md, and errors map onto it.

use crate::support::{config, repo_root, run};
use deploykit::error::{Error, Signal};
use deploykit::exit;

#[test]
fn docs_list_every_code_with_its_meaning() {
    let doc = std::fs::read_to_string(repo_root().join("docs/exit-codes.md")).unwrap();
    for (code, name, meaning) in exit::TABLE {
        let row = format!("| {code} | `{name}` | {meaning} |");
        assert!(
            doc.contains(&row),
            "docs/exit-codes.md lacks the row: {row}"
        );
    }
}

#[test]
fn each_error_kind_has_its_code() {
    let cases = [
        (Error::Usage("x".into()), 2),
        (Error::config("f:1:1", "bad"), 3),
        (Error::unreachable("PostgreSQL", "refused"), 4),
        (Error::Conflict("locked".into()), 5),
        (Error::Inconclusive("no data".into()), 6),
        (Error::Interrupted(Signal::Int), 130),
        (Error::Interrupted(Signal::Term), 143),
    ];
    for (e, code) in cases {
        assert_eq!(e.exit_code(), code, "{e}");
    }
}

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    let r = run("verify_env", &["--no-such-flag"], &[]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("unexpected argument"), "{}", r.stderr);
    let r = run("verify_env", &["-e", "moon"], &[]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("possible values: local, dev, staging, production"),
        "{}",
        r.stderr
    );
    let r = run("verify_env", &["--timeout", "0s"], &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let r = run("verify_env", &["--help"], &[]);
    assert_eq!(r.code, 0);
}

#[test]
fn a_failed_check_exits_1_and_a_passing_run_0() {
    let (_d, p) = config(
        "[environments.local.verify]\nchecks = [\"credentials\"]\ncredentials = { env = [\"DK_TEST_CRED\"] }\n",
    );
    let cfg = p.to_str().unwrap();
    assert_eq!(run("verify_env", &["--config", cfg], &[]).code, 1);
    assert_eq!(
        run("verify_env", &["--config", cfg], &[("DK_TEST_CRED", "x")]).code,
        0
    );
}

#[test]
fn sigterm_exits_143_after_cleanup() {
    // A tool that hangs (a check on a fake tool that sleeps) is interrupted by SIGTERM.
    let dir = tempfile::tempdir().unwrap();
    let tool = dir.path().join("slowtool");
    // It says when it runs: by then the tool is inside its checks, its signal handler installed.
    let started = dir.path().join("started");
    std::fs::write(
        &tool,
        format!("#!/bin/sh\ntouch {}\nsleep 30\n", started.display()),
    )
    .unwrap();
    std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (_d, p) = config(&format!(
        "[environments.local.verify]\nchecks = [\"tools\"]\ncheck_timeout = \"30s\"\ntools = [{{ name = \"{}\", min = \"1.0\" }}]\n",
        tool.display()
    ));
    let child = std::process::Command::new(crate::support::bin("verify_env"))
        .args(["--config", p.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    crate::support::eventually(
        "the slow tool starts",
        std::time::Duration::from_secs(20),
        || started.exists().then_some(()),
    );
    crate::support::signal("-TERM", &child.id().to_string());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(143),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("SIGTERM received: cleaning up"));
}

/// Every binary that cannot run (here: a configuration file that does not exist) exits 3 and
/// still writes a failing "could not run" JUnit case (checked by the harness for each tool).
#[test]
fn every_binary_that_cannot_run_says_so_in_junit() {
    let missing = "/nonexistent/deploy.toml";
    let args: &[(&str, &[&str])] = &[
        ("verify_env", &[]),
        ("smoke_tests", &[]),
        ("db_migrate", &["info"]),
        ("measure_latency", &[]),
        ("compare_metrics", &["--baseline", "yesterday"]),
        ("cutover", &["status"]),
        ("maintenance_mode", &["--status"]),
        ("emergency_stop", &[]),
        ("emergency_rollback", &[]),
        ("show_config", &[]),
        ("isolate_server", &["trade-blue-01"]),
        ("validate_config", &["x.yaml"]),
        ("strategy_rollout", &["--strategy", "MM_EQ_001"]),
        ("generate_deployment_report", &[]),
        ("notify", &["--event", "success", "--title", "t"]),
    ];
    assert_eq!(args.len(), crate::support::TOOLS.len());
    for (tool, a) in args {
        let mut v = vec!["--config", missing];
        v.extend_from_slice(a);
        let r = crate::support::run(tool, &v, &[]);
        assert_eq!(r.code, 3, "{tool}: {}", r.stderr);
    }
}

/// Another output that cannot be written (an `--html` path in a missing directory) is exit 7
/// (I/O), with a hint naming the directory, and the JUnit file Jenkins reads is still written, with a failing case that says why.
#[test]
fn junit_is_written_when_the_html_page_cannot_be() {
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("r.xml");
    let (_d, cfg) = crate::support::config("[environments.local]\n");
    let r = crate::support::run(
        "generate_deployment_report",
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--journal-dir",
            dir.path().to_str().unwrap(),
            "--html",
            "/nonexistent/dir/report.html",
            "--junit",
            junit.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(r.code, 7, "{}", r.stderr);
    assert!(
        r.stderr.contains("hint: create /nonexistent/dir"),
        "{}",
        r.stderr
    );
    let xml = std::fs::read_to_string(&junit).expect("JUnit written although --html failed");
    assert!(
        xml.contains("<failure") && xml.contains("report.html"),
        "{xml}"
    );
    crate::support::junit::check(&xml).unwrap();
}

/// What a person sees when a tool cannot do its job — the error line, its causes and the hint
/// fitted to the failure — recorded whole (exit code, stdout, stderr) so a change is reviewed.
#[test]
fn error_transcripts_say_what_failed_and_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let (_d, cfg) = crate::support::config("[environments.local]\n");
    let cfg = cfg.to_str().unwrap();
    let journal = dir.path().to_str().unwrap();
    for (name, tool, args) in [
        (
            "usage_bad_colour",
            "cutover",
            vec!["idle", "--expect", "purple"],
        ),
        (
            "io_missing_directory",
            "generate_deployment_report",
            vec![
                "--config",
                cfg,
                "--journal-dir",
                journal,
                "--html",
                "/nonexistent/dir/report.html",
            ],
        ),
        (
            "config_no_load_balancers",
            "cutover",
            vec!["--config", cfg, "decommission"],
        ),
    ] {
        let r = crate::support::run(tool, &args, &[]);
        crate::run_snapshot!(name, r);
    }
}
