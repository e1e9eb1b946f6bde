//! smoke_tests --database-focused: schema version and integrity on a real PostgreSQL.

use crate::migrate::{self, Version, history};
use crate::report::Check;
use crate::smoke::Target;
use std::path::Path;
use std::time::Instant;

const G: &str = "database";

pub async fn checks(t: &Target, expect: Option<&str>, migrations: &Path) -> Vec<Check> {
    let start = Instant::now();
    let url = match t.env.database_url() {
        Ok(u) => u,
        Err(e) => {
            return vec![
                Check::fail(G, "Database reachable", e.to_string())
                    .hint("export the database URL variable"),
            ];
        }
    };
    let c = match crate::db::connect(&url, t.timeout).await {
        Ok(c) => c,
        Err(e) => return vec![Check::fail(G, "Database reachable", e.to_string())],
    };
    let _ = c
        .batch_execute(&format!(
            "SET statement_timeout = '{}ms'",
            t.timeout.as_millis()
        ))
        .await;
    let mut out = vec![schema_version(&c, expect, migrations, t.env.migrate.layout).await];
    out.push(required_tables(&c, &t.env.smoke.required_tables).await);
    out.push(orphans(&c).await);
    out.push(simple(&c, "No invalid indexes",
        "SELECT coalesce(string_agg(c.relname, ', '), '') FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace WHERE NOT i.indisvalid AND n.nspname NOT IN ('pg_catalog', 'information_schema')",
        "INVALID (a failed concurrent build): ",
        "drop and rebuild them: DROP INDEX CONCURRENTLY …; CREATE INDEX CONCURRENTLY …").await);
    out.push(simple(&c, "All constraints validated",
        "SELECT coalesce(string_agg(conrelid::regclass::text || '.' || conname, ', '), '') FROM pg_constraint
          WHERE NOT convalidated AND connamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)",
        "NOT VALID: ",
        "ALTER TABLE … VALIDATE CONSTRAINT … (takes only a SHARE UPDATE EXCLUSIVE lock)").await);
    out.push(row_counts(&c, &t.env.smoke.required_tables).await);
    out.push(replication(&c).await);
    let took = start.elapsed();
    out.into_iter().map(|c| c.took(took)).collect()
}

async fn schema_version(
    c: &tokio_postgres::Client,
    expect: Option<&str>,
    migrations: &Path,
    layout: crate::config::MigrationLayout,
) -> Check {
    let expected = match expect {
        Some(v) => Version::parse(v),
        None => migrate::load_dir_as(migrations, layout)
            .ok()
            .and_then(|all| all.last().map(|m| m.version.clone())),
    };
    let Some(expected) = expected else {
        return Check::fail(
            G,
            "Schema version",
            format!(
                "no expected version: pass --expect-schema or --migrations (read {})",
                migrations.display()
            ),
        );
    };
    // The version goes into the message: a name that changes every release would start a new
    // JUnit history each time.
    let name = "Schema version";
    match history::current(c).await {
        Ok(Some(v)) if v == expected => {
            Check::ok(G, name).message(format!("{v}, as expected: highest applied migration"))
        }
        Ok(Some(v)) => Check::fail(
            G,
            name,
            format!("the database is at {v}, expected {expected}"),
        )
        .hint("run db_migrate migrate, or deploy the matching release"),
        Ok(None) => Check::fail(
            G,
            name,
            format!("no migration has been applied (expected {expected})"),
        )
        .hint("run db_migrate migrate"),
        Err(e) => Check::fail(G, name, e.to_string()),
    }
}

async fn required_tables(c: &tokio_postgres::Client, tables: &[String]) -> Check {
    let mut missing = vec![];
    for t in tables {
        match c
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[t])
            .await
        {
            Ok(r) if r.get::<_, bool>(0) => {}
            Ok(_) => missing.push(t.clone()),
            Err(e) => {
                return Check::fail(G, "Required tables exist", crate::db::describe(&e));
            }
        }
    }
    if missing.is_empty() {
        Check::ok(G, "Required tables exist").message(tables.join(", "))
    } else {
        Check::fail(
            G,
            "Required tables exist",
            format!("missing: {}", missing.join(", ")),
        )
        .hint("check db_migrate info: a migration is missing or was rolled back")
    }
}

