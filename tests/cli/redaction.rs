//! No secret reaches stdout, stderr, JSON or JUnit, whichever path would have printed it.

use crate::support::{config, run};

const DB_PASSWORD: &str = "S3cretDbPw-42";
const TOKEN: &str = "tok-7c1d9e0f5a2b";

#[test]
fn secrets_never_appear_in_any_output() {
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("junit.xml");
    let url = format!("postgres://app:{DB_PASSWORD}@127.0.0.1:5432/trading");
    // Make the secrets reach messages on purpose: a credential *file* named by the URL and a
    // tool named like the token both end up in FAIL lines.
    let (_d, p) = config(&format!(
        "[environments.local]\ndatabase = {{ url_env = \"DATABASE_URL\" }}\n\
         [environments.local.verify]\nchecks = [\"credentials\", \"tools\"]\n\
         credentials = {{ env = [\"DATABASE_URL\"], files = [\"{url}\"] }}\n\
         tools = [{{ name = \"{TOKEN}\" }}]\n"
    ));
    let envs = [
        ("DATABASE_URL", url.as_str()),
        ("DEPLOYKIT_ADMIN_TOKEN", TOKEN),
    ];
    for format in ["human", "json"] {
        let r = run(
            "verify_env",
            &[
                "--config",
                p.to_str().unwrap(),
                "--format",
                format,
                "--junit",
                junit.to_str().unwrap(),
                "-vv",
            ],
            &envs,
        );
        assert_eq!(r.code, 1, "{}", r.all());
        let junit_text = std::fs::read_to_string(&junit).unwrap();
        for (what, text) in [
            ("stdout", &r.stdout),
            ("stderr", &r.stderr),
            ("junit", &junit_text),
        ] {
            assert!(
                !text.contains(DB_PASSWORD),
                "{format} {what} leaks the DB password:\n{text}"
            );
            assert!(
                !text.contains(TOKEN),
                "{format} {what} leaks the token:\n{text}"
            );
        }
        // The redacted forms are there, so the secrets really went through a printing path.
        assert!(
            r.stdout.contains("postgres://app:***@127.0.0.1"),
            "{}",
            r.stdout
        );
        assert!(r.stdout.contains("*** not found on PATH"), "{}", r.stdout);
        assert!(junit_text.contains("app:***@"), "{junit_text}");
    }
}

#[test]
fn config_errors_do_not_echo_secrets_either() {
    let (_d, p) =
        config("[environments.local]\nprometheus = \"http://admin:hunter2hunter2@prom:9090\"\n");
    let r = run("verify_env", &["--config", p.to_str().unwrap()], &[]);
    assert_eq!(r.code, 3);
    assert!(!r.all().contains("hunter2hunter2"), "{}", r.all());
}

