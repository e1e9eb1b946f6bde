//! Config parsing: the shipped file is valid; every kind of bad field is exit 3 with
//! file:line:column and what is allowed.

use crate::support::{config, repo_root, run};
use deploykit::config::{Color, Config, EnvName, Role};

#[test]
fn shipped_config_parses_with_every_environment() {
    let c = Config::load(&repo_root().join("config/deploy.toml")).unwrap();
    assert_eq!(c.environments.len(), 4);
    let prod = c.environment(EnvName::Production).unwrap();
    assert_eq!(prod.urls(Color::Green, Role::TradingEngine).len(), 2);
    assert_eq!(prod.thresholds.latency_increase_pct.0, 10.0);
    assert!(prod.policy.change_ticket.is_some());
    let local = c.environment(EnvName::Local).unwrap();
    assert_eq!(
        local.load_balancers[0].backends,
        vec!["trading".to_string()]
    );
}

#[test]
fn defaults_fill_what_the_file_leaves_out() {
    let (_d, p) = config("[environments.dev]\n");
    let c = Config::load(&p).unwrap();
    let dev = c.environment(EnvName::Dev).unwrap();
    assert_eq!(dev.colors, vec![Color::Blue, Color::Green]);
    assert_eq!(dev.thresholds.error_rate_max_ratio.0, 2.0);
    assert_eq!(dev.admin_token_env, "DEPLOYKIT_ADMIN_TOKEN");
    assert_eq!(dev.timeouts.connect.0, std::time::Duration::from_secs(2));
}

const BAD: &[(&str, &str)] = &[
    ("unknown top-level field", "[environment.local]\n"),
    (
        "unknown field in environment",
        "[environments.local]\ncolours = [\"blue\"]\n",
    ),
    ("unknown environment name", "[environments.qa]\n"),
    (
        "bad colour",
        "[environments.local]\ncolors = [\"purple\"]\n",
    ),
    (
        "bad role",
        "[environments.local.services.blue]\nmatching-engine = [\"http://x:1\"]\n",
    ),
    (
        "bad url scheme",
        "[environments.local.services.blue]\nweb = [\"ftp://x:1\"]\n",
    ),
    (
        "password in url",
        "[environments.local]\nprometheus = \"http://u:pw@prom:9090\"\n",
    ),
    ("bad duration", "[defaults]\ntimeout = \"ten seconds\"\n"),
    (
        "zero duration",
        "[environments.local.timeouts]\nconnect = \"0s\"\n",
    ),
    (
        "percentage out of range",
        "[environments.local.thresholds]\nlatency_increase_pct = -5\n",
    ),
    (
        "ratio below one",
        "[environments.local.thresholds]\nerror_rate_max_ratio = 0.5\n",
    ),
    (
        "bad regex",
        "[environments.production.policy]\nchange_ticket = \"^CHG-[0-9\"\n",
    ),
    (
        "bad weekday",
        "[environments.production.policy]\ndeploy_days = [\"Tuesday\"]\n",
    ),
    (
        "bad holiday date",
        "[environments.production.policy]\nholidays = [\"2026-13-01\"]\n",
    ),
    (
        "bad runtime api",
        "[[environments.local.load_balancers]]\nname = \"lb\"\nruntime_api = \"/run/haproxy.sock\"\nbackends = [\"b\"]\nservers = { blue = [\"s1\"], green = [\"s2\"] }\n",
    ),
    (
        "lb missing a colour",
        "[[environments.local.load_balancers]]\nname = \"lb\"\nruntime_api = \"unix:/x.sock\"\nbackends = [\"b\"]\nservers = { blue = [\"s1\"] }\n",
    ),
    (
        "services colour not in colors",
        "[environments.dev]\ncolors = [\"blue\"]\n[environments.dev.services.green]\nweb = [\"http://x:1\"]\n",
    ),
    (
        "unknown config type",
        "[environments.dev]\ncolors = [\"blue\"]\n[environments.dev.config_files]\nrisk_limit = \"/etc/r.yaml\"\n",
    ),
    ("wrong type", "[environments.local]\ntest_account = 42\n"),
    (
        "bad min version",
        "[environments.local.verify]\ntools = [{ name = \"git\", min = \"2.x\" }]\n",
    ),
    ("toml syntax", "[environments.local\n"),
];

