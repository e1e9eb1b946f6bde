//! db_migrate refresh: production → staging with every column classified, anonymized inside
//! production's COPY, in one staging transaction, then migrations replayed and verified.

use crate::support::{Run, TestDb, check_message, config, psql, repo_root, run};

const KEY: &str = "refresh-test-key-0123456789";

/// Production data about real people, and a staging database with a life of its own.
struct Fixture {
    prod: TestDb,
    staging: TestDb,
    _dir: tempfile::TempDir,
    cfg: std::path::PathBuf,
    backups: std::path::PathBuf,
}

fn fixture() -> Fixture {
    let (prod, staging) = (TestDb::new(), TestDb::new());
    let dir = tempfile::tempdir().unwrap();
    let backups = dir.path().join("backups");
    let (d, cfg) = config(&format!(
        "[environments.dev.database]\nurl_env = \"PROD_URL\"\n\
         [environments.production.database]\nurl_env = \"PROD_URL\"\n\
         [environments.staging.database]\nurl_env = \"STAGING_URL\"\n\
         [environments.staging.migrate]\nbackups_dir = \"{}\"\n",
        backups.display()
    ));
    std::mem::forget(d);
    seed_production(&prod, &cfg);
    // Staging: its own deploy journal (kept) and a table production does not have (gone after).
    staging.sql(
        "CREATE TABLE deploy_journal (id bigserial PRIMARY KEY, run_id text NOT NULL);
         INSERT INTO deploy_journal (run_id) VALUES ('staging-cutover-7');
         CREATE TABLE stale_experiment (x int); INSERT INTO stale_experiment VALUES (1);",
    );
    Fixture {
        prod,
        staging,
        _dir: dir,
        cfg,
        backups,
    }
}

/// Production runs release 3.2.1 (3.2.2 is pending) and knows two clients. `cfg` has a `dev`
/// environment whose database is production's.
fn seed_production(prod: &TestDb, cfg: &std::path::Path) {
    let r = run(
        "db_migrate",
        &[
            "--config",
            cfg.to_str().unwrap(),
            "-e",
            "dev",
            "--migrations",
            repo_root().join("migrations").to_str().unwrap(),
            "migrate",
            "--version",
            "3.2.1",
        ],
        &[("PROD_URL", &prod.url)],
    );
    assert_eq!(r.code, 0, "{}", r.all());
    prod.sql(
        "INSERT INTO accounts (account_id, name) VALUES ('ACC-1001', 'Alice Smith'), ('ACC-1002', 'Bob Jones');
         INSERT INTO orders (client_order_id, account_id, symbol, side, qty, order_type, price, status)
           VALUES ('alice-order-1', 'ACC-1001', 'AAPL', 'buy', 10, 'limit', 101.5, 'filled'),
                  ('bob-order-1', 'ACC-1002', 'MSFT', 'sell', 5, 'market', NULL, 'filled'),
                  ('alice-order-2', 'ACC-1001', 'AAPL', 'sell', 3, 'market', NULL, 'new');
         INSERT INTO fills (order_id, qty, price) SELECT order_id, qty, 100 FROM orders WHERE status = 'filled';
         INSERT INTO positions (account_id, symbol, qty) VALUES ('ACC-1001', 'AAPL', 10), ('ACC-1002', 'MSFT', -5);",
    );
}

impl Fixture {
    fn refresh(&self, rules: &std::path::Path, extra: &[&str]) -> Run {
        let migrations = repo_root().join("migrations");
        let mut a = vec![
            "--config",
            self.cfg.to_str().unwrap(),
            "-e",
            "staging",
            "--format",
            "json",
            "--migrations",
            migrations.to_str().unwrap(),
            "refresh",
            "--source-environment",
            "production",
            "--rules",
            rules.to_str().unwrap(),
        ];
        a.extend_from_slice(extra);
        run(
            "db_migrate",
            &a,
            &[
                ("PROD_URL", &self.prod.url),
                ("STAGING_URL", &self.staging.url),
                ("DEPLOYKIT_ANONYMIZE_KEY", KEY),
            ],
        )
    }
}

fn rules() -> std::path::PathBuf {
    repo_root().join("config/anonymize.toml")
}

