//! validate_config for every config type of the guide's §8 besides risk limits: each type's
//! rules fail on their own fixture (secrets by reference only), database and endpoint files
//! are checked live before anything is installed, and every type deploys, reloads and reads
//! back on every server that reads it — all or nothing, twice in a row, restorable.

use crate::support::{ADMIN_TOKEN, Run, check_message, checks_with, client, config, run_async};
use std::path::{Path, PathBuf};

async fn vc(cfg: &Path, args: &[&str], envs: &[(&str, &str)]) -> Run {
    let mut a = vec!["--config", cfg.to_str().unwrap(), "--format", "json"];
    a.extend_from_slice(args);
    let mut e = vec![("DEPLOYKIT_ADMIN_TOKEN", ADMIN_TOKEN)];
    e.extend_from_slice(envs);
    run_async("validate_config", &a, &e).await
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

/// The local PostgreSQL the tests use, as a database.yaml connection.
fn pg_connection(name: &str, password_ref: &str) -> String {
    pg_connection_at(name, password_ref, None)
}

/// … on another port (`Some(closed_port())`: nothing answers).
fn pg_connection_at(name: &str, password_ref: &str, port: Option<u16>) -> String {
    let u = url::Url::parse(&crate::support::pg_admin_url()).unwrap();
    format!(
        "  {name}:\n    host: {}\n    port: {}\n    dbname: postgres\n    user: {}\n    password_ref: {password_ref}\n    connect_timeout_ms: 3000\n",
        u.host_str().unwrap_or("127.0.0.1"),
        port.or(u.port()).unwrap_or(5432),
        if u.username().is_empty() {
            "postgres"
        } else {
            u.username()
        }
    )
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

const APP: &str = "service: trading\nlisten: 0.0.0.0:8080\nlog_level: info\ntimeouts: {connect_ms: 500, request_ms: 2000}\n";
const STRATEGY: &str = "name: MM_EQ_001\nenabled: true\nsize_pct: 50\nmax_order_qty: 100\nsymbols: [AAPL]\nspread_bps: 2.5\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_and_endpoint_rules_each_have_a_failing_fixture() {
    let (d, cfg) = config("[environments.local]\n");
    let dir = d.path();
    let good_db = format!("connections:\n{}", pg_connection("primary", "env:X"));
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "database.yaml",
            good_db.replace(
                "    password_ref: env:X\n",
                "    password: hunter2-literal\n",
            ),
            ":7:15: primary.password: secrets by reference only",
        ),
        (
            "database.yaml",
            good_db.replace("env:X", "vault:x"),
            "primary.password_ref must be `env:VAR` or `file:/path`",
        ),
        (
            "database.yaml",
            good_db.replace("connect_timeout_ms: 3000", "pool_min: 9\n    pool_max: 2"),
            "pool_max 2 must be 1..=1000 and pool_min 9 at most pool_max",
        ),
        (
            "database.yaml",
            "connections: {}\n".into(),
            "no connections",
        ),
        (
            "endpoints.yaml",
            "endpoints:\n  gw:\n    url: https://ops:s3cr3t-pw@gw.internal/\n".into(),
            ":3:10: gw.url carries credentials: secrets by reference only",
        ),
        (
            "endpoints.yaml",
            "endpoints:\n  gw:\n    url: ftp://gw.internal/\n".into(),
            "gw.url must be http or https",
        ),
        (
            "endpoints.yaml",
            "endpoints:\n  gw:\n    url: http://gw.internal/\n    timeout_ms: 0\n".into(),
            "gw.timeout_ms 0 is outside 1..=60000",
        ),
        (
            "endpoints.yaml",
            "endpoints:\n  gw:\n    url: not a url\n".into(),
            "gw.url is not a URL",
        ),
    ];
    for (name, text, want) in cases {
        let f = write(dir, name, &text);
        let r = vc(&cfg, &[&f], &[]).await;
        assert_eq!(r.code, 1, "{want}: {}\n{}", r.stdout, r.stderr);
        assert!(r.stdout.contains(want), "want {want:?} in {}", r.stdout);
        for secret in ["hunter2-literal", "s3cr3t-pw"] {
            assert!(
                !r.stdout.contains(secret) && !r.stderr.contains(secret),
                "a secret in the output"
            );
        }
    }
    // The good ones validate offline (no connection is tried without --live).
    for (name, text) in [
        ("database.yaml", good_db.as_str()),
        (
            "endpoints.yaml",
            "endpoints:\n  gw:\n    url: http://gw.internal/\n",
        ),
        ("app.yaml", APP),
        ("strategy.yaml", STRATEGY),
    ] {
        let f = write(dir, name, text);
        let r = vc(&cfg, &[&f], &[]).await;
        assert_eq!(r.code, 0, "{name}: {}\n{}", r.stdout, r.stderr);
    }
}

