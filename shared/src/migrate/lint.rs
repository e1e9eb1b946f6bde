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
    "big-table-rewrite",
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

/// A table this large is not rewritten by one statement: its row locks and bloat would last
/// for the whole rewrite while orders are written (guide §7, "tables with millions of rows").
pub const BIG_TABLE_ROWS: i64 = 1_000_000;

static UNBOUNDED_WRITE: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(
        r"(?is)^\s*(UPDATE|DELETE\s+FROM)\s+(?:ONLY\s+)?([a-z_][a-z0-9_]*\.)?([a-z_][a-z0-9_]*)\b",
    )
    .unwrap()
});

pub fn lint(migrations: &[Migration]) -> Vec<Finding> {
    lint_with_sizes(migrations, None)
}

/// [`lint`], knowing each table's estimated rows (`sizes`, from the target database when lint
/// is connected): an unbounded UPDATE/DELETE of a big table is an error pointing to the batch
/// form; unconnected, every unbounded one is a warning to check.
pub fn lint_with_sizes(
    migrations: &[Migration],
    sizes: Option<&std::collections::BTreeMap<String, i64>>,
) -> Vec<Finding> {
    let mut all = vec![];
    for m in migrations {
        let mut out = vec![];
        // The runner's own placeholders parse as what they stand for (same lines).
        let bound;
        let sql = if m.up.online.is_some() {
            bound =
                m.up.sql
                    .replace("${shadow}", "deploykit_shadow")
                    .replace("${batch.from}", "0")
                    .replace("${batch.to}", "0")
                    .replace("${batch.size}", "1");
            &bound
        } else {
            &m.up.sql
        };
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
        // An online migration's statement is a batch (its locks last one batch) or changes the
        // shadow copy nobody reads: squawk's whole-table rules do not apply to it.
        let findings = if m.up.online.is_some() {
            vec![]
        } else {
            linter.lint(&parse, sql)
        };
        for v in findings {
            let mut message = match &v.help {
                Some(help) => format!("{} {help}", v.message),
                None => v.message.clone(),
            };
            if v.code.to_string() == "changing-column-type" {
                message.push_str(" On a large table: a shadow migration (`-- deploykit: shadow table=NAME`, docs/db_migrate.md) changes it while it serves.");
            }
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
            if m.up.online.is_none()
                && let Some(c) = UNBOUNDED_WRITE.captures(&code)
                && !code.to_ascii_uppercase().contains("LIMIT")
            {
                let (verb, table) = (
                    c[1].split_whitespace().next().unwrap_or("").to_uppercase(),
                    &c[3],
                );
                let hint = format!(
                    "make it a batch migration (`-- deploykit: batch table={table} key=id` with `WHERE id > ${{batch.from}} AND id <= ${{batch.to}}`, docs/db_migrate.md)"
                );
                match sizes.map(|s| s.get(table).copied()) {
                    Some(Some(rows)) if rows >= BIG_TABLE_ROWS => out.push(finding(
                        line,
                        "big-table-rewrite",
                        format!("{verb} of {table} (≈{rows} rows) in one statement holds its row locks and bloats the table until it ends, while orders are written: {hint}"),
                    )),
                    Some(_) => {}
                    None => out.push(Finding {
                        severity: Severity::Warning,
                        ..finding(
                            line,
                            "unbounded-write",
                            format!("{verb} of {table} without a batch bound: if {table} is large (≥ {BIG_TABLE_ROWS} rows), {hint}; lint connected to the database judges by its size"),
                        )
                    }),
                }
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
