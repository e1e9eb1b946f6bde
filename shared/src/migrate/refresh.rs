//! Staging refresh with anonymized production data (guide §4 "Staging environment refresh").
//!
//! Production values never reach staging: every column is classified in a rules file and the
//! anonymizing expression runs *inside production's* `COPY (SELECT …) TO STDOUT`, so only
//! anonymized rows cross the wire. Schema (pg_dump, pre-data and post-data) and data go into
//! staging in ONE transaction: a refresh that fails leaves staging exactly as it was. Keyed
//! hashes are deterministic, so a value hashed in `accounts.code` and in `orders.account_code`
//! stays equal and foreign keys still match (post-data re-creates and validates them).

use crate::error::{Error, Result};
use crate::redact::Secret;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// Tables a refresh never copies: deploy-tools' own records of the environment they live in —
/// the target keeps its own deploy journal, environment lock and accepted latency baselines.
pub const KEPT_BY_TARGET: &[&str] = &["deploy_journal", "deploy_lock", "deploy_latency_baseline"];
/// Copied as-is without a rule: migration bookkeeping, not data about anyone.
pub const IMPLICIT_KEEP: &[&str] = &[super::history::TABLE];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    Keep,
    Null,
    Hash,
    Fake(Fake),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fake {
    Text,
    Email,
    Name,
    Phone,
}

impl Rule {
    fn parse(s: &str) -> Option<Rule> {
        Some(match s {
            "keep" => Rule::Keep,
            "null" => Rule::Null,
            "hash" => Rule::Hash,
            "fake" => Rule::Fake(Fake::Text),
            "fake:email" => Rule::Fake(Fake::Email),
            "fake:name" => Rule::Fake(Fake::Name),
            "fake:phone" => Rule::Fake(Fake::Phone),
            _ => return None,
        })
    }
    pub fn needs_key(&self) -> bool {
        matches!(self, Rule::Hash | Rule::Fake(_))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    /// Variable holding the key of the keyed hashes (a secret; rotate it to unlink refreshes).
    #[serde(default = "default_key_env")]
    hash_key_env: String,
    /// `"schema.table" = { column = "keep" | "null" | "hash" | "fake[:email|:name|:phone]" }`
    tables: BTreeMap<String, BTreeMap<String, String>>,
}

fn default_key_env() -> String {
    crate::env_vars::EnvVars::ANONYMIZE_KEY.into()
}

#[derive(Debug)]
pub struct Rules {
    pub hash_key_env: String,
    /// (schema, table) → column → rule
    pub tables: BTreeMap<(String, String), BTreeMap<String, Rule>>,
}

impl Rules {
    pub fn load(path: &Path) -> Result<Rules> {
        let text =
            std::fs::read_to_string(path).map_err(|e| Error::io("read rules file", path, e))?;
        let f: RulesFile = toml::from_str(&text)
            .map_err(|e| Error::config(path.display().to_string(), e.message().to_string()))?;
        let mut tables = BTreeMap::new();
        for (name, cols) in f.tables {
            let (schema, table) = match name.split_once('.') {
                Some((s, t)) => (s.to_string(), t.to_string()),
                None => ("public".to_string(), name.clone()),
            };
            let mut rules = BTreeMap::new();
            for (col, r) in cols {
                let rule = Rule::parse(&r).ok_or_else(|| {
                    Error::config(
                        path.display().to_string(),
                        format!("tables.\"{name}\".{col} = \"{r}\": use keep, null, hash, fake, fake:email, fake:name or fake:phone"),
                    )
                })?;
                rules.insert(col, rule);
            }
            tables.insert((schema, table), rules);
        }
        Ok(Rules {
            hash_key_env: f.hash_key_env,
            tables,
        })
    }
}

/// One column of the source, as the catalog describes it.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    /// `format_type` (e.g. `character varying(40)`).
    pub type_text: String,
    /// `pg_type.typname` (e.g. `varchar`).
    pub type_name: String,
    /// Declared length of varchar/char, if any.
    pub max_len: Option<i32>,
    pub not_null: bool,
    pub generated: bool,
}

#[derive(Debug, Clone)]
pub struct Table {
    pub schema: String,
    pub name: String,
    pub columns: Vec<Column>,
}