/// A two-server fleet (every role on each) whose services read every config type from the
/// environment's live files; returns the sims, the config dir and the live files by type.
struct Fleet {
    sims: Vec<trading_sim::SimHandle>,
    _dir: tempfile::TempDir,
    cfg: PathBuf,
    live: std::collections::BTreeMap<&'static str, PathBuf>,
}

async fn fleet(second_reads_app_from: Option<&Path>) -> Fleet {
    let dir = tempfile::tempdir().unwrap();
    let live_dir = dir.path().join("etc");
    std::fs::create_dir(&live_dir).unwrap();
    let mut live = std::collections::BTreeMap::new();
    let endpoints = "endpoints:\n  self:\n    url: http://127.0.0.1:1/\n".to_string();
    let db = format!(
        "connections:\n{}",
        pg_connection("primary", "env:TEST_DB_PASSWORD")
    );
    for (ty, text) in [
        ("app", APP.to_string()),
        ("strategy", STRATEGY.to_string()),
        ("database", db),
        ("endpoints", endpoints),
    ] {
        let p = live_dir.join(format!("{ty}.yaml"));
        std::fs::write(&p, text).unwrap();
        live.insert(ty, p);
    }
    let mut sims = vec![];
    for i in 0..2 {
        let mut configs: Vec<(String, PathBuf)> = live
            .iter()
            .map(|(t, p)| (t.to_string(), p.clone()))
            .collect();
        if i == 1
            && let Some(other) = second_reads_app_from
        {
            configs.retain(|(t, _)| t != "app");
            configs.push(("app".into(), other.to_path_buf()));
        }
        sims.push(
            crate::support::sim_with(trading_sim::SimConfig {
                configs,
                admin_token: Some(ADMIN_TOKEN.into()),
                ..Default::default()
            })
            .await,
        );
    }
    let urls = sims
        .iter()
        .map(|s| format!("\"{}\"", s.url()))
        .collect::<Vec<_>>()
        .join(", ");
    let roles: String = ["trading-engine", "risk-engine", "oms", "marketdata", "web"]
        .iter()
        .map(|r| format!("{r} = [{urls}]\n"))
        .collect();
    // Named, as a fleet's servers are (a port would change the JUnit test names every run).
    let names: String = sims
        .iter()
        .enumerate()
        .map(|(i, s)| format!("app-0{} = \"{}\"\n", i + 1, s.url()))
        .collect();
    let files: String = live
        .iter()
        .map(|(t, p)| format!("{t} = \"{}\"\n", p.display()))
        .collect();
    let cfg = dir.path().join("deploy.toml");
    std::fs::write(
        &cfg,
        format!(
            "[environments.local]\ncolors = [\"blue\"]\n[environments.local.services.blue]\n{roles}[environments.local.servers]\n{names}[environments.local.config_files]\n{files}"
        ),
    )
    .unwrap();
    Fleet {
        sims,
        _dir: dir,
        cfg,
        live,
    }
}

impl Fleet {
    async fn in_use(&self, i: usize, ty: &str) -> String {
        client(&self.sims[i].url())
            .config_in_use()
            .await
            .unwrap()
            .files
            .into_iter()
            .find(|f| f.component == ty)
            .unwrap()
            .sha256
    }
}

fn sha(p: &str) -> String {
    deploykit::migrate::sha256_hex(&std::fs::read(p).unwrap())
}

