//! Unsafe-DDL rules for production. Each finding names file, line and what to do instead.

use super::Migration;
use std::sync::LazyLock;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Finding {
    pub file: String,
    pub line: usize,
    pub rule: &'static str,
    pub message: String,
}

struct Rule {
    id: &'static str,
    re: regex::Regex,
    /// The statement is fine when it contains this (upper-case) text.
    unless: Option<&'static str>,
    message: &'static str,
}

static RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    let r = |id, re: &str, unless, message| Rule {
        id,
        re: regex::Regex::new(re).unwrap(),
        unless,
        message,
    };
    vec![
        r(
            "index-not-concurrent",
            r"(?is)\bCREATE\s+(UNIQUE\s+)?INDEX\b",
            Some("CONCURRENTLY"),
            "CREATE INDEX without CONCURRENTLY blocks writes to the table for the whole build on an existing table; use CREATE INDEX CONCURRENTLY in a `-- deploykit: no-transaction` file",
        ),
        r(
            "not-null-without-default",
            r"(?is)\bADD\s+COLUMN\b[^;]*\bNOT\s+NULL\b",
            Some("DEFAULT"),
            "ADD COLUMN … NOT NULL without DEFAULT fails on a non-empty table; add a DEFAULT, or add nullable, backfill, then SET NOT NULL",
        ),
        r(
            "column-type-rewrite",
            r"(?is)\bALTER\s+COLUMN\s+\w+\s+(SET\s+DATA\s+)?TYPE\b",
            None,
            "ALTER COLUMN … TYPE rewrites the table under an ACCESS EXCLUSIVE lock; add a new column and backfill instead",
        ),
        r(
            "set-not-null",
            r"(?is)\bALTER\s+COLUMN\s+\w+\s+SET\s+NOT\s+NULL\b",
            None,
            "SET NOT NULL scans the whole table under ACCESS EXCLUSIVE; add a CHECK (col IS NOT NULL) NOT VALID, VALIDATE it, then SET NOT NULL",
        ),
        r(
            "constraint-not-valid",
            r"(?is)\bADD\s+CONSTRAINT\s+\w+\s+(FOREIGN\s+KEY|CHECK)\b",
            Some("NOT VALID"),
            "adding a FOREIGN KEY/CHECK validates every row under lock; add it NOT VALID, then VALIDATE CONSTRAINT separately",
        ),
        r(
            "vacuum-full-or-cluster",
            r"(?is)\b(VACUUM\s+FULL|CLUSTER)\b",
            None,
            "VACUUM FULL / CLUSTER rewrite the table under ACCESS EXCLUSIVE; never in a deploy",
        ),
        r(
            "timeout-override",
            r"(?is)\bSET\s+(LOCAL\s+)?(lock_timeout|statement_timeout)\s*(=|TO)\s*'?0'?\s*$",
            None,
            "disabling lock_timeout/statement_timeout lets this migration queue every query on its table; keep the runner's timeouts",
        ),
    ]
});

/// Only statements on tables that existed before this migration matter for locking rules:
/// `CREATE TABLE x` in the same file makes rules about `x` moot.
fn tables_created(sql: &str) -> Vec<String> {
    static RE: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(
            r"(?is)\bCREATE\s+TABLE\s+(IF\s+NOT\s+EXISTS\s+)?([A-Za-z_][A-Za-z0-9_.]*)",
        )
        .unwrap()
    });
    RE.captures_iter(sql).map(|c| c[2].to_lowercase()).collect()
}

fn statement_table(stmt: &str) -> Option<String> {
    static RE: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(r"(?is)\b(?:ON|ALTER\s+TABLE(?:\s+ONLY)?(?:\s+IF\s+EXISTS)?)\s+([A-Za-z_][A-Za-z0-9_.]*)").unwrap()
    });
    RE.captures(stmt).map(|c| c[1].to_lowercase())
}

pub fn lint(migrations: &[Migration]) -> Vec<Finding> {
    let mut out = vec![];
    for m in migrations {
        let sql = &m.up.sql;
        let created = tables_created(sql);
        let mut offset = 0;
        for stmt in super::split_statements(sql) {
            let at = sql[offset..].find(&stmt).map_or(offset, |i| offset + i);
            offset = at + stmt.len().min(sql.len() - at);
            let line = sql[..at].matches('\n').count() + 1;
            let code: String = stmt
                .lines()
                .map(|l| l.split("--").next().unwrap_or(""))
                .collect::<Vec<_>>()
                .join("\n");
            if statement_table(&code).is_some_and(|t| created.contains(&t)) {
                continue;
            }
            for rule in RULES.iter() {
                if matches_rule(rule, &code) {
                    out.push(Finding {
                        file: m.up.file_name(),
                        line,
                        rule: rule.id,
                        message: rule.message.to_string(),
                    });
                }
            }
            if m.up.no_transaction() && !code.to_uppercase().contains("CONCURRENTLY") {
                out.push(Finding {
                    file: m.up.file_name(),
                    line,
                    rule: "no-transaction-statement",
                    message: "a no-transaction file applies statement by statement and cannot roll back: keep only CONCURRENTLY statements in it".into(),
                });
            }
        }
        if m.down.is_none() {
            out.push(Finding {
                file: m.up.file_name(),
                line: 1,
                rule: "missing-rollback",
                message: format!(
                    "no rollback: add V{}__{}_rollback.sql",
                    m.version, m.description
                ),
            });
        }
    }
    out
}

fn matches_rule(rule: &Rule, code: &str) -> bool {
    rule.re.is_match(code) && rule.unless.is_none_or(|u| !code.to_uppercase().contains(u))
}
