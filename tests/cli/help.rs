//! Help text is part of the interface: snapshot it so a change is a reviewed change.

use crate::support::run;

#[test]
fn verify_env_help() {
    let r = run("verify_env", &["--help"], &[("COLUMNS", "100")]);
    assert_eq!(r.code, 0);
    insta::assert_snapshot!(r.stdout);
}