/// Every type deploys to every server (reload by component, read back by SHA-256), a second
/// time in a row too; a database file is connected with before install, an endpoint file
/// reached; a failing live check installs nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_config_type_deploys_reloads_and_reads_back_on_every_server() {
    let f = fleet(None).await;
    let dir = tempfile::tempdir().unwrap();
    let sim_url = f.sims[0].url();
    let pw = [("TEST_DB_PASSWORD", "pw-never-printed-7731")];
    let new: Vec<(&str, String)> = vec![
        (
            "app",
            write(dir.path(), "app.yaml", &APP.replace("info", "debug")),
        ),
        (
            "strategy",
            write(
                dir.path(),
                "strategy.yaml",
                &STRATEGY.replace("size_pct: 50", "size_pct: 60"),
            ),
        ),
        (
            "database",
            write(
                dir.path(),
                "database.yaml",
                &format!(
                    "connections:\n{}",
                    pg_connection("primary", "env:TEST_DB_PASSWORD").replace("3000", "2500")
                ),
            ),
        ),
        (
            "endpoints",
            write(
                dir.path(),
                "endpoints.yaml",
                &format!("endpoints:\n  sim:\n    url: {sim_url}/health\n"),
            ),
        ),
    ];
    for round in 0..2 {
        for (ty, file) in &new {
            let r = vc(&f.cfg, &[file, "--deploy"], &pw).await;
            assert_eq!(r.code, 0, "{ty} round {round}: {}\n{}", r.stdout, r.stderr);
            assert!(
                check_message(&r.stdout, "Reloaded and verified")
                    .contains(&format!("2 service(s) use the new {ty} config")),
                "{}",
                r.stdout
            );
            for i in 0..2 {
                assert_eq!(f.in_use(i, ty).await, sha(file), "{ty} on server {i}");
            }
            assert!(
                !r.stdout.contains("pw-never-printed") && !r.stderr.contains("pw-never-printed")
            );
        }
    }
    // The live checks ran before install: the database answered with the new settings, the
    // endpoint answered.
    let r = vc(&f.cfg, &[&new[2].1, "--live"], &pw).await;
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(
        check_message(
            &r.stdout,
            &format!("{} connection primary answers", new[2].1)
        )
        .contains("accepts the settings")
    );

    // A database that does not accept the new settings (nothing listens there; a password
    // reference that is not set): nothing installed, the live file unchanged.
    let before = std::fs::read_to_string(&f.live["database"]).unwrap();
    let bad = write(
        dir.path(),
        "bad_database.yaml",
        &format!(
            "connections:\n{}{}",
            pg_connection_at("primary", "env:TEST_DB_PASSWORD", Some(closed_port())),
            pg_connection("reporting", "env:NOT_SET_ANYWHERE_42")
        ),
    );
    let r = vc(&f.cfg, &[&bad, "--deploy"], &pw).await;
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stdout.contains("nothing deployed: a live check failed"),
        "{}",
        r.stdout
    );
    let failed = checks_with(&r.stdout, "fail");
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(
        check_message(&r.stdout, &format!("{bad} connection reporting answers"))
            .contains("password_ref env:NOT_SET_ANYWHERE_42 is not set on this machine")
    );
    assert_eq!(
        std::fs::read_to_string(&f.live["database"]).unwrap(),
        before
    );

    // An endpoint that does not answer: the same.
    let bad = write(
        dir.path(),
        "bad_endpoints.yaml",
        &format!(
            "endpoints:\n  sim:\n    url: {sim_url}/health\n  gone:\n    url: http://127.0.0.1:{}/\n    timeout_ms: 500\n",
            closed_port()
        ),
    );
    let r = vc(&f.cfg, &[&bad, "--deploy"], &pw).await;
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert_eq!(
        checks_with(&r.stdout, "fail"),
        vec![format!("{bad} endpoint gone answers")]
    );
    assert_eq!(f.in_use(0, "endpoints").await, sha(&new[3].1));

    // show_config: every type, every server, on the file on disk.
    let r = run_async(
        "show_config",
        &["--config", f.cfg.to_str().unwrap(), "--format", "json"],
        &[("DEPLOYKIT_ADMIN_TOKEN", ADMIN_TOKEN)],
    )
    .await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let ok = checks_with(&r.stdout, "ok");
    for ty in ["app", "strategy", "database", "endpoints"] {
        assert_eq!(
            ok.iter()
                .filter(|c| c.ends_with(&format!("uses the {ty} file on disk")))
                .count(),
            2,
            "{ty}: {ok:?}"
        );
    }
}

