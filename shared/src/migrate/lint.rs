//! Unsafe-DDL lint for production. The statement rules are squawk's (`squawk-linter`: a real
//! PostgreSQL parser and the rule set migration reviewers use), run the way our runner applies
//! the file — inside a transaction unless it is a no-transaction file. Ours add what squawk cannot
//! know about this runner: every V file has its rollback, a no-transaction file holds only
//! CONCURRENTLY statements, and the runner's timeouts are never switched off. Each finding names
//! file, line and what to do instead.

use super::Migration;
use squawk_linter::{Linter, Rule};
use std::sync::LazyLock;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Finding {
    pub file: String,
    pub line: usize,
    pub rule: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub severity: Severity,
}

/// `error` fails lint (and the deploy); `warning` is reported and passes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    #[default]
    Error,
    Warning,
}

/// The rules that fail: what blocks a hot table (locks held while it rewrites or scans, a lock
/// queue behind a non-concurrent build), loses data, breaks the colour still running on the old
/// schema (renames), or runs differently than it reads under this runner — and a new file
/// without its rollback. Everything else warns (`prefer-robust-stmts`, drops of objects no
/// colour should still use, …): worth a look, not a reason to stop a deploy.
const ERRORS: &[&str] = &[
    "require-concurrent-index-creation",
    "require-concurrent-index-deletion",
    "require-concurrent-reindex",
    "require-concurrent-partition-detach",
    "constraint-missing-not-valid",
    "adding-field-with-default",
    "adding-foreign-key-constraint",
    "changing-column-type",
    "adding-not-nullable-field",
    "adding-required-field",
    "adding-serial-primary-key-field",
    "disallowed-unique-constraint",
    "renaming-column",
    "renaming-table",
    "ban-drop-database",
    "ban-drop-table",
    "ban-drop-column",
    "ban-truncate-cascade",
    "ban-uncommitted-transaction",
    "transaction-nesting",
    "vacuum-full-or-cluster",
    "timeout-override",
    "no-transaction-statement",
    "unparsed",
    "missing-rollback",
];

pub fn severity_of(rule: &str) -> Severity {
    if ERRORS.contains(&rule) {
        Severity::Error
    } else {
        Severity::Warning
    }
}

/// Findings already accepted (`lint --baseline FILE`, written by `--write-baseline`): those of
/// migrations already applied, so only new files are judged. Matched by file and rule.
pub fn without_baseline(findings: Vec<Finding>, baseline: &[Finding]) -> (Vec<Finding>, usize) {
    let before = findings.len();
    let kept: Vec<Finding> = findings
        .into_iter()
        .filter(|f| {
            !baseline
                .iter()
                .any(|b| b.file == f.file && b.rule == f.rule)
        })
        .collect();
    let dropped = before - kept.len();
    (kept, dropped)
}

/// Not gating: squawk's style preferences (column types, identity columns: not about locking or
/// data loss), and its timeout rules, which the runner satisfies itself (it sends `SET LOCAL
/// lock_timeout/statement_timeout` with every step). Everything else squawk enables by default
/// gates the deploy.
const NOT_GATING: &[Rule] = &[
    Rule::RequireTimeoutSettings,
    Rule::RequireLockTimeout,
    Rule::RequireStatementTimeout,
    Rule::PreferBigintOverInt,
    Rule::PreferBigintOverSmallint,
    Rule::PreferIdentity,
    Rule::PreferTextField,
    Rule::PreferTimestampTz,
    Rule::BanCharField,
];

static REWRITE: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(r"(?is)^\s*(VACUUM\s+(\(\s*)?FULL|CLUSTER)\b").unwrap());
static TIMEOUT_OFF: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(
        r"(?is)\bSET\s+(LOCAL\s+)?(lock_timeout|statement_timeout)\s*(=|TO)\s*'?0'?\s*;?\s*$",
    )
    .unwrap()
});

pub fn lint(migrations: &[Migration]) -> Vec<Finding> {
    let mut all = vec![];
    for m in migrations {
        let mut out = vec![];
        let sql = &m.up.sql;
        let file = m.up.file_name();
        let finding = |line, rule: &str, message: String| Finding {
            file: file.clone(),
            line,
            rule: rule.to_string(),
            message,
            severity: severity_of(rule),
        };
        let lines = super::Lines::new(sql);
        let line_of = |_: &str, offset: usize| lines.line(offset);
        let parse = squawk_syntax::SourceFile::parse(sql);
        // A gate that cannot read a statement must not pass it.
        for e in parse.errors() {
            out.push(finding(
                line_of(sql, usize::from(e.range().start())),
                "unparsed",
                format!("the linter cannot parse this ({e}): fix the statement, or split it so it can be checked"),
            ));
        }
        let no_transaction = m.up.no_transaction();
        let mut linter = Linter::with_rules(&[], NOT_GATING);
        linter.settings.assume_in_transaction = !no_transaction;
        for v in linter.lint(&parse, sql) {
            let message = match &v.help {
                Some(help) => format!("{} {help}", v.message),
                None => v.message.clone(),
            };
            out.push(finding(
                line_of(sql, usize::from(v.text_range.start())),
                &v.code.to_string(),
                message,
            ));
        }
        for st in super::statements(sql) {
            let code: String = st
                .sql
                .lines()
                .map(|l| l.split("--").next().unwrap_or(""))
                .collect::<Vec<_>>()
                .join("\n");
            if code.trim().is_empty() {
                continue;
            }
            let line = st.line;
            if TIMEOUT_OFF.is_match(code.trim()) {
                out.push(finding(
                    line,
                    "timeout-override",
                    "disabling lock_timeout/statement_timeout lets this migration queue every query on its table; keep the runner's timeouts".into(),
                ));
            }
            // squawk has no rule for these (2.68).
            if REWRITE.is_match(&code) {
                out.push(finding(
                    line,
                    "vacuum-full-or-cluster",
                    "VACUUM FULL / CLUSTER rewrite the table under ACCESS EXCLUSIVE, blocking reads and writes; never in a deploy (use pg_repack out of band)".into(),
                ));
            }
            // migrate runs this file outside a transaction: every other statement in it runs
            // differently than it reads (alone, no rollback if a later one fails).
            if no_transaction && super::non_transactional(&code).is_none() {
                out.push(finding(
                    line,
                    "no-transaction-statement",
                    format!(
                        "this runs outside a transaction because the file does ({}): it stays applied if a later statement fails; move it to a file of its own",
                        m.up.why_no_transaction().unwrap_or_default()
                    ),
                ));
            }
        }
        if m.down.is_none() {
            out.push(finding(
                1,
                "missing-rollback",
                format!(
                    "no rollback: add V{}__{}_rollback.sql",
                    m.version, m.description
                ),
            ));
        }
        // Top to bottom of the file, as a reviewer reads it.
        out.sort_by_key(|f| f.line);
        all.extend(out);
    }
    all
}
