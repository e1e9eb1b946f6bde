//! Large-table migrations (issue 22, guide §7) as a deploy runs them: a batched backfill over a
//! million rows killed with SIGKILL and resumed; a shadow-table change aborted after each of its
//! steps, killed and resumed, run while a client writes, swapped back and run again; a swap
//! held off by a long transaction.

use crate::support::{Run, TestDb, bin, checks_with, config, eventually, run, signal};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

struct Fx {
    _dir: tempfile::TempDir,
    migrations: PathBuf,
    _cfg_dir: tempfile::TempDir,
    cfg: PathBuf,
    db: TestDb,
}

/// A migrations directory with `files`, a config whose local environment uses `db`.
fn fx(files: &[(&str, &str)], migrate: &str) -> Fx {
    let dir = tempfile::tempdir().unwrap();
    let migrations = dir.path().join("sql");
    std::fs::create_dir(&migrations).unwrap();
    for (name, sql) in files {
        std::fs::write(migrations.join(name), sql).unwrap();
    }
    let (cfg_dir, cfg) = config(&format!(
        "[environments.local]\ndatabase = {{ url_env = \"DATABASE_URL\" }}\n[environments.local.migrate]\n{migrate}\n"
    ));
    Fx {
        _dir: dir,
        migrations,
        _cfg_dir: cfg_dir,
        cfg,
        db: TestDb::new(),
    }
}

impl Fx {
    fn args<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut a = vec![
            "--config",
            self.cfg.to_str().unwrap(),
            "--migrations",
            self.migrations.to_str().unwrap(),
            "--format",
            "json",
        ];
        a.extend_from_slice(args);
        a
    }
    fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, &[])
    }
    fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut e = vec![("DATABASE_URL", self.db.url.as_str())];
        e.extend_from_slice(env);
        run("db_migrate", &self.args(args), &e)
    }
    /// `db_migrate migrate` in the background (to be killed or raced).
    fn spawn(&self, env: &[(&str, &str)]) -> std::process::Child {
        let mut cmd = Command::new(bin("db_migrate"));
        cmd.args(self.args(&["migrate"]))
            .env("DATABASE_URL", &self.db.url)
            .env("DEPLOYKIT_COLOR", "never")
            .env_remove("DEPLOYKIT_FAULT_KILL_AFTER")
            .env_remove("DEPLOYKIT_FAULT_FAIL_AFTER")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.spawn().unwrap()
    }
    fn write(&self, name: &str, sql: &str) {
        std::fs::write(self.migrations.join(name), sql).unwrap();
    }
}

const ORDERS: &str = "CREATE TABLE orders (id bigserial PRIMARY KEY, price numeric(12,4) NOT NULL, quantity int NOT NULL, n int NOT NULL DEFAULT 0);\n";

fn history_versions(db: &TestDb) -> String {
    db.sql("SELECT string_agg(version, ',' ORDER BY installed_rank) FROM deploykit_schema_history WHERE success AND rolled_back_on IS NULL")
}

