//! db_migrate on databases Flyway has migrated (issue 21): Flyway's history table — rows and
//! checksums as Flyway writes them — is adopted and continued, never re-applied.

use crate::support::{Run, TestDb, checks_with, config, run};
use deploykit::migrate::flyway_checksum;
use std::path::{Path, PathBuf};

/// The file Flyway's documentation migrates as `V3__Couple.sql`, with the checksum it shows
/// Flyway writing for it (its "Dry Runs" tutorial) — a value this suite did not compute.
const COUPLE: &str = "create table COUPLE (\n    ID int not null,\n    PERSON1 int not null references PERSON(ID), \n    PERSON2 int not null references PERSON(ID) \n);\n";
const COUPLE_CHECKSUM: i32 = -722_651_034;

const FILES: &[(&str, &str)] = &[
    (
        "V1__Create_person_table.sql",
        "create table PERSON (\n    ID int not null primary key,\n    NAME varchar(100) not null\n);\n",
    ),
    (
        "V2__Add_people.sql",
        "insert into PERSON (ID, NAME) values (1, 'Axel');\r\ninsert into PERSON (ID, NAME) values (2, 'Mr. Foo');\r\n",
    ),
    ("V3__Couple.sql", COUPLE),
    (
        "V4__Add_couple_since.sql",
        "alter table COUPLE add column SINCE date;\n",
    ),
];

/// Flyway's table and rows for V1–V3 as Flyway 9 writes them on PostgreSQL (the CREATE of its
/// `getRawCreateScript`; installed_rank from 1; description with spaces; type SQL).
fn flyway_migrated(db: &TestDb, table: &str) {
    db.sql(&format!(
        "CREATE TABLE \"{table}\" (\"installed_rank\" INT NOT NULL, \"version\" VARCHAR(50), \"description\" VARCHAR(200) NOT NULL, \"type\" VARCHAR(20) NOT NULL, \"script\" VARCHAR(1000) NOT NULL, \"checksum\" INTEGER, \"installed_by\" VARCHAR(100) NOT NULL, \"installed_on\" TIMESTAMP NOT NULL DEFAULT now(), \"execution_time\" INTEGER NOT NULL, \"success\" BOOLEAN NOT NULL); \
         ALTER TABLE \"{table}\" ADD CONSTRAINT \"{table}_pk\" PRIMARY KEY (\"installed_rank\")"
    ));
    for (rank, (name, sql)) in FILES[..3].iter().enumerate() {
        db.sql(sql);
        let (v, desc) = name
            .trim_start_matches('V')
            .trim_end_matches(".sql")
            .split_once("__")
            .unwrap();
        let checksum = if *name == "V3__Couple.sql" {
            COUPLE_CHECKSUM
        } else {
            flyway_checksum(sql)
        };
        db.sql(&format!(
            "INSERT INTO \"{table}\" VALUES ({}, '{v}', '{}', 'SQL', '{name}', {checksum}, 'flyway', now(), 12, true)",
            rank + 1,
            desc.replace('_', " ")
        ));
    }
}

/// `db_migrate --config CFG --migrations DIR --format json ARGS…`, against `db` when given.
fn db_migrate(cfg: &Path, migrations: &Path, db: Option<&TestDb>, args: &[&str]) -> Run {
    let mut a = vec![
        "--config",
        cfg.to_str().unwrap(),
        "--migrations",
        migrations.to_str().unwrap(),
        "--format",
        "json",
    ];
    a.extend_from_slice(args);
    let env: Vec<(&str, &str)> = db
        .map(|d| ("DATABASE_URL", d.url.as_str()))
        .into_iter()
        .collect();
    run("db_migrate", &a, &env)
}

struct Fx {
    _dir: tempfile::TempDir,
    migrations: PathBuf,
    _cfg_dir: tempfile::TempDir,
    cfg: PathBuf,
    db: TestDb,
}

fn fx() -> Fx {
    let dir = tempfile::tempdir().unwrap();
    let migrations = dir.path().join("sql");
    std::fs::create_dir(&migrations).unwrap();
    for (name, sql) in FILES {
        std::fs::write(migrations.join(name), sql).unwrap();
    }
    let (cfg_dir, cfg) =
        config("[environments.local]\ndatabase = { url_env = \"DATABASE_URL\" }\n");
    Fx {
        _dir: dir,
        migrations,
        _cfg_dir: cfg_dir,
        cfg,
        db: TestDb::new(),
    }
}

impl Fx {
    fn run(&self, args: &[&str]) -> Run {
        db_migrate(&self.cfg, &self.migrations, Some(&self.db), args)
    }
}

