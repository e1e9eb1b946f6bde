//! The one exit-code table every binary speaks (docs/exit-codes.md mirrors it).
//!
//! Jenkins maps 1 to UNSTABLE on non-blocking stages and anything else to FAILURE, so
//! "the target is bad" (1) stays apart from "the tool could not do its job" (2–7).

/// Everything checked holds / the action completed.
pub const OK: u8 = 0;
/// A check or gate failed: the target is bad.
pub const CHECK_FAILED: u8 = 1;
/// Usage error (clap).
pub const USAGE: u8 = 2;
/// Configuration error: file, field or value.
pub const CONFIG: u8 = 3;
/// A dependency could not be reached (service, database, load balancer, Prometheus).
pub const UNREACHABLE: u8 = 4;
/// Conflict: another run holds the lock, or state forbids the action.
pub const CONFLICT: u8 = 5;
/// Inconclusive: not enough data to judge; a human decides.
pub const INCONCLUSIVE: u8 = 6;
/// A local file or directory the tool needs could not be read or written.
pub const IO: u8 = 7;
/// Interrupted by SIGINT, after cleaning up.
pub const SIGINT: u8 = 130;
/// Interrupted by SIGTERM, after cleaning up.
pub const SIGTERM: u8 = 143;

/// `(code, name, meaning)` rows, rendered into docs and checked against them by a test.
pub const TABLE: &[(u8, &str, &str)] = &[
    (OK, "ok", "everything checked holds / the action completed"),
    (
        CHECK_FAILED,
        "check-failed",
        "a check or gate failed (the target is bad)",
    ),
    (
        USAGE,
        "usage",
        "usage error: unknown flag, missing or malformed argument",
    ),
    (CONFIG, "config", "configuration error (file, field, value)"),
    (
        UNREACHABLE,
        "unreachable",
        "a dependency could not be reached (service, database, load balancer, Prometheus)",
    ),
    (
        CONFLICT,
        "conflict",
        "another run holds the lock, or state forbids the action",
    ),
    (
        INCONCLUSIVE,
        "inconclusive",
        "not enough data to judge (a human decides)",
    ),
    (
        IO,
        "io",
        "a local file or directory could not be read or written (report, journal, figures)",
    ),
    (SIGINT, "sigint", "interrupted by SIGINT, after cleaning up"),
    (
        SIGTERM,
        "sigterm",
        "interrupted by SIGTERM, after cleaning up",
    ),
];