/// All or nothing across the fleet for a type other than risk limits: the second server reads
/// its app config from another path, so its read-back cannot match → both servers are back on
/// the old file, the report names that server and why; `--restore` later puts back the last
/// good backup; show_config names the server on the wrong path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_config_deploy_one_server_cannot_read_back_restores_every_server() {
    let elsewhere = tempfile::tempdir().unwrap();
    let other = write(elsewhere.path(), "app.yaml", APP);
    let f = fleet(Some(Path::new(&other))).await;
    let live = f.live["app"].to_str().unwrap().to_string();
    let old = sha(&live);
    let dir = tempfile::tempdir().unwrap();
    let new = write(dir.path(), "app.yaml", &APP.replace("info", "warn"));
    let r = vc(&f.cfg, &[&new, "--deploy"], &[]).await;
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let second = "app-02";
    let m = check_message(&r.stdout, "Reloaded and verified");
    assert!(
        m.contains(second) && m.contains("a wrong path") && m.contains("restored"),
        "{m}"
    );
    assert!(!m.contains("app-01"), "{m}");
    assert_eq!(sha(&live), old, "the old file is back");
    assert_eq!(
        f.in_use(0, "app").await,
        old,
        "and in use again on the first server"
    );

    let r = run_async(
        "show_config",
        &[
            "--config",
            f.cfg.to_str().unwrap(),
            "--format",
            "json",
            "--type",
            "app",
        ],
        &[("DEPLOYKIT_ADMIN_TOKEN", ADMIN_TOKEN)],
    )
    .await;
    assert_eq!(r.code, 1, "{}", r.stdout);
    let failed = checks_with(&r.stdout, "fail");
    assert_eq!(failed, vec![format!("{second} uses the app file on disk")]);
    assert!(check_message(&r.stdout, &failed[0]).contains("a wrong path"));

    // The deploy left a backup; corrupt the live file by hand and restore it.
    std::fs::write(&live, "service: [broken\n").unwrap();
    let f1 = fleet_first_only(&f).await;
    let r = vc(&f1, &["--schema", "app", "--restore"], &[]).await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(sha(&live), old);
    assert_eq!(f.in_use(0, "app").await, old);
}

