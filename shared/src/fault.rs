//! Fault injection for the crash and abort tests, one mechanism for every tool:
//! `DEPLOYKIT_FAULT_KILL_AFTER=<point>` SIGKILLs the process right after that point's action ran
//! and before it is recorded — the worst moment; `DEPLOYKIT_FAULT_FAIL_AFTER=<point>` makes the
//! point fail as a real error would, so the tool's own abort path runs. Unset, both do nothing.

use crate::env_vars::EnvVars;

/// SIGKILL here when `DEPLOYKIT_FAULT_KILL_AFTER` names `point`.
pub fn crash_point(point: &str) {
    if std::env::var(EnvVars::FAULT_KILL_AFTER).as_deref() == Ok(point) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &std::process::id().to_string()])
            .status();
        std::process::abort();
    }
}

/// `Err` (a message naming the point) when `DEPLOYKIT_FAULT_FAIL_AFTER` names `point`; the
/// crash point is checked too, so one call site serves both tests.
pub fn fail_point(point: &str) -> Result<(), String> {
    crash_point(point);
    if std::env::var(EnvVars::FAULT_FAIL_AFTER).as_deref() == Ok(point) {
        return Err(format!(
            "injected failure after {point} ({})",
            EnvVars::FAULT_FAIL_AFTER
        ));
    }
    Ok(())
}
