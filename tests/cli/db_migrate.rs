//! db_migrate on a real PostgreSQL, one database per test.

use crate::support::{Run, TestDb, checks_with, config, eventually, repo_root, run};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

struct Fixture {
    _dir: tempfile::TempDir,
    migrations: PathBuf,
    cfg: PathBuf,
    _cfg_dir: tempfile::TempDir,
    db: TestDb,
}

fn fixture(files: &[(&str, &str)], cfg_extra: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let migrations = dir.path().join("migrations");
    std::fs::create_dir(&migrations).unwrap();
    for (name, sql) in files {
        std::fs::write(migrations.join(name), sql).unwrap();
    }
    let (cfg_dir, cfg) = config(&format!(
        "[environments.local]\ndatabase = {{ url_env = \"DATABASE_URL\" }}\n\
         [environments.staging]\ndatabase = {{ url_env = \"DATABASE_URL\" }}\n\
         [environments.staging.migrate]\nbackups_dir = \"{}\"\n\
         [environments.production]\ndatabase = {{ url_env = \"DATABASE_URL\" }}\n{cfg_extra}",
        dir.path().join("backups").display()
    ));
    Fixture {
        _dir: dir,
        migrations,
        cfg,
        _cfg_dir: cfg_dir,
        db: TestDb::new(),
    }
}

impl Fixture {
    fn run(&self, args: &[&str]) -> Run {
        self.run_env(args, &[])
    }
    fn run_env(&self, args: &[&str], envs: &[(&str, &str)]) -> Run {
        let mut a = vec![
            "--config",
            self.cfg.to_str().unwrap(),
            "--migrations",
            self.migrations.to_str().unwrap(),
        ];
        a.extend_from_slice(args);
        let mut e = vec![("DATABASE_URL", self.db.url.as_str())];
        e.extend_from_slice(envs);
        run("db_migrate", &a, &e)
    }
    fn write(&self, name: &str, sql: &str) {
        std::fs::write(self.migrations.join(name), sql).unwrap();
    }
    fn history_rows(&self) -> String {
        self.db.sql("SELECT count(*) FROM deploykit_schema_history")
    }
}

const T1: &str = "CREATE TABLE t1 (id int PRIMARY KEY);";
const T1_DOWN: &str = "DROP TABLE t1;";
const T2: &str = "CREATE TABLE t2 (id int PRIMARY KEY, note text);";
const T2_DOWN: &str = "DROP TABLE t2;";

fn two() -> Vec<(&'static str, &'static str)> {
    vec![
        ("V1.0__create_t1.sql", T1),
        ("V1.0__create_t1_rollback.sql", T1_DOWN),
        ("V1.1__create_t2.sql", T2),
        ("V1.1__create_t2_rollback.sql", T2_DOWN),
    ]
}