/// Adopted and continued: info agrees with Flyway's rows, migrate applies only V4 and writes the
/// row Flyway would (rank 4, its checksum), twice in a row nothing more; no table of ours
/// appears. A changed applied file is caught by Flyway's checksum; a failed row stops migrate
/// until repair; rollback is refused (Flyway has no undo rows). Flyway 3/4's `schema_version`
/// table is adopted the same way.
#[test]
fn a_flyway_migrated_database_is_adopted_and_continued_never_reapplied() {
    for table in ["flyway_schema_history", "schema_version"] {
        let f = fx();
        flyway_migrated(&f.db, table);
        let r = f.run(&["info"]);
        assert_eq!(r.code, 0, "{table}: {}\n{}", r.stdout, r.stderr);
        assert_eq!(checks_with(&r.stdout, "ok").len(), 3, "{}", r.stdout);
        assert!(r.stdout.contains("adopted"), "{}", r.stdout);
        for round in 0..2 {
            let r = f.run(&["migrate"]);
            assert_eq!(
                r.code, 0,
                "{table} round {round}: {}\n{}",
                r.stdout, r.stderr
            );
            if round == 0 {
                assert_eq!(
                    checks_with(&r.stdout, "ok"),
                    vec!["V4 Add_couple_since"],
                    "{}",
                    r.stdout
                );
            } else {
                assert_eq!(checks_with(&r.stdout, "ok"), vec!["Nothing to do"]);
            }
        }
        assert_eq!(
            f.db.sql(&format!("SELECT installed_rank, version, description, type, script, checksum, success FROM \"{table}\" WHERE version = '4'")),
            format!("4|4|Add couple since|SQL|V4__Add_couple_since.sql|{}|t", flyway_checksum(FILES[3].1))
        );
        assert_eq!(
            f.db.sql("SELECT count(*) FROM PERSON"),
            "2",
            "V2 not applied twice"
        );
        assert_eq!(
            f.db.sql("SELECT to_regclass('deploykit_schema_history') IS NULL"),
            "t"
        );
        // Line endings do not matter to Flyway's checksum; a changed statement does.
        std::fs::write(
            f.migrations.join("V3__Couple.sql"),
            COUPLE.replace('\n', "\r\n"),
        )
        .unwrap();
        assert_eq!(f.run(&["validate"]).code, 0);
        std::fs::write(
            f.migrations.join("V3__Couple.sql"),
            COUPLE.replace("not null,", "null,"),
        )
        .unwrap();
        let r = f.run(&["validate"]);
        assert_eq!(r.code, 1, "{}", r.stdout);
        assert_eq!(
            checks_with(&r.stdout, "fail"),
            vec!["V3__Couple.sql unchanged since applied"]
        );
        assert_eq!(f.run(&["migrate"]).code, 5);
        std::fs::write(f.migrations.join("V3__Couple.sql"), COUPLE).unwrap();
        // A failed row (Flyway's own, say): migrate stops until repair removes it.
        std::fs::write(
            f.migrations.join("V5__Add_person_email.sql"),
            "alter table PERSON add column EMAIL text;\n",
        )
        .unwrap();
        f.db.sql(&format!("INSERT INTO \"{table}\" VALUES (5, '5', 'Add person email', 'SQL', 'V5__Add_person_email.sql', 1, 'flyway', now(), 3, false)"));
        let r = f.run(&["migrate"]);
        assert_eq!(r.code, 5, "{}", r.stdout);
        assert!(
            r.stderr
                .contains("holds a failed migration: V5__Add_person_email.sql"),
            "{}",
            r.stderr
        );
        assert_eq!(
            checks_with(&f.run(&["info"]).stdout, "fail"),
            vec!["V5__Add_person_email.sql failed"]
        );
        let r = f.run(&["repair"]);
        assert_eq!(r.code, 0, "{}", r.stdout);
        let r = f.run(&["migrate"]);
        assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
        assert_eq!(
            f.db.sql(&format!(
                "SELECT max(installed_rank) FROM \"{table}\" WHERE success"
            )),
            "5"
        );
        // No rollback rows Flyway would accept: refused, nothing changed.
        let r = f.run(&["rollback", "--to-version", "4"]);
        assert_eq!(r.code, 5, "{}", r.stderr);
        assert_eq!(
            f.db.sql("SELECT count(*) FROM information_schema.columns WHERE column_name = 'email'"),
            "1"
        );
    }
}

