//! Config promotion (guide §8 Step 3, "test in staging"): the journal rows that prove a config
//! file was tested before production, and the rule that reads them.
//!
//! A config deploy writes `config / <type> / deployed` with the file's SHA-256; a smoke test run
//! writes `smoke / <colour> / passed|failed`. A file is promoted when, in the environment it
//! must come from, it was the deployed file of its type when the latest smoke run since its
//! deploy passed. Same bytes, not the same name: a file edited after staging is a new file.

use crate::journal::Entry;
use crate::trading_config::Kind;

pub const CONFIG: &str = "config";
pub const SMOKE: &str = "smoke";
pub const DEPLOYED: &str = "deployed";
pub const SKIPPED: &str = "skip-staging";

fn entry(env_name: &str, action: &str, step: &str, state: &str, detail: String) -> Entry {
    Entry {
        run_id: format!("{action}-{:x}", crate::cutover::now_ms()),
        environment: env_name.into(),
        action: action.into(),
        from_color: String::new(),
        to_color: String::new(),
        step: step.into(),
        state: state.into(),
        detail,
        at: String::new(),
        deployment_id: String::new(),
    }
}

/// `sha256=<hex> <file>`: the detail of a config row (the hash first, so it parses).
pub fn deployed(env_name: &str, kind: Kind, sha256: &str, file: &str) -> Entry {
    entry(
        env_name,
        CONFIG,
        kind.name(),
        DEPLOYED,
        format!("sha256={sha256} {file}"),
    )
}

/// A production deploy that skipped staging: the reason, and which bytes.
pub fn skipped(env_name: &str, kind: Kind, sha256: &str, reason: &str) -> Entry {
    entry(
        env_name,
        CONFIG,
        kind.name(),
        SKIPPED,
        format!("sha256={sha256} {reason}"),
    )
}

/// A smoke run's verdict: `passed` only for a full run that passed; a failed run is
/// `failed`; a partial run that passed is `partial`, which proves nothing either way.
pub fn smoke(env_name: &str, color: &str, passed: bool, summary: String) -> Entry {
    let state = if passed {
        "passed"
    } else if summary.starts_with("failed") {
        "failed"
    } else {
        "partial"
    };
    entry(env_name, SMOKE, color, state, summary)
}

fn sha_of(e: &Entry) -> Option<&str> {
    e.detail.strip_prefix("sha256=")?.split(' ').next()
}

/// Whether `sha256` of `kind` was tested in the environment whose journal `entries` are (oldest
/// first): Ok(when its smoke run passed) or Err(what is missing, for the operator).
pub fn tested(entries: &[Entry], kind: Kind, sha256: &str) -> Result<String, String> {
    let short = &sha256[..sha256.len().min(12)];
    let mut current: Option<&str> = None;
    let mut ever_deployed = None;
    // The latest smoke run while this file was the deployed one: (passed, when).
    let mut verdict: Option<(bool, &str)> = None;
    for e in entries {
        if e.action == CONFIG && e.step == kind.name() && e.state == DEPLOYED {
            current = sha_of(e);
            if current == Some(sha256) {
                ever_deployed = Some(e.at.as_str());
                verdict = None;
            }
        } else if e.action == SMOKE
            && current == Some(sha256)
            && matches!(e.state.as_str(), "passed" | "failed")
        {
            verdict = Some((e.state == "passed", e.at.as_str()));
        }
    }
    match (ever_deployed, current == Some(sha256), verdict) {
        (None, _, _) => Err(format!(
            "this file (sha256 {short}) was never deployed there"
        )),
        (Some(at), false, _) => Err(format!(
            "this file (sha256 {short}) was deployed there at {at}, but another {} file has replaced it since",
            kind.name()
        )),
        (Some(at), true, None) => Err(format!(
            "this file (sha256 {short}) was deployed there at {at}, but no smoke test has run there since"
        )),
        (Some(_), true, Some((false, when))) => Err(format!(
            "this file (sha256 {short}) is deployed there, but its latest smoke test run failed ({when})"
        )),
        (Some(at), true, Some((true, when))) => Ok(format!(
            "sha256 {short} deployed there at {at}, smoke tests passed at {when}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(mut e: Entry, t: &str) -> Entry {
        e.at = t.into();
        e
    }

    #[test]
    fn only_the_same_bytes_with_a_passing_smoke_run_since_are_promoted() {
        let k = Kind::RiskLimits;
        let d = |sha: &str, t| at(deployed("staging", k, sha, "f.yaml"), t);
        let s = |ok: bool, t| {
            let summary = if ok { "passed" } else { "failed" };
            at(smoke("staging", "blue", ok, summary.into()), t)
        };
        assert!(tested(&[], k, "aa").unwrap_err().contains("never deployed"));
        assert!(
            tested(&[d("aa", "1")], k, "aa")
                .unwrap_err()
                .contains("no smoke test")
        );
        // A smoke run before the deploy proves nothing.
        assert!(tested(&[s(true, "0"), d("aa", "1")], k, "aa").is_err());
        assert!(tested(&[d("aa", "1"), s(true, "2")], k, "aa").is_ok());
        // The latest run counts.
        let e = tested(&[d("aa", "1"), s(true, "2"), s(false, "3")], k, "aa").unwrap_err();
        assert!(e.contains("failed (3)"), "{e}");
        // Replaced since: not what staging runs now.
        let e = tested(&[d("aa", "1"), s(true, "2"), d("bb", "3")], k, "aa").unwrap_err();
        assert!(e.contains("replaced"), "{e}");
        // A partial run that passed proves nothing either way.
        let partial = at(
            smoke("staging", "blue", false, "passed (not every group)".into()),
            "3",
        );
        assert!(tested(&[d("aa", "1"), partial.clone()], k, "aa").is_err());
        assert!(tested(&[d("aa", "1"), s(true, "2"), partial], k, "aa").is_ok());
        // Another type's deploy and another hash don't count.
        assert!(tested(&[d("aa", "1"), s(true, "2")], Kind::App, "aa").is_err());
        assert!(tested(&[d("aa", "1"), s(true, "2")], k, "ab").is_err());
        // Back to the same bytes: tested again from that deploy on.
        let back = [d("aa", "1"), s(true, "2"), d("bb", "3"), d("aa", "4")];
        assert!(tested(&back, k, "aa").is_err());
    }
}