#[test]
fn production_data_arrives_anonymized_with_joins_intact_and_migrations_replayed() {
    let f = fixture();
    let r = f.refresh(&rules(), &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        check_message(&r.stdout, "Anonymized data restored").contains("foreign keys re-validated"),
        "{}",
        r.stdout
    );
    assert!(!r.all().contains(KEY), "the key is a secret");
    let s = &f.staging;
    // No production value of a sensitive column survives, in any column it was in.
    let leaks = s.sql(
        "SELECT count(*) FROM (
           SELECT account_id AS v FROM accounts UNION ALL SELECT name FROM accounts
           UNION ALL SELECT account_id FROM orders UNION ALL SELECT client_order_id FROM orders
           UNION ALL SELECT account_id FROM positions) x
         WHERE v IN ('ACC-1001', 'ACC-1002', 'Alice Smith', 'Bob Jones', 'alice-order-1', 'bob-order-1', 'alice-order-2')",
    );
    assert_eq!(leaks, "0");
    assert_eq!(
        s.sql("SELECT count(*) FROM accounts WHERE name LIKE 'Person %'"),
        "3"
    );
    // Deterministic pseudonyms: every order and position still joins its account.
    assert_eq!(
        s.sql("SELECT count(*) FROM orders o JOIN accounts a USING (account_id)"),
        "3"
    );
    assert_eq!(
        s.sql("SELECT count(*) FROM positions p JOIN accounts a USING (account_id)"),
        "2"
    );
    assert_eq!(
        s.sql("SELECT count(*) FROM orders o JOIN fills f USING (order_id)"),
        "2",
        "kept keys join too"
    );
    // Business values are kept, the sequence continues after production's last id.
    assert_eq!(s.sql("SELECT sum(qty) FROM orders"), "18");
    assert_eq!(
        s.sql("SELECT nextval('orders_order_id_seq') > (SELECT max(order_id) FROM orders)"),
        "t"
    );
    // Staging's journal stays; what production does not have is gone; 3.2.2 replayed.
    assert_eq!(
        s.sql("SELECT run_id FROM deploy_journal"),
        "staging-cutover-7"
    );
    assert_eq!(s.sql("SELECT to_regclass('stale_experiment') IS NULL"), "t");
    assert_eq!(s.sql("SELECT count(*) FROM risk_limits"), "3");
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let names: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"Backup taken and verified"), "{names:?}");
    assert!(names.contains(&"Schema version"), "{names:?}");
    assert!(std::fs::read_dir(&f.backups).unwrap().count() == 1);
    // Same key, same pseudonyms: a second refresh gives the same ids.
    let before = s.sql("SELECT string_agg(account_id, ',' ORDER BY account_id) FROM accounts");
    let r = f.refresh(&rules(), &["--no-backup", "test"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        s.sql("SELECT string_agg(account_id, ',' ORDER BY account_id) FROM accounts"),
        before
    );
}

