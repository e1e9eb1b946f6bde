//! Deployment metrics (issue 23 item 1) against a real Pushgateway: an environment-changing run
//! pushes its outcome under its deployment id, a read-only run pushes nothing, a failed run
//! pushes its failure, and a dead Pushgateway costs a warning, never the deploy.

use crate::support::{TestDb, config, eventually, run};
use std::process::{Command, Stdio};
use std::time::Duration;

struct Gateway {
    url: String,
    child: std::process::Child,
}

impl Gateway {
    fn start() -> Gateway {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("prometheus-pushgateway")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // Debian's default persists to a file every gateway on the machine would share.
            .arg("--persistence.file=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus-pushgateway (Debian: prometheus-pushgateway)");
        let url = format!("http://127.0.0.1:{port}");
        eventually("pushgateway ready", Duration::from_secs(30), || {
            metrics(&url).map(|_| ())
        });
        Gateway { url, child }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn metrics(url: &str) -> Option<String> {
    let out = Command::new("curl")
        .args(["-fsS", "-m", "2", &format!("{url}/metrics")])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The value of `name` in the group of `deployment_id`, if pushed.
fn pushed(text: &str, name: &str, deployment_id: &str) -> Option<String> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| {
            l.contains(&format!("deployment_id=\"{deployment_id}\""))
                && l.contains("tool=\"db_migrate\"")
                && l.contains("environment=\"local\"")
                && l.contains("job=\"deploykit\"")
        })
        .and_then(|l| l.rsplit(' ').next())
        .map(str::to_string)
}

#[test]
fn environment_changing_runs_push_their_outcome_and_a_dead_gateway_is_only_a_warning() {
    let gw = Gateway::start();
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("sql");
    std::fs::create_dir(&m).unwrap();
    std::fs::write(m.join("V1__t.sql"), "CREATE TABLE t (id int);\n").unwrap();
    std::fs::write(m.join("V1__t_rollback.sql"), "DROP TABLE t;\n").unwrap();
    let db = TestDb::new();
    let (_c, cfg) = config(&format!(
        "[environments.local]\ndatabase = {{ url_env = \"DATABASE_URL\" }}\npushgateway = \"{}\"\n",
        gw.url
    ));
    let db_migrate = |id: &str, args: &[&str]| {
        let mut a = vec![
            "--config",
            cfg.to_str().unwrap(),
            "--migrations",
            m.to_str().unwrap(),
            "--format",
            "json",
        ];
        a.extend_from_slice(args);
        run(
            "db_migrate",
            &a,
            &[
                ("DATABASE_URL", db.url.as_str()),
                ("DEPLOYKIT_DEPLOYMENT_ID", id),
            ],
        )
    };

    let r = db_migrate("v3.2.2+41", &["migrate"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let text = metrics(&gw.url).unwrap();
    assert_eq!(
        pushed(&text, "deploykit_run_success", "v3.2.2+41").as_deref(),
        Some("1"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("deploykit_run_duration_seconds{")
                && l.contains("v3.2.2+41")
                && l.contains("result=\"success\"")),
        "{text}"
    );

    // Read-only: nothing pushed.
    let r = db_migrate("read-only-1", &["info"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(!metrics(&gw.url).unwrap().contains("read-only-1"));

    // A failed migration: its failure, under its own id, beside the earlier success.
    std::fs::write(m.join("V2__bad.sql"), "CREATE TABLE t (id int);\n").unwrap();
    std::fs::write(m.join("V2__bad_rollback.sql"), "SELECT 1;\n").unwrap();
    let r = db_migrate("v3.2.3+42", &["migrate"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    let text = metrics(&gw.url).unwrap();
    assert_eq!(
        pushed(&text, "deploykit_run_success", "v3.2.3+42").as_deref(),
        Some("0")
    );
    assert_eq!(
        pushed(&text, "deploykit_run_exit_code", "v3.2.3+42").as_deref(),
        Some("1")
    );
    assert_eq!(
        pushed(&text, "deploykit_run_success", "v3.2.2+41").as_deref(),
        Some("1")
    );

    // The Pushgateway gone: the run's own result stands, the report and the log warn.
    drop(gw);
    std::fs::remove_file(m.join("V2__bad.sql")).unwrap();
    std::fs::remove_file(m.join("V2__bad_rollback.sql")).unwrap();
    let r = db_migrate("v3.2.4+43", &["migrate"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("deployment metrics not pushed"),
        "{}",
        r.stdout
    );
    assert!(
        r.stderr.contains("deployment metrics not pushed"),
        "{}",
        r.stderr
    );
}