impl Table {
    pub fn qualified(&self) -> String {
        format!("{}.{}", ident(&self.schema), ident(&self.name))
    }
    pub fn label(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}

pub fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn db_err(what: &str, e: tokio_postgres::Error) -> Error {
    crate::db::error(&format!("PostgreSQL ({what})"), e)
}

/// Every ordinary table of the user schemas with its columns.
pub async fn tables(c: &impl tokio_postgres::GenericClient) -> Result<Vec<Table>> {
    let rows = c
        .query(
            "SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod), t.typname,
                    CASE WHEN t.typname IN ('varchar', 'bpchar') AND a.atttypmod > 4 THEN a.atttypmod - 4 END,
                    a.attnotnull, a.attgenerated <> ''
             FROM pg_attribute a
             JOIN pg_class c ON c.oid = a.attrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_type t ON t.oid = a.atttypid
             WHERE c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
               AND n.nspname NOT IN ('pg_catalog', 'information_schema')
               AND n.nspname NOT LIKE 'pg\\_%'
             ORDER BY n.nspname, c.relname, a.attnum",
            &[],
        )
        .await
        .map_err(|e| db_err("read the source catalog", e))?;
    let mut out: Vec<Table> = vec![];
    for r in rows {
        let (schema, name): (String, String) = (r.get(0), r.get(1));
        if KEPT_BY_TARGET.contains(&name.as_str()) {
            continue;
        }
        let col = Column {
            name: r.get(2),
            type_text: r.get(3),
            type_name: r.get(4),
            max_len: r.get(5),
            not_null: r.get(6),
            generated: r.get(7),
        };
        match out.last_mut() {
            Some(t) if t.schema == schema && t.name == name => t.columns.push(col),
            _ => out.push(Table {
                schema,
                name,
                columns: vec![col],
            }),
        }
    }
    Ok(out)
}

/// Every problem of the rules against the source, so one run shows all of them: errors for
/// unclassified columns (new columns must be decided, not leaked) and rules a column's type or
/// constraints cannot take; warnings for rules naming what the source does not have (yet: a
/// pending migration may add it — such a rule leaks nothing).
pub fn check_rules(rules: &Rules, tables: &[Table]) -> (Vec<String>, Vec<String>) {
    let mut problems = vec![];
    let mut warnings = vec![];
    for t in tables {
        let implicit = IMPLICIT_KEEP.contains(&t.name.as_str());
        let r = rules.tables.get(&(t.schema.clone(), t.name.clone()));
        for c in t.columns.iter().filter(|c| !c.generated) {
            match r.and_then(|r| r.get(&c.name)) {
                None if implicit => {}
                None => problems.push(format!(
                    "{}.{} ({}) is not classified",
                    t.label(),
                    c.name,
                    c.type_text
                )),
                Some(rule) => {
                    if let Err(e) = expression(rule, c) {
                        problems.push(format!("{}.{}: {e}", t.label(), c.name));
                    }
                }
            }
        }
    }
    for ((schema, table), cols) in &rules.tables {
        match tables
            .iter()
            .find(|t| &t.schema == schema && &t.name == table)
        {
            None => warnings.push(format!(
                "{schema}.{table} is in the rules but not in the source"
            )),
            Some(t) => {
                for col in cols.keys() {
                    if !t.columns.iter().any(|c| &c.name == col) {
                        warnings.push(format!(
                            "{schema}.{table}.{col} is in the rules but not in the source"
                        ));
                    }
                }
            }
        }
    }
    (problems, warnings)
}

const TEXT_TYPES: &[&str] = &["text", "varchar", "bpchar", "citext", "name"];
const INT_TYPES: &[&str] = &["int2", "int4", "int8"];

crate::failure!(
    /// An anonymizing rule that cannot apply to its column's type or constraints.
    UnfitRule
);

/// The anonymizing SQL expression for one column (NULL stays NULL).
pub fn expression(rule: &Rule, c: &Column) -> std::result::Result<String, UnfitRule> {
    let col = ident(&c.name);
    // Keyed SHA-256 of the value as hex; the key is a session setting, never in the SQL text.
    let hex = format!(
        "encode(sha256(convert_to(current_setting('deploykit.anonymize_key') || '|' || {col}::text, 'UTF8')), 'hex')"
    );
    let fit = |e: String| match c.max_len {
        Some(n) => format!("left({e}, {n})"),
        None => e,
    };
    let when = |e: String| format!("CASE WHEN {col} IS NULL THEN NULL ELSE {e} END");
    let text = TEXT_TYPES.contains(&c.type_name.as_str());
    Ok(match rule {
        Rule::Keep => col,
        Rule::Null if c.not_null => {
            return Err("is NOT NULL: use hash or fake instead of null".into());
        }
        Rule::Null => "NULL".into(),
        Rule::Hash if text => when(fit(format!("'h' || left({hex}, 20)"))),
        Rule::Hash if c.type_name == "int8" => {
            when(format!("('x' || left({hex}, 15))::bit(60)::bigint"))
        }
        Rule::Hash if c.type_name == "int4" => when(format!(
            "(('x' || left({hex}, 8))::bit(32)::bigint % 2147483647)::int4"
        )),
        Rule::Hash if c.type_name == "uuid" => when(format!("left({hex}, 32)::uuid")),
        Rule::Hash => {
            return Err(format!(
                "hash works on text, bigint, integer and uuid columns, not {}",
                c.type_text
            )
            .into());
        }
        Rule::Fake(f) if text => when(fit(match f {
            Fake::Text => format!("'fake_' || left({hex}, 12)"),
            Fake::Email => format!("'user_' || left({hex}, 12) || '@example.invalid'"),
            Fake::Name => format!("'Person ' || upper(left({hex}, 8))"),
            Fake::Phone => format!(
                "'+1555' || lpad((('x' || left({hex}, 8))::bit(32)::bigint % 10000000)::text, 7, '0')"
            ),
        })),
        Rule::Fake(Fake::Text) if INT_TYPES.contains(&c.type_name.as_str()) => when(format!(
            "(('x' || left({hex}, 8))::bit(32)::bigint % 10000)::{}",
            c.type_name
        )),
        Rule::Fake(Fake::Text) if c.type_name == "numeric" => when(format!(
            "((('x' || left({hex}, 8))::bit(32)::bigint % 1000000) / 100.0)::{}",
            c.type_text
        )),
        Rule::Fake(Fake::Text) if c.type_name == "date" => when(format!(
            "date '2000-01-01' + (('x' || left({hex}, 4))::bit(16)::int % 9000)"
        )),
        Rule::Fake(_) => {
            return Err(format!(
                "fake works on text columns (fake also on integer, numeric and date), not {}",
                c.type_text
            )
            .into());
        }
    })
}

/// `pg_dump --schema-only --section=SECTION` of the source's exported snapshot, as SQL the
/// target's transaction can run (psql meta-commands dropped).
async fn schema_sql(
    source: &Secret,
    snapshot: &str,
    section: &str,
    timeout: Duration,
) -> Result<String> {
    let mut cmd = super::backup::pg_dump(source)?;
    cmd.args([
        "--schema-only",
        &format!("--section={section}"),
        "--no-owner",
        "--no-privileges",
        &format!("--snapshot={snapshot}"),
    ]);
    for t in KEPT_BY_TARGET {
        cmd.args([
            "--exclude-table",
            t,
            "--exclude-table",
            &format!("{t}_id_seq"),
        ]);
    }
    cmd.stdout(std::process::Stdio::piped());
    let child = cmd.spawn().map_err(|e| {
        Error::config(
            "pg_dump",
            format!("cannot run pg_dump ({e}); install it: apt-get install postgresql-client"),
        )
    })?;
    let out = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| {
            Error::unreachable(
                "PostgreSQL (pg_dump)",
                format!("schema dump did not finish within {timeout:?}"),
            )
        })?
        .map_err(|e| Error::unreachable("PostgreSQL (pg_dump)", e))?;
    if !out.status.success() {
        return Err(Error::unreachable(
            "PostgreSQL (pg_dump)",
            crate::redact::redact(String::from_utf8_lossy(&out.stderr).trim()),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('\\'))
        .collect::<Vec<_>>()
        .join("\n"))
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Copied {
    pub table: String,
    pub rows: u64,
    pub anonymized_columns: usize,
}

/// Schema and anonymized data of `source` into `target`, in one target transaction.
pub async fn refresh(
    source_url: &Secret,
    target_url: &Secret,
    rules: &Rules,
    key: Option<&Secret>,
    timeout: Duration,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<Vec<Copied>> {
    let mut source = crate::db::connect(source_url, timeout).await?;
    let mut target = crate::db::connect(target_url, timeout).await?;
    // A consistent view of production for the schema dumps and every COPY.
    let stx = source
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(|e| db_err("source snapshot", e))?;
    let snapshot: String = stx
        .query_one("SELECT pg_export_snapshot()", &[])
        .await
        .map_err(|e| db_err("source snapshot", e))?
        .get(0);
    stx.query_one(
        "SELECT set_config('deploykit.anonymize_key', $1, true)",
        &[&key.map(|k| k.expose().to_string()).unwrap_or_default()],
    )
    .await
    .map_err(|e| db_err("source session", e))?;
    let tables = tables(&stx).await?;
    let pre = schema_sql(source_url, &snapshot, "pre-data", timeout).await?;
    let post = schema_sql(source_url, &snapshot, "post-data", timeout).await?;
    let sequences: Vec<(String, i64, bool)> = stx
        .query(
            "SELECT format('%I.%I', schemaname, sequencename), COALESCE(last_value, 1), last_value IS NOT NULL
             FROM pg_sequences
             WHERE schemaname NOT IN ('pg_catalog', 'information_schema')
               AND sequencename NOT IN (SELECT t || '_id_seq' FROM unnest($1::text[]) t)",
            &[&KEPT_BY_TARGET.iter().map(|s| s.to_string()).collect::<Vec<_>>()],
        )
        .await
        .map_err(|e| db_err("source sequences", e))?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();

    let ttx = target
        .transaction()
        .await
        .map_err(|e| db_err("target transaction", e))?;
    // The target keeps its own journal across the refresh.
    let schemas: Vec<String> = ttx
        .query(
            "SELECT nspname FROM pg_namespace
             WHERE nspname NOT IN ('pg_catalog', 'information_schema') AND nspname NOT LIKE 'pg\\_%'",
            &[],
        )
        .await
        .map_err(|e| db_err("target schemas", e))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let keep_journal: bool = ttx
        .query_one(
            "SELECT to_regclass('public.deploy_journal') IS NOT NULL",
            &[],
        )
        .await
        .map_err(|e| db_err("target journal", e))?
        .get(0);
    let mut ddl = String::from("SET LOCAL statement_timeout = 0;\n");
    if keep_journal {
        ddl.push_str("CREATE SCHEMA deploykit_keep; ALTER TABLE public.deploy_journal SET SCHEMA deploykit_keep;\n");
    }
    for s in &schemas {
        ddl.push_str(&format!("DROP SCHEMA {} CASCADE;\n", ident(s)));
    }
    ddl.push_str("CREATE SCHEMA public;\n");
    ttx.batch_execute(&ddl)
        .await
        .map_err(|e| db_err("clear the target", e))?;
    ttx.batch_execute(&pre)
        .await
        .map_err(|e| db_err("create the schema (pre-data)", e))?;
    let mut copied = vec![];
    let total = tables.len();
    for (i, t) in tables.iter().enumerate() {
        if cancel.is_cancelled() {
            return Err(Error::Interrupted(crate::error::Signal::Int));
        }
        let implicit = IMPLICIT_KEEP.contains(&t.name.as_str());
        let rules_of = rules.tables.get(&(t.schema.clone(), t.name.clone()));
        let cols: Vec<&Column> = t.columns.iter().filter(|c| !c.generated).collect();
        let mut exprs = vec![];
        let mut anonymized = 0;
        for c in &cols {
            let rule = match rules_of.and_then(|r| r.get(&c.name)) {
                Some(r) => r.clone(),
                None if implicit => Rule::Keep,
                None => {
                    return Err(Error::Conflict(format!(
                        "{}.{} is not classified",
                        t.label(),
                        c.name
                    )));
                }
            };
            if rule != Rule::Keep {
                anonymized += 1;
            }
            exprs.push(format!(
                "{} AS {}",
                expression(&rule, c).map_err(|e| Error::Conflict(e.0))?,
                ident(&c.name)
            ));
        }
        let names: Vec<String> = cols.iter().map(|c| ident(&c.name)).collect();
        let out = stx
            .copy_out(&format!(
                "COPY (SELECT {} FROM {}) TO STDOUT (FORMAT binary)",
                exprs.join(", "),
                t.qualified()
            ))
            .await
            .map_err(|e| db_err(&format!("read {}", t.label()), e))?;
        let sink = ttx
            .copy_in::<_, Bytes>(&format!(
                "COPY {} ({}) FROM STDIN (FORMAT binary)",
                t.qualified(),
                names.join(", ")
            ))
            .await
            .map_err(|e| db_err(&format!("write {}", t.label()), e))?;
        futures_util::pin_mut!(out);
        futures_util::pin_mut!(sink);
        while let Some(chunk) = out.next().await {
            let chunk = chunk.map_err(|e| db_err(&format!("read {}", t.label()), e))?;
            sink.send(chunk)
                .await
                .map_err(|e| db_err(&format!("write {}", t.label()), e))?;
        }
        let rows = sink
            .finish()
            .await
            .map_err(|e| db_err(&format!("write {}", t.label()), e))?;
        tracing::info!("[{}/{total}] {}: {rows} rows", i + 1, t.label());
        copied.push(Copied {
            table: t.label(),
            rows,
            anonymized_columns: anonymized,
        });
    }
    for (seq, value, called) in &sequences {
        ttx.query_one(
            &format!("SELECT setval('{}', $1, $2)", seq.replace('\'', "''")),
            &[value, called],
        )
        .await
        .map_err(|e| db_err(&format!("sequence {seq}"), e))?;
    }
    // Indexes, constraints and foreign keys: built and validated on the anonymized rows.
    ttx.batch_execute(&post)
        .await
        .map_err(|e| db_err("indexes and constraints (post-data)", e))?;
    if keep_journal {
        ttx.batch_execute(
            "ALTER TABLE deploykit_keep.deploy_journal SET SCHEMA public; DROP SCHEMA deploykit_keep;",
        )
        .await
        .map_err(|e| db_err("restore the target's journal", e))?;
    }
    ttx.commit()
        .await
        .map_err(|e| db_err("commit the refresh", e))?;
    stx.commit().await.ok();
    drop(source);
    Ok(copied)
}
