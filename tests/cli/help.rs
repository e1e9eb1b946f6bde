//! Help text is part of the interface: snapshot it so a change is a reviewed change.

use crate::support::{TOOLS, run};

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

/// Every other binary's help, one snapshot each.
#[test]
fn every_other_binarys_help() {
    let own_tests = ["verify_env", "smoke_tests", "db_migrate"];
    for tool in TOOLS.iter().filter(|t| !own_tests.contains(t)) {
        let r = run(tool, &["--help"], &[("COLUMNS", "100")]);
        assert_eq!(r.code, 0, "{tool}");
        insta::assert_snapshot!(format!("{tool}_help"), r.stdout);
    }
    let r = run("db_migrate", &["refresh", "--help"], &[("COLUMNS", "100")]);
    assert_eq!(r.code, 0);
    insta::assert_snapshot!("db_migrate_refresh_help", r.stdout);
}