#[test]
fn applies_in_version_order_and_verifies() {
    let f = fixture(
        &[
            ("V3.9__a.sql", "CREATE TABLE a (id int);"),
            ("V3.10__b.sql", "ALTER TABLE a ADD COLUMN b int;"),
            (
                "V3.2.2__add_risk_limits_table.sql",
                "CREATE TABLE risk_limits (scope text);",
            ),
            ("README.md", "not a migration, not SQL: ignored"),
        ],
        "",
    );
    let r = f.run(&["migrate"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    // 3.2.2 < 3.9 < 3.10 (numeric, not lexical).
    assert_eq!(
        f.db.sql(
            "SELECT string_agg(version, ',' ORDER BY installed_rank) FROM deploykit_schema_history"
        ),
        "3.2.2,3.9,3.10"
    );
    assert_eq!(f.run(&["verify", "--expect", "3.10"]).code, 0);
    let r = f.run(&["verify", "--expect", "3.9"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stdout
            .contains("highest applied version is 3.10, expected 3.9")
    );
    // The guide's own query keeps working through the view.
    assert_eq!(
        f.db.sql("SELECT version FROM schema_version ORDER BY installed_on DESC LIMIT 1"),
        "3.10"
    );
    // Every row of the history has its own installed_on, even inside one second.
    assert_eq!(
        f.db.sql("SELECT count(DISTINCT installed_on) FROM deploykit_schema_history"),
        "3"
    );
    let r = f.run(&["migrate"]);
    assert!(
        r.stdout.contains("[OK] Nothing to do — schema is at 3.10"),
        "{}",
        r.stdout
    );
    let r = f.run(&["--format", "json", "info"]);
    assert_eq!(checks_with(&r.stdout, "ok").len(), 3);
}

#[test]
fn target_version_stops_there() {
    let f = fixture(&two(), "");
    assert_eq!(f.run(&["migrate", "--version", "1.0"]).code, 0);
    assert_eq!(f.history_rows(), "1");
    let r = f.run(&["migrate", "--version", "9.9"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
}

#[test]
fn bad_names_duplicates_and_orphan_rollbacks_are_config_errors() {
    for (files, expect) in [
        (
            vec![("V3.2.2-add.sql", "select 1;")],
            "not a migration name",
        ),
        (vec![("add_table.sql", "select 1;")], "not a migration name"),
        (
            vec![("V1__a.sql", "select 1;"), ("V1.0__b.sql", "select 1;")],
            "has the same version",
        ),
        (
            vec![("V2__x_rollback.sql", "select 1;")],
            "has no migration beside it",
        ),
    ] {
        let f = fixture(&files, "");
        let r = f.run(&["migrate"]);
        assert_eq!(r.code, 3, "{files:?}: {}", r.stderr);
        assert!(r.stderr.contains(expect), "{files:?}: {}", r.stderr);
    }
}

#[test]
fn syntax_error_rolls_back_the_whole_migration_and_names_file_and_line() {
    let f = fixture(
        &[
            ("V1__ok.sql", T1),
            (
                "V2__broken.sql",
                "CREATE TABLE half (id int);\nINSERT INTO half VALUES (1);\nSELEC oops;\nCREATE TABLE never (id int);\n",
            ),
        ],
        "",
    );
    let r = f.run(&["migrate"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("V2__broken.sql:3: syntax error"),
        "{}",
        r.stdout
    );
    assert_eq!(
        f.db.sql("SELECT to_regclass('half') IS NULL"),
        "t",
        "half-applied migration left a table"
    );
    assert_eq!(f.history_rows(), "1");
}

#[test]
fn unreachable_database_is_exit_4_and_the_password_never_shows() {
    let f = fixture(&two(), "");
    let r = f.run_env(
        &["migrate"],
        &[("DATABASE_URL", "postgres://app:Pw-5ecret-99@127.0.0.1:1/x")],
    );
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(r.stderr.contains("cannot reach PostgreSQL"), "{}", r.stderr);
    assert!(!r.all().contains("Pw-5ecret-99"), "{}", r.all());
}

#[test]
fn password_in_a_working_url_is_never_printed() {
    let f = fixture(&two(), "");
    // Trust auth ignores the password, so the URL works and we can look at every output.
    let url =
        f.db.url
            .replacen("postgres@", "postgres:Hidden-Pass-77@", 1);
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("j.xml");
    let r = f.run_env(
        &[
            "migrate",
            "-vv",
            "--format",
            "json",
            "--junit",
            junit.to_str().unwrap(),
        ],
        &[("DATABASE_URL", &url)],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.all().contains("Hidden-Pass-77"));
    assert!(
        !std::fs::read_to_string(junit)
            .unwrap()
            .contains("Hidden-Pass-77")
    );
}

#[test]
fn no_wait_exits_5_while_another_run_holds_the_lock() {
    let f = fixture(&two(), "");
    let mut holder = std::process::Command::new("psql")
        .args([
            f.db.url.as_str(),
            "-qAtc",
            &format!(
                "SELECT pg_advisory_lock({}); SELECT pg_sleep(5)",
                deploykit::migrate::run::LOCK_KEY
            ),
        ])
        .spawn()
        .unwrap();
    eventually(
        "the holder taking the lock",
        Duration::from_secs(10),
        || {
            (f.db.sql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())") != "0").then_some(())
        },
    );
    let r = f.run(&["migrate", "--no-wait"]);
    holder.kill().ok();
    holder.wait().ok();
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(
        r.stderr.contains("holds the migration lock"),
        "{}",
        r.stderr
    );
    assert_eq!(
        f.db.sql("SELECT to_regclass('deploykit_schema_history') IS NULL"),
        "t"
    );
}

#[test]
fn eight_concurrent_runs_apply_exactly_once() {
    let mut files = vec![];
    let bodies: Vec<(String, String)> = (1..=6)
        .map(|i| {
            (
                format!("V{i}__step_{i}.sql"),
                format!("CREATE TABLE s{i} (id int); SELECT pg_sleep(0.05);"),
            )
        })
        .collect();
    for (n, b) in &bodies {
        files.push((n.as_str(), b.as_str()));
    }
    let f = fixture(&files, "");
    let runs: Vec<Run> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|_| s.spawn(|| f.run(&["--format", "json", "migrate"])))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut appliers = 0;
    for r in &runs {
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
        let ok = checks_with(&r.stdout, "ok");
        if ok.iter().any(|n| n.starts_with("V1 ")) {
            appliers += 1;
            assert_eq!(ok.len(), 6);
        } else {
            assert_eq!(ok, vec!["Nothing to do"], "{}", r.stdout);
        }
    }
    assert_eq!(appliers, 1);
    assert_eq!(f.history_rows(), "6");
}

#[test]
fn blocked_migration_times_out_retries_and_never_stalls_the_application() {
    let f = fixture(
        &[(
            "V1__base.sql",
            "CREATE TABLE trades (id int); INSERT INTO trades VALUES (1);",
        )],
        "",
    );
    assert_eq!(f.run(&["migrate"]).code, 0);
    f.write("V2__alter.sql", "ALTER TABLE trades ADD COLUMN venue text;");
    // A long transaction holds a lock on the table for 2.5 s.
    let mut blocker = std::process::Command::new("psql")
        .args([
            f.db.url.as_str(),
            "-qAt",
            "-c",
            "BEGIN; SELECT count(*) FROM trades; SELECT pg_sleep(2.5); COMMIT;",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    eventually(
        "the blocker holding trades",
        Duration::from_secs(10),
        || {
            (f.db.sql("SELECT count(*) FROM pg_locks WHERE relation = 'trades'::regclass AND granted AND pid <> pg_backend_pid()") != "0").then_some(())
        },
    );
    let lock_timeout = Duration::from_millis(300);
    let (r, app_worst) = std::thread::scope(|s| {
        let mig = s.spawn(|| f.run(&["--format", "json", "migrate", "--lock-timeout", "300ms"]));
        // The application keeps reading the table while the migration tries.
        let app = s.spawn(|| {
            let mut worst = Duration::ZERO;
            let end = Instant::now() + Duration::from_millis(2500);
            while Instant::now() < end {
                let t = Instant::now();
                f.db.sql("SELECT count(*) FROM trades");
                // psql start-up is part of each sample; subtract a floor measured the same way.
                worst = worst.max(t.elapsed());
            }
            worst
        });
        (mig.join().unwrap(), app.join().unwrap())
    });
    blocker.wait().unwrap();
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let data = &v["checks"][0]["data"];
    assert!(data["retries"].as_u64().unwrap() >= 1, "{data}");
    assert!(data["lock_wait_ms"].as_i64().unwrap() >= 300, "{data}");
    assert!(
        data["max_blocked_ms"].as_i64().unwrap() > 0,
        "the sampler saw the queued reads: {data}"
    );
    // Bound: lock_timeout + sampling interval + psql's own start-up (~50 ms on this machine).
    assert!(
        app_worst < lock_timeout + Duration::from_millis(50) + Duration::from_millis(400),
        "an application query waited {app_worst:?}"
    );
    assert_eq!(f.db.sql("SELECT count(*) FROM information_schema.columns WHERE table_name = 'trades' AND column_name = 'venue'"), "1");
}

#[test]
fn kill_9_mid_migration_leaves_a_consistent_history() {
    let f = fixture(
        &[(
            "V1__slow.sql",
            "CREATE TABLE slow (id int); SELECT pg_sleep(3);",
        )],
        "",
    );
    let mut child = std::process::Command::new(crate::support::bin("db_migrate"))
        .args([
            "--config",
            f.cfg.to_str().unwrap(),
            "--migrations",
            f.migrations.to_str().unwrap(),
            "migrate",
        ])
        .env("DATABASE_URL", &f.db.url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed mid-migration: while its file's statements run.
    eventually("the migration running", Duration::from_secs(10), || {
        (f.db.sql("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state = 'active' AND query LIKE '%pg\\_sleep(3)%' AND pid <> pg_backend_pid()") != "0").then_some(())
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // The server notices the dead client and aborts its transaction; the next run applies cleanly
    // (exit 5 until then: the dead client's session still holds the migration lock).
    let r = eventually(
        "the lock freed by the server",
        Duration::from_secs(10),
        || {
            let r = f.run(&["migrate", "--no-wait"]);
            (r.code != 5).then_some(r)
        },
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(f.history_rows(), "1");
    assert_eq!(f.db.sql("SELECT to_regclass('slow') IS NOT NULL"), "t");
}

#[test]
fn validate_names_a_changed_file_and_migrate_refuses() {
    let f = fixture(&two(), "");
    assert_eq!(f.run(&["migrate"]).code, 0);
    assert_eq!(f.run(&["validate"]).code, 0);
    f.write(
        "V1.0__create_t1.sql",
        "CREATE TABLE t1 (id bigint PRIMARY KEY);",
    );
    let r = f.run(&["validate"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stdout
            .contains("V1.0__create_t1.sql unchanged since applied"),
        "{}",
        r.stdout
    );
    let r = f.run(&["migrate"]);
    assert_eq!(r.code, 5, "{}", r.stderr);
}

#[test]
fn rollback_newest_first_and_refuses_without_a_script() {
    let f = fixture(&two(), "");
    assert_eq!(f.run(&["migrate"]).code, 0);
    let r = f.run(&["rollback", "--to-version", "0"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(
        lines[0].contains("V1.1 create_t2") && lines[1].contains("V1.0 create_t1"),
        "{}",
        r.stdout
    );
    assert_eq!(
        f.db.sql("SELECT to_regclass('t1') IS NULL AND to_regclass('t2') IS NULL"),
        "t"
    );
    assert_eq!(f.db.sql("SELECT count(*) FROM schema_version"), "0");
    // Re-apply after rollback works.
    assert_eq!(f.run(&["migrate"]).code, 0);
    // Missing rollback: refused, nothing rolled back.
    std::fs::remove_file(f.migrations.join("V1.0__create_t1_rollback.sql")).unwrap();
    let r = f.run(&["rollback", "--to-version", "0"]);
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(
        r.stderr.contains("no rollback script for V1.0__create_t1"),
        "{}",
        r.stderr
    );
    assert_eq!(f.db.sql("SELECT to_regclass('t2') IS NOT NULL"), "t");
    // Production needs --confirm.
    let r = f.run(&["-e", "production", "rollback", "--to-version", "1.0"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--confirm"));
    assert_eq!(
        f.run(&[
            "-e",
            "production",
            "rollback",
            "--to-version",
            "1.0",
            "--confirm"
        ])
        .code,
        0
    );
    assert_eq!(f.db.sql("SELECT to_regclass('t2') IS NULL"), "t");
}

#[test]
fn lint_flags_unsafe_ddl_and_missing_rollbacks() {
    let f = fixture(
        &[
            (
                "V1__base.sql",
                "CREATE TABLE big (id int);\nCREATE INDEX big_id ON big (id);\n",
            ),
            ("V1__base_rollback.sql", "DROP TABLE big;"),
            (
                "V2__unsafe.sql",
                "CREATE INDEX big_id2 ON big (id);\nALTER TABLE big ADD COLUMN c int NOT NULL;\nALTER TABLE big ALTER COLUMN id TYPE bigint;\n\
                 ALTER TABLE big ADD CONSTRAINT big_fk FOREIGN KEY (id) REFERENCES other (id);\n\
                 ALTER TABLE big ALTER COLUMN c SET NOT NULL;\nCLUSTER big USING big_id;\nSET lock_timeout = 0;\n",
            ),
            (
                "V3__safe.sql",
                "-- deploykit: no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS big_id3 ON big (id);\n",
            ),
            // A statement the linter cannot read is a finding, never a pass; a no-transaction
            // file that cannot be re-run after a partial failure is one too.
            (
                "V4__odd.sql",
                "-- deploykit: no-transaction\nCREATE INDEX CONCURRENTLY big_id4 ON big (id);\nDELETE FROM big WHERE;\n",
            ),
            ("V4__odd_rollback.sql", "DROP INDEX big_id4;"),
            ("V3__safe_rollback.sql", "DROP INDEX big_id3;"),
        ],
        "",
    );
    let r = f.run(&["--format", "json", "lint"]);
    assert_eq!(r.code, 1);
    assert_eq!(
        checks_with(&r.stdout, "fail"),
        vec!["V2__unsafe.sql", "V4__odd.sql"]
    );
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let rules = |i: usize| -> Vec<String> {
        v["checks"][i]["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| format!("{}:{}", x["line"], x["rule"].as_str().unwrap()))
            .collect()
    };
    assert_eq!(
        rules(1),
        vec![
            "1:require-concurrent-index-creation",
            "1:missing-rollback",
            "2:adding-required-field",
            "3:changing-column-type",
            "4:constraint-missing-not-valid",
            "4:adding-foreign-key-constraint",
            "5:adding-not-nullable-field",
            "6:vacuum-full-or-cluster",
            "7:timeout-override",
        ]
    );
    assert_eq!(
        rules(3),
        vec![
            "2:prefer-robust-stmts",
            "3:unparsed",
            "3:no-transaction-statement"
        ]
    );
    // The shipped migrations are clean.
    let r = run(
        "db_migrate",
        &[
            "--migrations",
            repo_root().join("migrations").to_str().unwrap(),
            "--config",
            f.cfg.to_str().unwrap(),
            "lint",
        ],
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.stdout);
}

#[test]
fn rehearse_round_trips_and_catches_a_leaky_rollback() {
    let f = fixture(&two(), "");
    let r = f.run(&["rehearse"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("V1.1 round trip — up → rollback → up leaves the same schema")
    );
    // The rehearsal ran on a scratch database, not ours.
    assert_eq!(
        f.db.sql("SELECT to_regclass('deploykit_schema_history') IS NULL"),
        "t"
    );
    f.write(
        "V1.1__create_t2_rollback.sql",
        "ALTER TABLE t2 DROP COLUMN note;",
    );
    let r = f.run(&["rehearse"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stdout.contains("rollback does not restore the schema"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("+ column t2.id"), "{}", r.stdout);
}

#[test]
fn shipped_migrations_rehearse_cleanly() {
    let f = fixture(&[], "");
    let r = run(
        "db_migrate",
        &[
            "--config",
            f.cfg.to_str().unwrap(),
            "--migrations",
            repo_root().join("migrations").to_str().unwrap(),
            "rehearse",
        ],
        &[("DATABASE_URL", &f.db.url)],
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("V3.2.2 round trip"));
}

#[test]
fn backup_is_verified_and_staging_migrate_takes_one_first() {
    let f = fixture(&two(), "");
    let dir = tempfile::tempdir().unwrap();
    let r = f.run(&[
        "--format",
        "json",
        "backup",
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let data = &v["checks"][0]["data"];
    let path = Path::new(data["path"].as_str().unwrap());
    assert!(
        path.file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("pre_deploy_")
    );
    assert!(data["bytes"].as_u64().unwrap() > 0);
    assert_eq!(data["sha256"].as_str().unwrap().len(), 64);
    // A corrupt dump is caught by pg_restore --list.
    std::fs::write(path, b"not a dump").unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert!(
        rt.block_on(deploykit::migrate::backup::verify(
            path,
            Duration::from_secs(10)
        ))
        .is_err()
    );

    let r = f.run(&["-e", "staging", "migrate"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("[OK] Backup taken and verified"),
        "{}",
        r.stdout
    );
    let r = f.run(&["-e", "staging", "rollback", "--to-version", "0"]);
    assert_eq!(r.code, 0);
    let r = f.run(&[
        "-e",
        "staging",
        "migrate",
        "--no-backup",
        "emergency hotfix INC-7",
    ]);
    assert!(!r.stdout.contains("Backup taken"));
    assert!(r.stdout.contains("backup skipped: emergency hotfix INC-7"));
}

#[test]
fn no_transaction_file_builds_concurrently_and_cleans_an_invalid_index() {
    let f = fixture(
        &[(
            "V1__base.sql",
            "CREATE TABLE u (v int); INSERT INTO u VALUES (1), (1);",
        )],
        "",
    );
    assert_eq!(f.run(&["migrate"]).code, 0);
    f.write(
        "V2__uniq.sql",
        "-- deploykit: no-transaction\nCREATE UNIQUE INDEX CONCURRENTLY u_v ON u (v);\n",
    );
    let r = f.run(&["migrate"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stdout.contains("V2__uniq.sql:2:"), "{}", r.stdout);
    // No INVALID index left behind, history unchanged.
    assert_eq!(
        f.db.sql("SELECT count(*) FROM pg_class WHERE relname = 'u_v'"),
        "0"
    );
    assert_eq!(f.history_rows(), "1");
    f.db.sql("DELETE FROM u WHERE ctid IN (SELECT ctid FROM u LIMIT 1)");
    assert_eq!(f.run(&["migrate"]).code, 0);
    assert_eq!(
        f.db.sql("SELECT indisvalid FROM pg_index WHERE indexrelid = 'u_v'::regclass"),
        "t"
    );
}

/// Files that used to panic, be skipped without a word, or be recorded as applied while changing
/// nothing: each is a configuration error (exit 3) naming the file and what to do, for lint and
/// migrate alike, and nothing is applied.
#[test]
fn odd_files_are_clear_errors_never_panics_or_silent_skips() {
    for (name, sql, says) in [
        (
            "V99999999999999999999999__x.sql",
            "SELECT 1;",
            "larger than",
        ),
        (
            "V2__upper.SQL",
            "CREATE TABLE upper_t (id int);",
            "lower-case `.sql`",
        ),
        ("V2__empty.sql", "", "no SQL statement"),
        // Transaction control inside the runner's transaction: COMMIT used to commit half the
        // file ("nothing applied" while its table stayed), ROLLBACK to record a table that
        // never existed as applied.
        (
            "V2__commit.sql",
            "CREATE TABLE half_t (id int);\nCOMMIT;\nCREATE TABLE other_t (id int);",
            "V2__commit.sql:2",
        ),
        (
            "V2__rollback_inside.sql",
            "CREATE TABLE gone_t (id int);\n-- undo\nROLLBACK;",
            "`ROLLBACK` in a migration that runs in one transaction",
        ),
        (
            "V2__begin.sql",
            "BEGIN;\nCREATE TABLE b_t (id int);\nEND;",
            "no-transaction",
        ),
        (
            "V2__comments.sql",
            "-- nothing yet\n-- later\n",
            "no SQL statement",
        ),
    ] {
        let f = fixture(
            &[
                ("V1__base.sql", "CREATE TABLE base_t (id int);"),
                (name, sql),
            ],
            "",
        );
        for cmd in ["lint", "migrate"] {
            let r = f.run(&[cmd]);
            assert_eq!(r.code, 3, "{name} {cmd}: {}", r.all());
            assert!(
                r.stderr.contains(name) && r.stderr.contains(says),
                "{name} {cmd}: {}",
                r.stderr
            );
            assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
        }
        assert_eq!(
            f.db.sql("SELECT to_regclass('base_t') IS NULL"),
            "t",
            "{name}: nothing applied"
        );
    }
}

/// ROLLBACK TO SAVEPOINT stays inside the transaction, and a no-transaction file may hold its
/// own BEGIN … COMMIT: both run.
#[test]
fn savepoints_and_explicit_blocks_in_no_transaction_files_still_run() {
    let f = fixture(
        &[
            (
                "V1__sp.sql",
                "CREATE TABLE sp_t (id int);\nSAVEPOINT a;\nINSERT INTO sp_t VALUES (1);\nROLLBACK TO SAVEPOINT a;",
            ),
            (
                "V2__block.sql",
                "-- deploykit: no-transaction\nBEGIN;\nCREATE TABLE blk_t (id int);\nCOMMIT;",
            ),
        ],
        "",
    );
    let r = f.run(&["migrate"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(f.db.sql("SELECT count(*) FROM sp_t"), "0");
    assert_eq!(f.db.sql("SELECT to_regclass('blk_t') IS NOT NULL"), "t");
}

/// A no-transaction file that fails part-way says statement by statement what ran (and stays),
/// and the history holds a failed row saying so — never "nothing was applied".
#[test]
fn a_no_transaction_file_failing_part_way_says_what_ran() {
    let f = fixture(
        &[
            ("V1__base.sql", "CREATE TABLE nt (v int);"),
            (
                "V2__idx.sql",
                "-- deploykit: no-transaction\nCREATE INDEX CONCURRENTLY nt_a ON nt (v);\n\nCREATE INDEX CONCURRENTLY nt_b ON nt (no_such_column);\nCREATE INDEX CONCURRENTLY nt_c ON nt (v);\n",
            ),
        ],
        "",
    );
    let r = f.run(&["migrate", "--format", "json"]);
    assert_eq!(r.code, 1, "{}", r.all());
    let msg = crate::support::check_message(&r.stdout, "V2 idx");
    assert!(msg.contains("V2__idx.sql:4:"), "{msg}");
    assert!(msg.contains("statement 2 of 3 failed"), "{msg}");
    assert!(msg.contains("1–1 (line 2) ran and stay applied"), "{msg}");
    assert!(
        !r.stdout.contains("nothing of this migration was applied"),
        "{}",
        r.stdout
    );
    assert_eq!(f.db.sql("SELECT to_regclass('nt_a') IS NOT NULL"), "t");
    assert_eq!(f.db.sql("SELECT to_regclass('nt_c') IS NULL"), "t");
    assert_eq!(
        f.db.sql("SELECT success || ' ' || (detail LIKE '%statement 2 of 3 failed%') FROM deploykit_schema_history WHERE version = '2'"),
        "false true"
    );
    // Not applied as far as the tools are concerned: fixed, it runs (idempotently) again.
    f.write(
        "V2__idx.sql",
        "-- deploykit: no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS nt_a ON nt (v);\n\nCREATE INDEX CONCURRENTLY nt_b ON nt (v);\nCREATE INDEX CONCURRENTLY nt_c ON nt (v);\n",
    );
    let r = f.run(&["migrate"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(
        f.db.sql("SELECT version FROM schema_version ORDER BY installed_rank DESC LIMIT 1"),
        "2"
    );
}

/// `lint` of a 50 MB file is linear (it used to be quadratic: > 15 min) and a signal stops it
/// at once with the documented code.
#[test]
fn lint_of_a_huge_file_is_interruptible() {
    let stmt =
        "CREATE TABLE IF NOT EXISTS t (id bigint PRIMARY KEY, name text NOT NULL DEFAULT 'x;y');\n";
    let f = fixture(
        &[("V1__huge.sql", &stmt.repeat(50_000_000 / stmt.len()))],
        "",
    );
    for (signal, code) in [("-INT", 130), ("-TERM", 143)] {
        let mut cmd = std::process::Command::new(crate::support::bin("db_migrate"));
        cmd.args([
            "--config",
            f.cfg.to_str().unwrap(),
            "--migrations",
            f.migrations.to_str().unwrap(),
            "lint",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
        let child = cmd.spawn().unwrap();
        // Signalled once it has read the file (its read count passes the file's size): inside
        // the lint, where signals used to be ignored.
        let io = format!("/proc/{}/io", child.id());
        crate::support::eventually(
            "db_migrate reads the 50 MB file",
            Duration::from_secs(30),
            || {
                let text = std::fs::read_to_string(&io).ok()?;
                let read: u64 = text
                    .lines()
                    .find_map(|l| l.strip_prefix("rchar: "))?
                    .parse()
                    .ok()?;
                (read > 49_000_000).then_some(())
            },
        );
        crate::support::signal(signal, &child.id().to_string());
        let sent = Instant::now();
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(code), "{signal}");
        eprintln!("{signal}: exited {:?} after the signal", sent.elapsed());
    }
}

/// Staging is in place (no load balancers): its rollback stage redeploys a release instead of
/// switching colours, and the schema step runs — it used to be skipped when `cutover rollback`
/// exited 3 on this topology. A blue-green rollback there is still refused (exit 3), loudly.
/// `db_migrate plan`: a migration's own declaration decides, else lint — the maintenance window
/// only when a pending migration needs it; nothing pending needs nothing. Twice in a row (after
/// migrating) it answers "no".
#[test]
fn plan_says_whether_pending_migrations_need_the_maintenance_window() {
    let answer = |r: &Run| -> (bool, String) {
        let v: serde_json::Value =
            serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout));
        let c = v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "Maintenance needed")
            .unwrap()
            .clone();
        (
            c["data"]["needs_maintenance"].as_bool().unwrap(),
            c["message"].as_str().unwrap().to_string(),
        )
    };
    let f = fixture(&two(), "");
    let r = f.run(&["-e", "local", "plan", "--format", "json"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let (need, m) = answer(&r);
    assert!(!need, "{m}");
    assert!(m.contains("2 pending migration(s), all online-safe"), "{m}");
    // Injected: an index built without CONCURRENTLY locks the table's writes.
    f.write("V1.2__index_t1.sql", "CREATE INDEX t1_id ON t1 (id);");
    f.write("V1.2__index_t1_rollback.sql", "DROP INDEX t1_id;");
    let r = f.run(&["-e", "local", "plan", "--format", "json"]);
    let (need, m) = answer(&r);
    assert!(need, "{m}");
    assert!(m.contains("yes: 1 of 3 pending need it (V1.2)"), "{m}");
    assert!(
        crate::support::check_message(&r.stdout, "V1.2 index_t1")
            .contains("needs maintenance: lint: "),
        "{}",
        r.stdout
    );
    // Its author declares it online (a tiny table): the declaration wins; and one declared to
    // need the window gets it whatever lint says.
    f.write(
        "V1.2__index_t1.sql",
        "-- deploykit: online\nCREATE INDEX t1_id ON t1 (id);",
    );
    f.write(
        "V1.1__create_t2.sql",
        &format!("-- deploykit: maintenance\n{T2}"),
    );
    let r = f.run(&["-e", "local", "plan", "--format", "json"]);
    let (need, m) = answer(&r);
    assert!(need && m.contains("(V1.1)"), "{m}");
    assert!(
        crate::support::check_message(&r.stdout, "V1.2 index_t1").contains("online-safe: declared"),
        "{}",
        r.stdout
    );
    // Applied, nothing is pending: no window.
    assert_eq!(f.run(&["-e", "local", "migrate"]).code, 0);
    for _ in 0..2 {
        let r = f.run(&["-e", "local", "plan", "--format", "json"]);
        let (need, m) = answer(&r);
        assert!(!need && m == "no: nothing pending", "{m}");
    }
}

#[test]
fn staging_rollback_rolls_the_schema_back_on_an_in_place_topology() {
    let f = fixture(&two(), "");
    assert_eq!(f.run(&["-e", "staging", "migrate"]).code, 0);
    assert_eq!(f.db.sql("SELECT to_regclass('t2') IS NOT NULL"), "t");
    let reports = tempfile::tempdir().unwrap();
    let stage = |vars: &[(&str, &str)]| {
        let out = std::process::Command::new("bash")
            .arg(repo_root().join("scripts/pipeline/rollback.sh"))
            .current_dir(f._dir.path())
            .env("BIN", crate::support::bin_dir())
            .env("ENVIRONMENT", "staging")
            .env("REPORTS", reports.path())
            .env("DEPLOYKIT_CONFIG", &f.cfg)
            .env("DATABASE_URL", &f.db.url)
            .envs(vars.iter().copied())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    // Injected: the blue-green path on staging's topology — refused, schema untouched.
    let (code, err) = stage(&[("TO_VERSION", "1.0")]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("load_balancers is empty"), "{err}");
    assert_eq!(f.db.sql("SELECT to_regclass('t2') IS NOT NULL"), "t");
    // The schema alone (the code path is tested on the fleet: playbooks/rollback.yml), said so.
    let (code, err) = stage(&[("ROLLBACK", "schema"), ("TO_VERSION", "1.0")]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("rolling back the schema only"), "{err}");
    assert_eq!(f.db.sql("SELECT to_regclass('t2') IS NULL"), "t");
    assert_eq!(f.db.sql("SELECT to_regclass('t1') IS NOT NULL"), "t");
    // A second run is a no-op, not a failure.
    let (code, err) = stage(&[("ROLLBACK", "schema"), ("TO_VERSION", "1.0")]);
    assert_eq!(code, 0, "{err}");
    // Schema only without a schema version to go to is a usage error.
    let (code, err) = stage(&[("ROLLBACK", "schema")]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("needs TO_VERSION"), "{err}");
    // A typo in ROLLBACK is a usage error before anything runs.
    let (code, err) = stage(&[("ROLLBACK", "colour"), ("TO_VERSION", "1.0")]);
    assert_eq!(code, 2, "{err}");
}