/// `baseline --version 2` adopts a database with no history (its tables made by hand): files up
/// to 2 are never applied, later ones are; a second baseline is refused.
#[test]
fn baseline_adopts_a_database_without_history() {
    let f = fx();
    f.db.sql(FILES[0].1);
    f.db.sql(FILES[1].1);
    let r = f.run(&["baseline", "--version", "2"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let r = f.run(&["migrate"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        checks_with(&r.stdout, "ok"),
        vec!["V3 Couple", "V4 Add_couple_since"]
    );
    assert_eq!(
        f.db.sql("SELECT string_agg(type || ':' || version || ':' || coalesce(checksum::text, '-'), ',' ORDER BY installed_rank) FROM flyway_schema_history"),
        format!("BASELINE:2:-,SQL:3:{COUPLE_CHECKSUM},SQL:4:{}", flyway_checksum(FILES[3].1))
    );
    assert_eq!(f.run(&["baseline", "--version", "4"]).code, 5);
}

/// Flyway's rule for statements PostgreSQL refuses in a transaction block: a file holding one
/// (`CREATE INDEX CONCURRENTLY`, `VACUUM`, …) runs outside a transaction without any directive,
/// and the report says so and why; lint names every other statement of such a file, which would
/// run alone and stay applied if a later one fails. On the adopted Flyway history, twice in a row.
#[test]
fn statements_that_cannot_run_in_a_transaction_run_outside_one_as_flyway_runs_them() {
    let f = fx();
    flyway_migrated(&f.db, "flyway_schema_history");
    std::fs::write(
        f.migrations.join("V5__Index_person_name.sql"),
        "-- a build that must not block the application\nCREATE INDEX CONCURRENTLY person_name ON PERSON (NAME);\nVACUUM (ANALYZE) PERSON;\n",
    )
    .unwrap();
    let r = f.run(&["migrate", "--dry-run"]);
    assert!(
        r.stdout.contains("outside a transaction (CREATE INDEX CONCURRENTLY at line 2 cannot run in a transaction)"),
        "{}",
        r.stdout
    );
    for round in 0..2 {
        let r = f.run(&["migrate"]);
        assert_eq!(r.code, 0, "round {round}: {}\n{}", r.stdout, r.stderr);
    }
    assert_eq!(
        f.db.sql("SELECT indisvalid FROM pg_index WHERE indexrelid = 'person_name'::regclass"),
        "t"
    );
    assert_eq!(
        f.db.sql("SELECT checksum FROM flyway_schema_history WHERE version = '5'"),
        flyway_checksum(
            &std::fs::read_to_string(f.migrations.join("V5__Index_person_name.sql")).unwrap()
        )
        .to_string()
    );
    // A file mixing a table change with a concurrent build: lint names the table change.
    std::fs::write(
        f.migrations.join("V6__Mixed.sql"),
        "ALTER TABLE PERSON ADD COLUMN NICK text;\nCREATE INDEX CONCURRENTLY person_nick ON PERSON (NICK);\n",
    )
    .unwrap();
    let r = f.run(&["lint"]);
    assert!(
        r.stdout.contains("V6__Mixed.sql") && r.stdout.contains("no-transaction-statement") && r.stdout.contains("runs outside a transaction because the file does (CREATE INDEX CONCURRENTLY at line 2"),
        "{}",
        r.stdout
    );
}

/// `R__` repeatable migrations, on an adopted Flyway history and on our own: applied after the
/// versioned ones (a view over a column V4 adds), not again while unchanged, re-applied when the
/// file changes; recorded without a version, as Flyway records them.
#[test]
fn repeatables_apply_after_the_versioned_ones_and_again_only_when_changed() {
    for flyway in [true, false] {
        let f = fx();
        if flyway {
            flyway_migrated(&f.db, "flyway_schema_history");
        }
        let view = f.migrations.join("R__Couple_view.sql");
        std::fs::write(
            &view,
            "CREATE OR REPLACE VIEW couple_since AS SELECT ID, SINCE FROM COUPLE;\n",
        )
        .unwrap();
        let r = f.run(&["migrate", "--dry-run"]);
        assert!(
            r.stdout
                .contains("would apply R__Couple_view.sql after the versioned migrations"),
            "{}",
            r.stdout
        );
        let r = f.run(&["migrate"]);
        assert_eq!(r.code, 0, "flyway={flyway}: {}\n{}", r.stdout, r.stderr);
        let ok = checks_with(&r.stdout, "ok");
        assert_eq!(
            ok.last().map(String::as_str),
            Some("R Couple_view"),
            "{ok:?}"
        );
        assert_eq!(
            checks_with(&f.run(&["migrate"]).stdout, "ok"),
            vec!["Nothing to do"]
        );
        std::fs::write(
            &view,
            "CREATE OR REPLACE VIEW couple_since AS SELECT ID, SINCE, PERSON1 FROM COUPLE;\n",
        )
        .unwrap();
        let r = f.run(&["migrate"]);
        assert_eq!(
            checks_with(&r.stdout, "ok"),
            vec!["R Couple_view"],
            "{}",
            r.stdout
        );
        assert!(
            r.stdout.contains("re-applied (its file changed)"),
            "{}",
            r.stdout
        );
        assert_eq!(
            f.db.sql(
                "SELECT count(*) FROM information_schema.columns WHERE table_name = 'couple_since'"
            ),
            "3"
        );
        let rows = if flyway {
            f.db.sql("SELECT count(*) FROM flyway_schema_history WHERE version IS NULL AND script = 'R__Couple_view.sql'")
        } else {
            f.db.sql("SELECT count(*) FROM deploykit_schema_history WHERE version = '' AND script = 'R__Couple_view.sql'")
        };
        assert_eq!(rows, "2");
        // The versioned history is untouched by them (verify reads the newest version).
        assert_eq!(f.run(&["verify", "--expect", "4"]).code, 0);
    }
}

/// The guide's third source, its custom scripts (`scripts/db/migrations/{version}_{description}.sql`),
/// chosen by the environment's `migrate.layout = "scripts"`: the same ordering (numeric), history
/// and verification; a Flyway-named file there is a clear error. And `--out-of-order`: a file
/// older than the newest applied one is refused, then applied with the flag.
#[test]
fn the_guides_custom_scripts_apply_in_order_and_out_of_order_needs_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let scripts = dir.path().join("scripts/db/migrations");
    std::fs::create_dir_all(&scripts).unwrap();
    for (name, sql) in [
        (
            "1_create_person.sql",
            "create table PERSON (ID int primary key, NAME text);",
        ),
        ("1_create_person_rollback.sql", "drop table PERSON;"),
        (
            "2_add_email.sql",
            "alter table PERSON add column EMAIL text;",
        ),
        (
            "10_add_phone.sql",
            "alter table PERSON add column PHONE text;",
        ),
    ] {
        std::fs::write(scripts.join(name), sql).unwrap();
    }
    let (_c, cfg) = config(
        "[environments.local]\ndatabase = { url_env = \"DATABASE_URL\" }\n[environments.local.migrate]\nlayout = \"scripts\"\n",
    );
    let db = TestDb::new();
    let dbm = |args: &[&str]| db_migrate(&cfg, &scripts, Some(&db), args);
    let r = dbm(&["migrate"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        checks_with(&r.stdout, "ok"),
        vec!["V1 create_person", "V2 add_email", "V10 add_phone"]
    );
    assert_eq!(dbm(&["verify"]).code, 0);
    assert_eq!(
        checks_with(&dbm(&["migrate"]).stdout, "ok"),
        vec!["Nothing to do"]
    );
    // A file merged late from another branch, older than the newest applied one.
    std::fs::write(
        scripts.join("3_add_nick.sql"),
        "alter table PERSON add column NICK text;",
    )
    .unwrap();
    let r = dbm(&["migrate"]);
    assert_eq!(r.code, 5, "{}", r.stdout);
    assert!(
        r.stderr
            .contains("3_add_nick.sql is older than the applied 10")
            && r.stderr.contains("--out-of-order"),
        "{}",
        r.stderr
    );
    let r = dbm(&["migrate", "--out-of-order"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(checks_with(&r.stdout, "ok"), vec!["V3 add_nick"]);
    // Verification still reads the newest version, not the last installed.
    assert_eq!(dbm(&["verify", "--expect", "10"]).code, 0);
    // A Flyway-named file in a scripts directory is named, not skipped.
    std::fs::write(scripts.join("V11__flyway_style.sql"), "select 1;").unwrap();
    let r = dbm(&["info"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr.contains("<version>_<description>.sql"),
        "{}",
        r.stderr
    );
}

/// Flyway's placeholders from the environment's config: replaced before a file runs; a versioned
/// file's checksum stays that of its bytes on disk (a new value does not make it "changed"), a
/// repeatable one's is taken after replacement (a new value re-applies it), as Flyway computes
/// them; a placeholder with no value is exit 3 at its file and line, before anything runs.
#[test]
fn placeholders_are_replaced_as_flyway_replaces_them() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("sql");
    std::fs::create_dir(&m).unwrap();
    std::fs::write(
        m.join("V1__Create_orders.sql"),
        "-- ${flyway:filename}\ncreate table orders (id int, desk text default '${desk}');\n",
    )
    .unwrap();
    std::fs::write(
        m.join("R__Orders_view.sql"),
        "create or replace view desk_orders as select id from orders where desk = '${desk}';\n",
    )
    .unwrap();
    let db = TestDb::new();
    let cfg_with = |desk: &str| {
        config(&format!(
            "[environments.local]\ndatabase = {{ url_env = \"DATABASE_URL\" }}\n[environments.local.migrate.placeholders]\ndesk = \"{desk}\"\n"
        ))
    };
    let dbm = |cfg: &Path, args: &[&str]| db_migrate(cfg, &m, Some(&db), args);
    let (_a, equities) = cfg_with("EQUITIES");
    let r = dbm(&equities, &["migrate"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(db.sql("SELECT column_default FROM information_schema.columns WHERE table_name = 'orders' AND column_name = 'desk'"), "'EQUITIES'::text");
    assert!(
        db.sql("SELECT pg_get_viewdef('desk_orders')")
            .contains("EQUITIES")
    );
    let (_b, fx) = cfg_with("FX");
    assert_eq!(
        dbm(&fx, &["validate"]).code,
        0,
        "a new value is not a changed versioned file"
    );
    let r = dbm(&fx, &["migrate"]);
    assert_eq!(
        checks_with(&r.stdout, "ok"),
        vec!["R Orders_view"],
        "{}",
        r.stdout
    );
    assert!(
        db.sql("SELECT pg_get_viewdef('desk_orders')")
            .contains("FX")
    );
    assert_eq!(
        checks_with(&dbm(&fx, &["migrate"]).stdout, "ok"),
        vec!["Nothing to do"]
    );
    let (_c, none) = config("[environments.local]\ndatabase = { url_env = \"DATABASE_URL\" }\n");
    let r = dbm(&none, &["migrate"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr.contains("V1__Create_orders.sql:2")
            && r.stderr.contains("no value for placeholder ${desk}"),
        "{}",
        r.stderr
    );
}

/// Lint people keep on: errors (locks on a hot table, renames that break the colour still on the
/// old schema, a new file without rollback) fail, the rest warn; `--write-baseline` records the
/// findings of an adopted history's files and `--baseline` then judges only files added later.
#[test]
fn lint_has_severities_and_a_baseline_so_only_new_files_are_judged() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("sql");
    std::fs::create_dir(&m).unwrap();
    let write = |name: &str, sql: &str| std::fs::write(m.join(name), sql).unwrap();
    write("V1__Create_orders.sql", "create table orders (id int);\n");
    write(
        "V2__Index_orders.sql",
        "create index orders_id on orders (id);\n",
    );
    write(
        "V3__Drop_report_view.sql",
        "drop view if exists order_report;\n",
    );
    let (_c, cfg) = config("[environments.local]\n");
    let baseline = dir.path().join("lint-baseline.json");
    let lint = |args: &[&str]| {
        let mut a = vec!["lint"];
        a.extend_from_slice(args);
        db_migrate(&cfg, &m, None, &a)
    };
    let r = lint(&[]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    // Flyway files have no rollbacks: every file misses one (an error), V2 also locks `orders`
    // against writes while it builds; V3's dropped view is a warning on top.
    assert_eq!(
        checks_with(&r.stdout, "fail"),
        vec![
            "V1__Create_orders.sql",
            "V2__Index_orders.sql",
            "V3__Drop_report_view.sql"
        ]
    );
    assert!(
        r.stdout
            .contains("error [require-concurrent-index-creation]")
            && r.stdout.contains("warning [ban-drop-view]"),
        "{}",
        r.stdout
    );
    let r = lint(&["--write-baseline", baseline.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let r = lint(&["--baseline", baseline.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(checks_with(&r.stdout, "ok").len(), 3);
    // A new file is judged: a warning alone passes, an error fails, and only it is named.
    write("V4__Drop_old_view.sql", "drop view if exists old_report;\n");
    write(
        "V4__Drop_old_view_rollback.sql",
        "create view old_report as select 1;\n",
    );
    let r = lint(&["--baseline", baseline.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(
        checks_with(&r.stdout, "warn"),
        vec!["V4__Drop_old_view.sql"]
    );
    write(
        "V5__Rename_id.sql",
        "alter table orders rename column id to order_id;\n",
    );
    let r = lint(&["--baseline", baseline.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert_eq!(checks_with(&r.stdout, "fail"), vec!["V5__Rename_id.sql"]);
    assert!(
        r.stdout.contains("error [renaming-column]")
            && r.stdout.contains("error [missing-rollback]"),
        "{}",
        r.stdout
    );
}