/// Every binary, in every output mode, fed secrets it has every reason to print (a database
/// URL with its password, the admin token, a webhook URL with its token, Prometheus basic auth,
/// all pointing at a port nobody listens on): none appears in stdout (human, JSON), stderr
/// (text and JSON logs at -vv), the JUnit file, the HTML page or the file journal.
#[test]
fn no_binary_prints_a_secret_in_any_output() {
    const PROM_PW: &str = "Pr0mBasicPw-77";
    const HOOK: &str = "hook-tok-5e5e5e5e";
    let dir = tempfile::tempdir().unwrap();
    let url = format!("postgres://app:{DB_PASSWORD}@127.0.0.1:9/trading");
    let (_d, cfg) = config(&format!(
        "[environments.local]\ndatabase = {{ url_env = \"DATABASE_URL\" }}\n\
         prometheus = \"http://admin:{PROM_PW}@127.0.0.1:9\"\ntest_account = \"TEST-1\"\n\
         [environments.local.services.blue]\ntrading-engine = [\"http://127.0.0.1:9\"]\n\
         oms = [\"http://127.0.0.1:9\"]\nweb = [\"http://127.0.0.1:9\"]\n\
         risk-engine = [\"http://127.0.0.1:9\"]\nmarketdata = [\"http://127.0.0.1:9\"]\n\
         [environments.local.services.green]\ntrading-engine = [\"http://127.0.0.1:9\"]\n\
         [[environments.local.load_balancers]]\nname = \"lb\"\nruntime_api = \"tcp:127.0.0.1:9\"\n\
         backends = [\"trading\"]\nservers = {{ blue = [\"blue\"], green = [\"green\"] }}\n"
    ));
    let hook = format!("http://127.0.0.1:9/hooks/{HOOK}");
    let envs = [
        ("DATABASE_URL", url.as_str()),
        ("DEPLOYKIT_ADMIN_TOKEN", TOKEN),
        ("DEPLOYKIT_NOTIFY_WEBHOOK", hook.as_str()),
        ("DEPLOYKIT_DEPLOYMENT_ID", "v9.9.9+7"),
    ];
    let args: &[(&str, &[&str])] = &[
        ("verify_env", &[]),
        ("smoke_tests", &[]),
        ("db_migrate", &["info"]),
        ("measure_latency", &["--duration", "1s"]),
        ("compare_metrics", &["--baseline", "yesterday"]),
        ("cutover", &["run", "--to", "green"]),
        ("maintenance_mode", &["--enable"]),
        ("emergency_stop", &["--deadline", "1s"]),
        ("emergency_rollback", &[]),
        ("show_config", &[]),
        ("isolate_server", &["blue"]),
        ("validate_config", &["x.yaml"]),
        ("strategy_rollout", &["--strategy", "MM_EQ_001"]),
        ("generate_deployment_report", &[]),
        ("notify", &["--event", "success", "--title", "t"]),
    ];
    assert_eq!(args.len(), crate::support::TOOLS.len());
    let (junit, html, journal) = (
        dir.path().join("r.xml"),
        dir.path().join("r.html"),
        dir.path().join("journal"),
    );
    let mut outputs = 0;
    for (tool, a) in args {
        for (format, log) in [("human", "text"), ("json", "json")] {
            let _ = std::fs::remove_file(&junit);
            let _ = std::fs::remove_file(&html);
            let mut v = vec![
                "--config",
                cfg.to_str().unwrap(),
                "--format",
                format,
                "--log-format",
                log,
                "-vv",
                "--timeout",
                "2s",
                "--junit",
                junit.to_str().unwrap(),
                "--html",
                html.to_str().unwrap(),
            ];
            if [
                "cutover",
                "maintenance_mode",
                "strategy_rollout",
                "generate_deployment_report",
            ]
            .contains(tool)
            {
                v.extend(["--journal-dir", journal.to_str().unwrap()]);
            }
            v.extend_from_slice(a);
            let r = run(tool, &v, &envs);
            // Issue 23: every JSON log line names its tool and the deployment it belongs to.
            if log == "json" {
                let lines: Vec<&str> = r.stderr.lines().collect();
                assert!(!lines.is_empty(), "{tool}: no log line at -vv");
                for l in lines {
                    let j: serde_json::Value = serde_json::from_str(l)
                        .unwrap_or_else(|e| panic!("{tool}: not a JSON log line ({e}): {l}"));
                    assert_eq!(j["deployment_id"], "v9.9.9+7", "{tool}: {l}");
                    assert_eq!(j["tool"], *tool, "{tool}: {l}");
                }
            }
            let mut texts = vec![("stdout", r.stdout.clone()), ("stderr", r.stderr.clone())];
            for (what, p) in [("junit", &junit), ("html", &html)] {
                if let Ok(t) = std::fs::read_to_string(p) {
                    texts.push((what, t));
                }
            }
            for e in std::fs::read_dir(&journal).into_iter().flatten().flatten() {
                texts.push((
                    "journal",
                    std::fs::read_to_string(e.path()).unwrap_or_default(),
                ));
            }
            for (what, text) in &texts {
                outputs += 1;
                for secret in [DB_PASSWORD, TOKEN, PROM_PW, HOOK] {
                    assert!(
                        !text.contains(secret),
                        "{tool} {format}/{log} {what} leaks {secret}:\n{text}"
                    );
                }
            }
        }
    }
    // Every tool wrote stdout, stderr, JUnit and HTML in both modes.
    assert!(outputs >= args.len() * 2 * 4, "{outputs} outputs read");
}