#[test]
fn every_kind_of_bad_field_is_exit_3_with_line_and_column() {
    let mut transcript = String::new();
    let located = regex::Regex::new(r"^error: \$DIR/deploy\.toml:\d+:\d+: ").unwrap();
    for (what, text) in BAD {
        let (dir, p) = config(text);
        let r = run("verify_env", &["--config", p.to_str().unwrap()], &[]);
        assert_eq!(
            r.code, 3,
            "{what}: expected exit 3, got {}: {}",
            r.code, r.stderr
        );
        let line = r.stderr.lines().next().unwrap_or_default();
        let line = line.replace(&dir.path().display().to_string(), "$DIR");
        // Every error names the file with line:column (or the environment for cross-field checks).
        assert!(
            located.is_match(&line),
            "{what}: no file:line:column in `{line}`"
        );
        assert!(
            r.stdout.is_empty(),
            "{what}: nothing on stdout for an error"
        );
        transcript.push_str(&format!("{what}:\n  {line}\n"));
    }
    insta::assert_snapshot!(transcript);
}

#[test]
fn missing_file_and_undefined_environment_are_config_errors() {
    let r = run("verify_env", &["--config", "/nonexistent/deploy.toml"], &[]);
    assert_eq!(r.code, 3);
    assert!(r.stderr.contains("cannot read config file"), "{}", r.stderr);
    assert!(r.stderr.contains("DEPLOYKIT_CONFIG"), "{}", r.stderr);

    let (_d, p) = config("[environments.local]\n");
    let r = run(
        "verify_env",
        &["--config", p.to_str().unwrap(), "-e", "staging"],
        &[],
    );
    assert_eq!(r.code, 3);
    assert!(
        r.stderr
            .contains("environment `staging` is not defined (defined: local)"),
        "{}",
        r.stderr
    );
}

#[test]
fn env_vars_layer_under_flags() {
    // DEPLOYKIT_ENVIRONMENT picks the environment; the flag overrides it.
    let (_d, p) = config("[environments.local]\n[environments.local.verify]\nchecks = []\n");
    let r = run(
        "verify_env",
        &["--config", p.to_str().unwrap()],
        &[("DEPLOYKIT_ENVIRONMENT", "dev")],
    );
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("environment `dev` is not defined"));
    let r = run(
        "verify_env",
        &[
            "--config",
            p.to_str().unwrap(),
            "-e",
            "local",
            "--format",
            "json",
        ],
        &[
            ("DEPLOYKIT_ENVIRONMENT", "dev"),
            ("DEPLOYKIT_FORMAT", "human"),
        ],
    );
    // No checks ran: the JSON document still comes out, from the flag winning over the env var.
    assert!(r.stdout.trim_start().starts_with('{'), "{}", r.stdout);
    // DEPLOYKIT_CONFIG names the file when no flag does.
    let r = run(
        "verify_env",
        &["--format", "json"],
        &[("DEPLOYKIT_CONFIG", p.to_str().unwrap())],
    );
    // The file was found and read (checks = []): a run that checked nothing is never a pass.
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stdout.contains("no checks ran"), "{}", r.stdout);
}

#[test]
fn every_environment_variable_is_documented() {
    let doc = std::fs::read_to_string(repo_root().join("docs/configuration.md")).unwrap();
    for (name, _) in deploykit::env_vars::EnvVars::ALL {
        assert!(
            doc.contains(&format!("| `{name}` |")),
            "docs/configuration.md lacks {name}"
        );
    }
    // And none is read by a literal name outside the table.
    let mut stack = vec![repo_root().join("shared/src")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                for needle in ["env::var(\"", "env::var_os(\""] {
                    assert!(
                        !text.contains(needle),
                        "{} reads a variable by a literal name: add it to EnvVars",
                        p.display()
                    );
                }
            }
        }
    }
}