/// A million rows backfilled in keyset batches; SIGKILL once a fifth is done. The history does
/// not hold the migration, no row was touched twice, info names it unfinished, the dry run says
/// where it resumes; the re-run continues and every row is updated exactly once; a third run
/// has nothing to do. Lint, connected, then calls a plain UPDATE of this table a big-table
/// rewrite (unconnected: a warning).
#[test]
fn backfill_killed_mid_way_resumes_and_updates_every_row_exactly_once() {
    let f = fx(
        &[
            ("V1__orders.sql", ORDERS),
            ("V1__orders_rollback.sql", "DROP TABLE orders;\n"),
            (
                "V2__count_each_row.sql",
                "-- deploykit: batch table=orders key=id size=20000 pause=0ms\n-- n counts how often a row was updated: exactly once, even across a kill\nUPDATE orders SET n = n + 1\n WHERE id > ${batch.from} AND id <= ${batch.to};\n",
            ),
            (
                "V2__count_each_row_rollback.sql",
                "-- deploykit: batch table=orders\nUPDATE orders SET n = 0 WHERE id IN (SELECT id FROM orders WHERE n <> 0 LIMIT ${batch.size});\n",
            ),
        ],
        "",
    );
    let r = f.run(&["migrate", "--version", "1"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    f.db.sql("INSERT INTO orders (price, quantity) SELECT 1.5, g % 100 FROM generate_series(1, 1000000) g; ANALYZE orders");

    let mut child = f.spawn(&[]);
    let pid = child.id().to_string();
    eventually(
        "a fifth of the batches committed",
        Duration::from_secs(120),
        || {
            let done: i64 =
                f.db.sql("SELECT coalesce(max(rows_done), 0) FROM deploykit_online_progress")
                    .parse()
                    .unwrap_or(0);
            (done >= 200_000).then_some(())
        },
    );
    signal("-KILL", &pid);
    let _ = child.wait();

    assert_eq!(
        history_versions(&f.db),
        "1",
        "killed: not recorded as applied"
    );
    let counts = f.db.sql(
        "SELECT count(*) FILTER (WHERE n = 1) || ' ' || count(*) FILTER (WHERE n > 1) FROM orders",
    );
    let (once, twice) = counts.split_once(' ').unwrap();
    let once: i64 = once.parse().unwrap();
    assert!((200_000..1_000_000).contains(&once), "{counts}");
    assert_eq!(twice, "0");
    let done: i64 =
        f.db.sql("SELECT rows_done FROM deploykit_online_progress")
            .parse()
            .unwrap();
    assert!(
        done <= once,
        "progress {done} counts only committed batches ({once} rows updated)"
    );
    let info = f.run(&["info"]);
    assert!(
        checks_with(&info.stdout, "warn").contains(&"V2__count_each_row.sql".to_string()),
        "{}",
        info.stdout
    );
    let dry = f.run(&["--dry-run", "migrate"]);
    assert!(
        dry.stdout.contains("resumes at phase batch with"),
        "{}",
        dry.stdout
    );
    assert!(
        dry.stdout.contains("≈1000000 rows in orders"),
        "{}",
        dry.stdout
    );

    let r = f.run(&["migrate"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("resuming after"), "{}", r.stderr);
    assert_eq!(
        f.db.sql("SELECT count(*) FILTER (WHERE n <> 1) FROM orders"),
        "0"
    );
    assert_eq!(f.db.sql("SELECT count(*) FROM orders"), "1000000");
    assert_eq!(history_versions(&f.db), "1,2");
    assert_eq!(
        f.db.sql("SELECT count(*) FROM deploykit_online_progress"),
        "0"
    );
    let again = f.run(&["migrate"]);
    assert_eq!(
        checks_with(&again.stdout, "ok"),
        ["Nothing to do"],
        "{}",
        again.stdout
    );

    // Its rollback is a batch too (the guide's LIMIT form), run until it touches no row.
    let back = f.run(&["rollback", "--to-version", "1"]);
    assert_eq!(back.code, 0, "{}{}", back.stdout, back.stderr);
    assert_eq!(
        f.db.sql("SELECT count(*) FILTER (WHERE n <> 0) FROM orders"),
        "0"
    );

    // Lint knows this table is big.
    f.write("V3__reset_in_one_go.sql", "UPDATE orders SET n = 0;\n");
    f.write("V3__reset_in_one_go_rollback.sql", "SELECT 1;\n");
    let lint = f.run(&["lint"]);
    assert_eq!(lint.code, 1, "{}", lint.stdout);
    assert!(lint.stdout.contains("big-table-rewrite"), "{}", lint.stdout);
    assert!(
        lint.stdout.contains("-- deploykit: batch table=orders"),
        "{}",
        lint.stdout
    );
    let unconnected = run("db_migrate", &f.args(&["lint"]), &[]);
    assert_eq!(unconnected.code, 0, "{}", unconnected.stdout);
    assert!(
        unconnected.stdout.contains("unbounded-write"),
        "{}",
        unconnected.stdout
    );
}

fn shadow_files() -> Vec<(&'static str, &'static str)> {
    vec![
        ("V1__orders.sql", ORDERS),
        ("V1__orders_rollback.sql", "DROP TABLE orders;\n"),
        (
            "V2__widen_price.sql",
            "-- deploykit: shadow table=orders size=2000 pause=0ms\nALTER TABLE ${shadow} ALTER COLUMN price TYPE numeric(20,8);\nALTER TABLE ${shadow} ADD COLUMN venue text NOT NULL DEFAULT 'XLON';\n",
        ),
    ]
}

/// The table as a client sees it: column types, row count and a checksum of every row, its
/// triggers, whether a shadow or old table or progress row is left.
fn state(db: &TestDb) -> String {
    let table = db.sql(
        "SELECT (SELECT string_agg(column_name || ' ' || data_type || coalesce('(' || numeric_precision || ',' || numeric_scale || ')', ''), ', ' ORDER BY ordinal_position)
                   FROM information_schema.columns WHERE table_name = 'orders')
             || ' | ' || (SELECT count(*) || ' rows ' || sum(hashtext(o::text)) FROM orders o)
             || ' | triggers: ' || coalesce((SELECT string_agg(tgname, ',') FROM pg_trigger WHERE NOT tgisinternal), 'none')
             || ' | shadow: ' || (to_regclass('orders_shadow') IS NOT NULL)
             || ' | old: ' || (to_regclass('orders_old') IS NOT NULL)",
    );
    let progress = if db.sql("SELECT to_regclass('deploykit_online_progress') IS NULL") == "t" {
        "0".to_string()
    } else {
        db.sql("SELECT count(*) FROM deploykit_online_progress")
    };
    format!("{table} | progress: {progress}")
}

/// Aborted after each step (an injected failure, the path a real error takes), the original
/// table serves exactly as before, without triggers, shadow or progress; the migration is not
/// recorded. Killed after the copy, a re-run resumes; killed after the triggers, `cleanup
/// --abandon` removes them. Run while a client inserts, updates and deletes: verified, swapped,
/// every write in the new table and synced back to the old; swapped back (rollback) and applied
/// again; `cleanup` drops the old table and the sequence survives. Rehearse round-trips it.
#[test]
fn shadow_change_aborts_at_every_step_resumes_after_a_kill_and_swaps_under_writes() {
    let f = fx(&shadow_files(), "");
    let rehearse = f.run(&["rehearse"]);
    assert_eq!(rehearse.code, 0, "{}{}", rehearse.stdout, rehearse.stderr);
    let r = f.run(&["migrate", "--version", "1"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    f.db.sql("INSERT INTO orders (price, quantity) SELECT g / 7.0, g % 100 FROM generate_series(1, 50000) g");
    let plan = f.run(&["plan"]);
    assert!(
        plan.stdout
            .contains("online-safe: shadow-table change of orders"),
        "{}",
        plan.stdout
    );
    let before = state(&f.db);
    assert!(before.contains("price numeric(12,4)"), "{before}");

    for step in ["create", "triggers", "copy", "verify"] {
        let point = format!("shadow:{step}");
        let r = f.run_with(&["migrate"], &[("DEPLOYKIT_FAULT_FAIL_AFTER", &point)]);
        assert_eq!(r.code, 1, "{step}: {}{}", r.stdout, r.stderr);
        assert!(
            r.stdout.contains("injected failure after shadow:"),
            "{}",
            r.stdout
        );
        assert_eq!(state(&f.db), before, "aborted after {step}");
        assert_eq!(history_versions(&f.db), "1");
    }

    // Killed after the triggers: they stay (no process left to remove them) until cleanup
    // --abandon, which leaves the table as it was.
    let mut child = f.spawn(&[("DEPLOYKIT_FAULT_KILL_AFTER", "shadow:triggers")]);
    let _ = child.wait();
    assert!(
        state(&f.db).contains("triggers: deploykit_sync_orders"),
        "{}",
        state(&f.db)
    );
    let plain = f.run(&["cleanup"]);
    assert!(
        plain.stdout.contains("cleanup --abandon"),
        "{}",
        plain.stdout
    );
    let abandon = f.run(&["cleanup", "--abandon"]);
    assert_eq!(abandon.code, 0, "{}{}", abandon.stdout, abandon.stderr);
    assert_eq!(state(&f.db), before);

    // Killed after the copy: the re-run resumes, verifies and swaps.
    let mut child = f.spawn(&[("DEPLOYKIT_FAULT_KILL_AFTER", "shadow:copy")]);
    let _ = child.wait();
    assert_eq!(history_versions(&f.db), "1");
    let r = f.run(&["migrate"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let after = state(&f.db);
    assert!(
        after.contains("price numeric(20,8)") && after.contains("venue text"),
        "{after}"
    );
    assert!(after.contains("50000 rows"), "{after}");
    assert_eq!(history_versions(&f.db), "1,2");

    // Swap back, then the change again while a client writes all along.
    let back = f.run(&["rollback", "--to-version", "1"]);
    assert_eq!(back.code, 0, "{}{}", back.stdout, back.stderr);
    assert!(
        state(&f.db).contains("price numeric(12,4)"),
        "{}",
        state(&f.db)
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (url, stop) = (f.db.url.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut writes = 0;
            // Pacing: a client writing as fast as psql can while the change runs.
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                crate::support::psql(
                    &url,
                    "INSERT INTO orders (price, quantity) VALUES (9.99, 1);
                     UPDATE orders SET quantity = quantity + 1 WHERE id = (SELECT (random() * 50000)::bigint + 1);
                     DELETE FROM orders WHERE id = (SELECT (random() * 50000)::bigint + 1)",
                );
                writes += 1;
            }
            writes
        })
    };
    let r = f.run(&["migrate"]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let writes = writer.join().unwrap();
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(writes > 0);
    // Every write is in the new table and mirrored into the old one (the swap back's data).
    let same = f.db.sql(
        "SELECT (SELECT count(*) || ' ' || sum(quantity) || ' ' || sum(id) FROM orders)
              = (SELECT count(*) || ' ' || sum(quantity) || ' ' || sum(id) FROM orders_old)",
    );
    assert_eq!(
        same, "t",
        "new and old tables differ after {writes} client writes"
    );
    let id =
        f.db.sql("INSERT INTO orders (price, quantity) VALUES (1, 1) RETURNING id");
    assert!(
        id.parse::<i64>().unwrap() > 50_000,
        "the id sequence continues: {id}"
    );

    let clean = f.run(&["cleanup"]);
    assert_eq!(clean.code, 0, "{}{}", clean.stdout, clean.stderr);
    let end = state(&f.db);
    assert!(
        end.contains("triggers: none") && end.contains("old: false") && end.contains("progress: 0"),
        "{end}"
    );
    f.db.sql("INSERT INTO orders (price, quantity) VALUES (1, 1)");
    let refused = f.run(&["rollback", "--to-version", "1"]);
    assert_eq!(refused.code, 5, "{}{}", refused.stdout, refused.stderr);
    assert!(
        refused.stderr.contains("roll forward"),
        "{}",
        refused.stderr
    );

    // A table that happens to bear the shadow's name is someone's: refused, never dropped.
    f.db.sql("CREATE TABLE orders_shadow (note text); INSERT INTO orders_shadow VALUES ('mine')");
    f.write(
        "V3__narrow_venue.sql",
        "-- deploykit: shadow table=orders\nALTER TABLE ${shadow} ALTER COLUMN venue TYPE varchar(8);\n",
    );
    let r = f.run(&["migrate"]);
    assert_eq!(r.code, 5, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("orders_shadow exists"), "{}", r.stderr);
    assert_eq!(f.db.sql("SELECT note FROM orders_shadow"), "mine");
    assert!(state(&f.db).contains("triggers: none"), "{}", state(&f.db));
}

/// A long transaction holds the table: every swap try waits at most lock_timeout (1 s here),
/// the change gives up after max_retries and aborts, the table serving as before and free of
/// triggers. Once the transaction ends, the same migration swaps at the first try.
#[test]
fn swap_blocked_by_a_long_transaction_retries_within_lock_timeout_then_aborts() {
    let f = fx(&shadow_files(), "lock_timeout = \"1s\"\nmax_retries = 2");
    let r = f.run(&["migrate", "--version", "1"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    f.db.sql("INSERT INTO orders (price, quantity) SELECT g, g FROM generate_series(1, 5000) g");
    let before = state(&f.db);
    // A reader that never commits: its ACCESS SHARE lock lets the copy run but not the swap.
    let mut blocker = Command::new("psql")
        .args([
            f.db.url.as_str(),
            "-qAtX",
            "-c",
            "BEGIN; SELECT count(*) FROM orders; SELECT pg_sleep(120); COMMIT;",
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    eventually(
        "the long transaction holds orders",
        Duration::from_secs(10),
        || {
            (f.db.sql("SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) WHERE l.relation = 'orders'::regclass AND a.query LIKE '%pg_sleep(120)%'") != "0").then_some(())
        },
    );
    let r = f.run(&["migrate"]);
    let _ = blocker.kill();
    let _ = blocker.wait();
    f.db.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(120)%' AND pid <> pg_backend_pid()");
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("was not granted in 3 tries"),
        "{}",
        r.stdout
    );
    let waits: Vec<u64> = r
        .stderr
        .lines()
        .filter(|l| l.contains(": swap: lock not granted"))
        .filter_map(|l| l.split("waited ").nth(1))
        .filter_map(|w| w.split(" ms").next()?.parse().ok())
        .collect();
    assert_eq!(waits.len(), 3, "{}", r.stderr);
    // About time: PostgreSQL ends each try at lock_timeout (1000 ms); the slack covers the
    // round trip and a loaded machine, far below the next try's wait.
    assert!(waits.iter().all(|w| *w < 1900), "{waits:?}");
    // The abort made the sync trigger a no-op at once; dropping it waits for the table, which
    // the long transaction held: cleanup --abandon finishes once it has ended.
    let abandon = f.run(&["cleanup", "--abandon"]);
    assert_eq!(abandon.code, 0, "{}{}", abandon.stdout, abandon.stderr);
    assert_eq!(state(&f.db), before, "gave up: the table serves as before");
    let r = f.run(&["migrate"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("0 retries"), "{}", r.stdout);
    assert_eq!(history_versions(&f.db), "1,2");
}