/// The fleet's config with only its first server (the second reads another path by design).
async fn fleet_first_only(f: &Fleet) -> PathBuf {
    let text = std::fs::read_to_string(&f.cfg)
        .unwrap()
        .replace(&format!(", \"{}\"", f.sims[1].url()), "")
        .replace(&format!("app-02 = \"{}\"\n", f.sims[1].url()), "");
    let p = f.cfg.with_file_name("first.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// Guide §8 Step 3, "test in staging": production (`promote_from = "staging"`) takes a config
/// only when the identical bytes were deployed to staging and a full smoke run passed there
/// since — read from staging's journal. Refused (nothing installed) when never deployed there,
/// not smoked since, or its latest smoke run failed; an edited file is a new file;
/// `--skip-staging REASON` deploys anyway, journaled and notified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_production_config_needs_the_identical_file_tested_in_staging_first() {
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc");
    std::fs::create_dir(&etc).unwrap();
    let staging_live = write(&etc, "staging-app.yaml", APP);
    let prod_live = write(&etc, "prod-app.yaml", APP);
    let serve = async |live: &str| {
        crate::support::sim_with(trading_sim::SimConfig {
            configs: vec![("app".into(), PathBuf::from(live))],
            admin_token: Some(ADMIN_TOKEN.into()),
            ..Default::default()
        })
        .await
    };
    let (staging, prod) = (serve(&staging_live).await, serve(&prod_live).await);
    let roles = |u: &str| -> String {
        ["trading-engine", "risk-engine", "oms", "marketdata", "web"]
            .iter()
            .map(|r| format!("{r} = [\"{u}\"]\n"))
            .collect()
    };
    let cfg = dir.path().join("deploy.toml");
    std::fs::write(
        &cfg,
        format!(
            "[environments.staging]\ncolors = [\"blue\"]\ntest_account = \"TEST-SMOKE-01\"\n\
             [environments.staging.services.blue]\n{}\
             [environments.staging.config_files]\napp = \"{staging_live}\"\n\
             [environments.production]\ncolors = [\"blue\"]\npromote_from = \"staging\"\n\
             [environments.production.services.blue]\n{}\
             [environments.production.config_files]\napp = \"{prod_live}\"\n",
            roles(&staging.url()),
            roles(&prod.url())
        ),
    )
    .unwrap();
    let hook = crate::notify::receiver(200).await;
    let hook_env = [("DEPLOYKIT_NOTIFY_WEBHOOK", hook.url.as_str())];
    let new_dir = tempfile::tempdir().unwrap();
    let f = write(new_dir.path(), "app.yaml", &APP.replace("info", "debug"));
    let to = async |env: &str, extra: &[&str]| {
        let mut a = vec!["-e", env, f.as_str(), "--deploy"];
        a.extend_from_slice(extra);
        vc(&cfg, &a, &hook_env).await
    };
    let refused = async |why: &str| {
        let r = to("production", &[]).await;
        assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
        let m = check_message(&r.stdout, "Tested in staging first");
        assert!(m.contains(why), "want {why:?}: {m}");
        assert!(
            r.stdout
                .contains("nothing deployed: the file was not tested in staging first")
        );
        assert_eq!(
            std::fs::read_to_string(&prod_live).unwrap(),
            APP,
            "nothing installed"
        );
    };
    let smoke = async || {
        run_async(
            "smoke_tests",
            &[
                "--config",
                cfg.to_str().unwrap(),
                "-e",
                "staging",
                "--format",
                "json",
            ],
            &[("DEPLOYKIT_ADMIN_TOKEN", ADMIN_TOKEN)],
        )
        .await
    };

    refused("was never deployed there").await;
    let r = to("staging", &[]).await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    refused("no smoke test has run there since").await;
    let r = smoke().await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    // Promoted: deployed, twice in a row.
    for _ in 0..2 {
        let r = to("production", &[]).await;
        assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
        assert!(
            check_message(&r.stdout, "Tested in staging first").contains("smoke tests passed at"),
            "{}",
            r.stdout
        );
        assert_eq!(
            std::fs::read_to_string(&prod_live).unwrap(),
            std::fs::read_to_string(&f).unwrap()
        );
    }

    // A failed smoke run in staging, with the file deployed there: refused again.
    client(&staging.url())
        .set_faults(&deploykit::contract::Faults {
            error_rate: Some(1.0),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_ne!(smoke().await.code, 0);
    client(&staging.url()).clear_faults().await.unwrap();
    std::fs::write(&prod_live, APP).unwrap();
    refused("its latest smoke test run failed").await;

    // An edited file is a new file; --skip-staging deploys it, journaled and notified.
    std::fs::write(&f, APP.replace("info", "warn")).unwrap();
    refused("was never deployed there").await;
    let r = to("production", &["--skip-staging", "INC-42 exchange outage"]).await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        checks_with(&r.stdout, "warn"),
        vec!["Tested in staging first"]
    );
    assert_eq!(
        std::fs::read_to_string(&prod_live).unwrap(),
        APP.replace("info", "warn")
    );
    let posted = hook.bodies.lock().unwrap().clone();
    assert_eq!(posted.len(), 1, "{posted:?}");
    assert!(
        posted[0].1.contains("WITHOUT testing in staging") && posted[0].1.contains("INC-42"),
        "{}",
        posted[0].1
    );
    let journal =
        std::fs::read_to_string(dir.path().join(".deploykit/journal-production.jsonl")).unwrap();
    assert!(
        journal.contains("skip-staging") && journal.contains("INC-42 exchange outage"),
        "{journal}"
    );
}
