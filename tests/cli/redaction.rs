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