/// Durations are bounded (a week at most) and a huge value is never echoed in full.
#[test]
fn durations_are_bounded_and_huge_values_are_not_echoed() {
    let (_d, p) = config("[environments.local]\n");
    let r = run(
        "cutover",
        &[
            "--config",
            p.to_str().unwrap(),
            "--timeout",
            "500000000000h",
            "status",
        ],
        &[],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("longer than 7 days"), "{}", r.stderr);
    let huge = "9".repeat(100_000);
    let (_d2, p2) = config(&format!(
        "[environments.local.thresholds]\ninconclusive_extend = \"{huge}s\"\n"
    ));
    let r = run(
        "cutover",
        &["--config", p2.to_str().unwrap(), "status"],
        &[],
    );
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.len() < 2_000, "{} bytes of stderr", r.stderr.len());
    assert!(r.stderr.contains("100001 characters"), "{}", r.stderr);
    // A negative duration is a duration that is wrong, not an unknown flag `-5`.
    for (tool, args) in [
        ("cutover", &["run", "--to", "green", "--watch", "-5s"][..]),
        ("cutover", &["--timeout", "-1m", "status"][..]),
        ("compare_metrics", &["--duration", "-15m"][..]),
    ] {
        let r = run(tool, args, &[]);
        assert_eq!(r.code, 2, "{tool} {args:?}: {}", r.stderr);
        assert!(
            r.stderr.contains("durations are positive")
                && !r.stderr.contains("unexpected argument"),
            "{tool} {args:?}: {}",
            r.stderr
        );
    }
}

/// History spans are not waits: a 30-day report window and a relative time a month back are
/// fine, ten years is the bound.
#[test]
fn history_spans_are_not_bounded_like_waits() {
    let (_d, p) = config("[environments.local]\n");
    let dir = tempfile::tempdir().unwrap();
    let r = run(
        "generate_deployment_report",
        &[
            "--config",
            p.to_str().unwrap(),
            "--journal-dir",
            dir.path().to_str().unwrap(),
            "--since",
            "90days",
        ],
        &[],
    );
    assert_ne!(r.code, 2, "{}", r.stderr);
    let r = run(
        "generate_deployment_report",
        &["--config", p.to_str().unwrap(), "--since", "20000days"],
        &[],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("ten years"), "{}", r.stderr);
}

/// A misspelt metric in `thresholds.on_inconclusive` is a config error naming the real ones,
/// not a policy silently ignored.
#[test]
fn a_misspelt_on_inconclusive_metric_is_refused() {
    let (_d, p) =
        config("[environments.local.thresholds]\non_inconclusive = { fill_rte = \"fail\" }\n");
    let r = run("cutover", &["--config", p.to_str().unwrap(), "status"], &[]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr.contains("`fill_rte` is not a watch metric") && r.stderr.contains("fill_rate"),
        "{}",
        r.stderr
    );
    let (_d, p) =
        config("[environments.local.thresholds]\non_inconclusive = { fill_rate = \"fail\" }\n");
    let dir = tempfile::tempdir().unwrap();
    let r = run(
        "generate_deployment_report",
        &[
            "--config",
            p.to_str().unwrap(),
            "--journal-dir",
            dir.path().to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// Every alert's runbook link names a section docs/runbook.md has (GitHub's heading anchors).
#[test]
fn alert_runbook_links_name_runbook_sections() {
    let runbook = std::fs::read_to_string(repo_root().join("docs/runbook.md")).unwrap();
    let anchors: Vec<String> = runbook
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(|h| {
            h.to_lowercase()
                .chars()
                .filter_map(|c| match c {
                    ' ' => Some('-'),
                    c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                    _ => None,
                })
                .collect()
        })
        .collect();
    let mut rules = String::new();
    for e in std::fs::read_dir(repo_root().join("monitoring/rules")).unwrap() {
        rules.push_str(&std::fs::read_to_string(e.unwrap().path()).unwrap());
    }
    let links: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("runbook_url: docs/runbook.md#"))
        .collect();
    assert!(links.len() >= 9, "{links:?}");
    for link in links {
        assert!(
            anchors.iter().any(|a| a == link),
            "runbook_url #{link} is not a heading of docs/runbook.md"
        );
    }
}