/// Rows whose foreign key points nowhere (possible after NOT VALID constraints, restores with
/// triggers off, or manual fixes). Every single-column and multi-column FK is checked.
async fn orphans(c: &tokio_postgres::Client) -> Check {
    let name = "No orphaned foreign keys";
    let fks = match c
        .query(
            "SELECT conname, conrelid::regclass::text, confrelid::regclass::text,
                    array(SELECT quote_ident(attname) FROM unnest(conkey) WITH ORDINALITY k(n, o) JOIN pg_attribute a ON a.attrelid = conrelid AND a.attnum = k.n ORDER BY o),
                    array(SELECT quote_ident(attname) FROM unnest(confkey) WITH ORDINALITY k(n, o) JOIN pg_attribute a ON a.attrelid = confrelid AND a.attnum = k.n ORDER BY o)
               FROM pg_constraint WHERE contype = 'f'
                AND connamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)",
            &[],
        )
        .await
    {
        Ok(r) => r,
        Err(e) => return Check::fail(G, name, crate::db::describe(&e)),
    };
    let mut bad = vec![];
    for fk in &fks {
        let (con, child, parent): (String, String, String) = (fk.get(0), fk.get(1), fk.get(2));
        let (ck, pk): (Vec<String>, Vec<String>) = (fk.get(3), fk.get(4));
        let not_null = ck
            .iter()
            .map(|k| format!("c.{k} IS NOT NULL"))
            .collect::<Vec<_>>()
            .join(" AND ");
        let join = ck
            .iter()
            .zip(&pk)
            .map(|(a, b)| format!("p.{b} = c.{a}"))
            .collect::<Vec<_>>()
            .join(" AND ");
        let q = format!(
            "SELECT count(*) FROM {child} c WHERE {not_null} AND NOT EXISTS (SELECT 1 FROM {parent} p WHERE {join})"
        );
        match c.query_one(&q, &[]).await {
            Ok(r) => {
                let n: i64 = r.get(0);
                if n > 0 {
                    bad.push(format!("{child}.{con}: {n} row(s) without a {parent}"));
                }
            }
            Err(e) => bad.push(format!("{child}.{con}: {}", crate::db::describe(&e))),
        }
    }
    if bad.is_empty() {
        Check::ok(G, name).message(format!("{} foreign key(s) checked", fks.len()))
    } else {
        Check::fail(G, name, bad.join("; "))
            .hint("repair or remove the orphaned rows before trading")
    }
}

async fn simple(
    c: &tokio_postgres::Client,
    name: &str,
    sql: &str,
    prefix: &str,
    hint: &str,
) -> Check {
    match c.query_one(sql, &[]).await {
        Ok(r) => {
            let list: String = r.get(0);
            if list.is_empty() {
                Check::ok(G, name)
            } else {
                Check::fail(G, name, format!("{prefix}{list}")).hint(hint.to_string())
            }
        }
        Err(e) => Check::fail(G, name, crate::db::describe(&e)),
    }
}

async fn row_counts(c: &tokio_postgres::Client, tables: &[String]) -> Check {
    let mut counts = serde_json::Map::new();
    let mut parts = vec![];
    for t in tables {
        let Ok(r) = c
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[t])
            .await
        else {
            continue;
        };
        if !r.get::<_, bool>(0) {
            continue;
        }
        match c.query_one(&format!("SELECT count(*) FROM {t}"), &[]).await {
            Ok(r) => {
                let n: i64 = r.get(0);
                counts.insert(t.clone(), n.into());
                parts.push(format!("{t} {n}"));
            }
            Err(e) => {
                return Check::fail(G, "Row counts", format!("{t}: {}", crate::db::describe(&e)));
            }
        }
    }
    Check::ok(G, "Row counts")
        .message(parts.join(", "))
        .data(serde_json::Value::Object(counts))
}

async fn replication(c: &tokio_postgres::Client) -> Check {
    let name = "Replication lag";
    match c
        .query_one("SELECT count(*), coalesce(max(extract(epoch FROM replay_lag)), 0)::float8 FROM pg_stat_replication", &[])
        .await
    {
        Ok(r) => {
            let (n, lag): (i64, f64) = (r.get(0), r.get(1));
            if n == 0 {
                Check::skip(G, name, "no replica attached")
            } else if lag > 10.0 {
                Check::fail(G, name, format!("replay lag {lag:.1} s on the slowest of {n} replica(s) (limit 10 s)"))
                    .hint("wait for replicas to catch up before switching traffic")
            } else {
                Check::ok(G, name).message(format!("{n} replica(s), max replay lag {lag:.2} s"))
            }
        }
        Err(e) => Check::fail(G, name, crate::db::describe(&e)),
    }
}