#[test]
fn an_unclassified_column_stops_the_refresh_before_anything_changes() {
    let f = fixture();
    f.prod.sql("ALTER TABLE accounts ADD COLUMN tax_id text");
    let r = f.refresh(&rules(), &[]);
    assert_eq!(r.code, 3, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("public.accounts.tax_id (text) is not classified")
            && r.stderr.contains("nothing was changed"),
        "{}",
        r.stderr
    );
    assert_eq!(f.staging.sql("SELECT count(*) FROM stale_experiment"), "1");
    assert!(!f.backups.exists(), "not even a backup");
    // A rule for a table production does not have (yet) is noted.
    let dir = tempfile::tempdir().unwrap();
    let stale = dir.path().join("rules.toml");
    std::fs::write(
        &stale,
        std::fs::read_to_string(rules()).unwrap()
            + "\n[tables.\"public.customers\"]\nemail = \"fake:email\"\n",
    )
    .unwrap();
    f.prod.sql("ALTER TABLE accounts DROP COLUMN tax_id");
    let r = f.refresh(&stale, &["--dry-run"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        r.stdout.contains(
            "public.customers is in the rules but not in the source (a pending migration may add it)"
        ),
        "a rule without a column leaks nothing: a note, not an error: {}",
        r.stdout
    );
    assert_eq!(
        f.staging.sql("SELECT count(*) FROM stale_experiment"),
        "1",
        "dry run"
    );
    // And null on a NOT NULL column cannot work.
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(rules())
            .unwrap()
            .replace("name = \"fake:name\"", "name = \"null\""),
    )
    .unwrap();
    let r = f.refresh(&bad, &[]);
    assert_eq!(r.code, 3);
    assert!(
        r.stderr.contains("public.accounts.name: is NOT NULL"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_refresh_that_fails_midway_leaves_staging_as_it_was() {
    let f = fixture();
    // A classic mistake: the account id is hashed in orders but kept in accounts, so the
    // foreign key cannot be re-created on the anonymized rows.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("rules.toml");
    let text = std::fs::read_to_string(rules()).unwrap().replacen(
        "[tables.\"public.accounts\"]\naccount_id = \"hash\"",
        "[tables.\"public.accounts\"]\naccount_id = \"keep\"",
        1,
    );
    std::fs::write(&broken, text).unwrap();
    let r = f.refresh(&broken, &[]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let m = check_message(&r.stdout, "Anonymized data restored");
    assert!(m.contains("post-data") && m.contains("23503"), "{m}");
    // One transaction: staging is exactly as before.
    assert_eq!(f.staging.sql("SELECT count(*) FROM stale_experiment"), "1");
    assert_eq!(f.staging.sql("SELECT to_regclass('accounts') IS NULL"), "t");
    assert_eq!(
        f.staging.sql("SELECT run_id FROM deploy_journal"),
        "staging-cutover-7"
    );
    // Production is never a target.
    let r = run(
        "db_migrate",
        &[
            "--config",
            f.cfg.to_str().unwrap(),
            "-e",
            "production",
            "refresh",
            "--source-environment",
            "staging",
        ],
        &[("PROD_URL", &f.prod.url), ("STAGING_URL", &f.staging.url)],
    );
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("never runs against production"));
}

/// The stage script Jenkins' Saturday timer and the crontab run, end to end on a local stack:
/// maintenance on → backup → anonymized refresh → maintenance off → smoke → notify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_weekly_refresh_script_runs_end_to_end_and_always_notifies() {
    let stack = crate::support::stack::Stack::up();
    let prod = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    // The stack's config plus a production environment whose database is `prod`.
    let cfg = dir.path().join("deploy.toml");
    std::fs::write(
        &cfg,
        std::fs::read_to_string(&stack.env["DEPLOYKIT_CONFIG"]).unwrap()
            + "\n[environments.dev.database]\nurl_env = \"PROD_URL\"\n[environments.production.database]\nurl_env = \"PROD_URL\"\n",
    )
    .unwrap();
    seed_production(&prod, &cfg);
    let rx = crate::notify::receiver(200).await;
    let run_script = |reports: &str| {
        let mut c = std::process::Command::new("bash");
        c.arg(repo_root().join("scripts/pipeline/refresh.sh"))
            .current_dir(repo_root())
            .envs(stack.env.clone())
            .env("DEPLOYKIT_CONFIG", &cfg)
            .env("ENVIRONMENT", "local")
            .env("BIN", crate::support::bin_dir())
            .env("REPORTS", dir.path().join(reports))
            .env("PROD_URL", &prod.url)
            .env("DEPLOYKIT_ANONYMIZE_KEY", KEY)
            .env("DEPLOYKIT_NOTIFY_WEBHOOK", &rx.url)
            .env("DEPLOYKIT_COLOR", "never");
        c
    };
    let mut c = run_script("ok");
    let out = tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{all}");
    assert!(
        !all.contains(KEY) && !all.contains("s3cr3t-webhook-token"),
        "{all}"
    );
    let staging = |sql: &str| psql(&stack.env["DATABASE_URL"], sql);
    assert_eq!(
        staging("SELECT count(*) FROM accounts WHERE account_id IN ('ACC-1001', 'ACC-1002')"),
        "0"
    );
    assert_eq!(
        staging("SELECT count(*) FROM orders JOIN accounts USING (account_id)"),
        "3"
    );
    let smoke: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("ok/refresh_smoke.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(smoke["outcome"], "pass", "{smoke}");
    let sent = rx.bodies.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0]
            .1
            .contains(":white_check_mark: *weekly staging refresh*"),
        "{}",
        sent[0].1
    );

    // An unclassified production column: nothing changes, maintenance is lifted again, and the
    // team hears why.
    prod.sql("ALTER TABLE accounts ADD COLUMN passport_no text");
    let mut c = run_script("failed");
    let out = tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap();
    assert!(!out.status.success());
    let sent = rx.bodies.lock().unwrap().clone();
    assert_eq!(sent.len(), 2);
    assert!(
        sent[1].1.contains(":x: *weekly staging refresh*")
            && sent[1]
                .1
                .contains("public.accounts.passport_no (text) is not classified"),
        "{}",
        sent[1].1
    );
    let r = stack.run("maintenance_mode", &["--status"]).await;
    let (code, status) = (r.code, r.stdout);
    assert_eq!(code, 0, "{status}");
    assert!(!status.contains("\"maintenance page on"), "{status}");
    let h = stack.health("BLUE_URL").await;
    assert_eq!(
        h["status"], "ok",
        "maintenance lifted after the failed refresh: {h}"
    );
    assert_eq!(
        staging("SELECT count(*) FROM orders JOIN accounts USING (account_id)"),
        "3",
        "staging keeps last week's refresh"
    );
}
