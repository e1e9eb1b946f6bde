//! Help text is part of the interface: snapshot it so a change is a reviewed change.

use crate::support::run;

#[test]
fn verify_env_help() {
    let r = run("verify_env", &["--help"], &[("COLUMNS", "100")]);
    assert_eq!(r.code, 0);
    insta::assert_snapshot!(r.stdout);
}

#[test]
fn smoke_tests_help() {
    let r = run("smoke_tests", &["--help"], &[("COLUMNS", "100")]);
    assert_eq!(r.code, 0);
    insta::assert_snapshot!(r.stdout);
}

#[test]
fn db_migrate_help() {
    let r = run("db_migrate", &["--help"], &[("COLUMNS", "100")]);
    assert_eq!(r.code, 0);
    insta::assert_snapshot!(r.stdout);
    let r = run("db_migrate", &["migrate", "--help"], &[("COLUMNS", "100")]);
    insta::assert_snapshot!("db_migrate_migrate_help", r.stdout);
}
