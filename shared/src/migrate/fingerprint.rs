//! A schema fingerprint: tables, columns, indexes, constraints, views and sequences of the
//! public schema (our history table left out), so `rehearse` can prove up → rollback → up
//! returns to exactly the schema it started from.

use crate::error::Result;

const QUERY: &str = "
SELECT coalesce(string_agg(x, E'\\n' ORDER BY x), '') FROM (
  SELECT 'column ' || table_name || '.' || column_name || ' ' || data_type || ' null=' || is_nullable
         || ' default=' || coalesce(column_default, '')
    FROM information_schema.columns
   WHERE table_schema = 'public' AND table_name NOT IN ('deploykit_schema_history', 'schema_version', 'deploykit_online_progress')
  UNION ALL
  SELECT 'index ' || indexdef FROM pg_indexes
   WHERE schemaname = 'public' AND tablename NOT IN ('deploykit_schema_history', 'deploykit_online_progress')
  UNION ALL
  SELECT 'constraint ' || conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid)
    FROM pg_constraint
   WHERE connamespace = 'public'::regnamespace AND conrelid::regclass::text NOT IN ('deploykit_schema_history', 'deploykit_online_progress')
  UNION ALL
  SELECT 'view ' || viewname FROM pg_views WHERE schemaname = 'public' AND viewname <> 'schema_version'
  UNION ALL
  SELECT 'sequence ' || sequence_name FROM information_schema.sequences
   WHERE sequence_schema = 'public' AND sequence_name NOT LIKE 'deploykit_schema_history%'
) s(x)";

/// The fingerprint's text (one object per line, sorted) — compare, and diff for the message.
pub async fn schema(c: &tokio_postgres::Client) -> Result<String> {
    let row = c
        .query_one(QUERY, &[])
        .await
        .map_err(|e| crate::db::error("PostgreSQL", e))?;
    Ok(row.get(0))
}

/// Lines only in `a` and only in `b`, for a readable mismatch.
pub fn diff(a: &str, b: &str) -> String {
    let (la, lb): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let only_a: Vec<_> = la
        .iter()
        .filter(|l| !lb.contains(l))
        .map(|l| format!("- {l}"))
        .collect();
    let only_b: Vec<_> = lb
        .iter()
        .filter(|l| !la.contains(l))
        .map(|l| format!("+ {l}"))
        .collect();
    [only_a, only_b]
        .concat()
        .into_iter()
        .take(10)
        .collect::<Vec<_>>()
        .join("; ")
}
