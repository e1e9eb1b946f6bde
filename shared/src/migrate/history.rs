//! The history table and the `schema_version` view engineers query — or, on a database Flyway
//! has migrated, Flyway's own history table, adopted as it is (decision 0025): read as the
//! applied history, verified with Flyway's checksum, continued with rows Flyway would write.

use super::Version;
use crate::error::{Error, Result};

pub const TABLE: &str = "deploykit_schema_history";

/// `installed_on` uses `clock_timestamp()`, not `now()`: rows written in one transaction never
/// share a timestamp, so the guide's `ORDER BY installed_on DESC LIMIT 1` stays right. The
/// tools themselves order by `installed_rank`.
pub const CREATE: &str = "
CREATE TABLE IF NOT EXISTS deploykit_schema_history (
    installed_rank  bigserial PRIMARY KEY,
    version         text NOT NULL,
    description     text NOT NULL,
    script          text NOT NULL,
    checksum        text NOT NULL,
    installed_by    text NOT NULL DEFAULT current_user,
    installed_on    timestamptz NOT NULL DEFAULT clock_timestamp(),
    execution_ms    bigint NOT NULL,
    lock_wait_ms    bigint NOT NULL DEFAULT 0,
    retries         integer NOT NULL DEFAULT 0,
    max_blocked_ms  bigint NOT NULL DEFAULT 0,
    success         boolean NOT NULL,
    rolled_back_on  timestamptz
);
-- What happened when success is false (a no-transaction file that stopped part-way).
ALTER TABLE deploykit_schema_history ADD COLUMN IF NOT EXISTS detail text NOT NULL DEFAULT '';
CREATE OR REPLACE VIEW schema_version AS
    SELECT version, description, installed_on, installed_rank, installed_by, execution_ms
    FROM deploykit_schema_history
    WHERE success AND rolled_back_on IS NULL AND version <> '';
";

/// Where the applied history lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Store {
    /// Ours: `deploykit_schema_history` and the `schema_version` view.
    Deploykit,
    /// Flyway's table (`flyway_schema_history`, or Flyway 3/4's `schema_version` table), adopted.
    Flyway(String),
}

impl Store {
    pub fn is_flyway(&self) -> bool {
        matches!(self, Store::Flyway(_))
    }
    /// The table, quoted.
    pub fn table(&self) -> String {
        match self {
            Store::Deploykit => TABLE.into(),
            Store::Flyway(t) => format!("\"{}\"", t.replace('"', "\"\"")),
        }
    }
}

/// A Flyway history table of the current schema, if there is one: Flyway 5+'s
/// `flyway_schema_history`, else a Flyway 3/4 `schema_version` *table* (ours is a view).
pub async fn store(c: &tokio_postgres::Client) -> Result<Store> {
    let row = c
        .query_opt(
            "SELECT cl.relname::text FROM pg_class cl
               JOIN pg_namespace n ON n.oid = cl.relnamespace
              WHERE n.nspname = current_schema() AND cl.relkind IN ('r', 'p')
                AND cl.relname IN ('flyway_schema_history', 'schema_version')
                AND (SELECT count(*) FROM pg_attribute a WHERE a.attrelid = cl.oid
                       AND a.attname IN ('installed_rank', 'type', 'checksum', 'success')) = 4
              ORDER BY cl.relname = 'flyway_schema_history' DESC LIMIT 1",
            &[],
        )
        .await
        .map_err(db_err)?;
    Ok(match row {
        Some(r) => Store::Flyway(r.get(0)),
        None => Store::Deploykit,
    })
}

/// Flyway's history table for PostgreSQL, as Flyway creates it (its `getRawCreateScript`).
pub const FLYWAY_CREATE: &str = r#"
CREATE TABLE "flyway_schema_history" (
    "installed_rank" INT NOT NULL,
    "version" VARCHAR(50),
    "description" VARCHAR(200) NOT NULL,
    "type" VARCHAR(20) NOT NULL,
    "script" VARCHAR(1000) NOT NULL,
    "checksum" INTEGER,
    "installed_by" VARCHAR(100) NOT NULL,
    "installed_on" TIMESTAMP NOT NULL DEFAULT now(),
    "execution_time" INTEGER NOT NULL,
    "success" BOOLEAN NOT NULL
);
ALTER TABLE "flyway_schema_history" ADD CONSTRAINT "flyway_schema_history_pk" PRIMARY KEY ("installed_rank");
CREATE INDEX "flyway_schema_history_s_idx" ON "flyway_schema_history" ("success");
"#;

/// Flyway's baseline row's description and script.
pub const FLYWAY_BASELINE: &str = "<< Flyway Baseline >>";

/// A row Flyway marked failed (`success = false`): Flyway's migrate refuses to go on until
/// `repair` removes it, and so does db_migrate.
#[derive(Debug, Clone)]
pub struct Failed {
    pub version: Option<String>,
    pub script: String,
}

pub async fn flyway_failed(c: &tokio_postgres::Client, store: &Store) -> Result<Vec<Failed>> {
    if !store.is_flyway() {
        return Ok(vec![]);
    }
    let rows = c
        .query(
            &format!(
                "SELECT version, script FROM {} WHERE NOT success ORDER BY installed_rank",
                store.table()
            ),
            &[],
        )
        .await
        .map_err(db_err)?;
    Ok(rows
        .iter()
        .map(|r| Failed {
            version: r.get(0),
            script: r.get(1),
        })
        .collect())
}

/// Flyway's description of a file: the name's description with `_` read as spaces.
pub fn flyway_description(description: &str) -> String {
    description.replace('_', " ")
}

#[derive(Debug, Clone)]
pub struct Applied {
    pub rank: i64,
    pub version: Version,
    pub description: String,
    pub script: String,
    pub checksum: String,
    pub installed_by: String,
    pub installed_on: String,
    pub execution_ms: i64,
    /// A Flyway `BASELINE` row: every version up to this one counts as applied, unverified.
    pub baseline: bool,
}

fn db_err(e: tokio_postgres::Error) -> Error {
    crate::db::error("PostgreSQL", e)
}

pub async fn exists(c: &tokio_postgres::Client) -> Result<bool> {
    let row = c
        .query_one(
            "SELECT to_regclass('public.deploykit_schema_history') IS NOT NULL",
            &[],
        )
        .await
        .map_err(db_err)?;
    Ok(row.get(0))
}

/// Applied migrations (successful, not rolled back), in install order.
pub async fn applied(c: &tokio_postgres::Client) -> Result<Vec<Applied>> {
    applied_in(c, &store(c).await?).await
}

/// [`applied`] from a history already located.
pub async fn applied_in(c: &tokio_postgres::Client, store: &Store) -> Result<Vec<Applied>> {
    if store.is_flyway() {
        return flyway_applied(c, store).await;
    }
    if !exists(c).await? {
        return Ok(vec![]);
    }
    let rows = c
        .query(
            "SELECT installed_rank, version, description, script, checksum, installed_by,
                    to_char(installed_on AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), execution_ms
             FROM deploykit_schema_history WHERE success AND rolled_back_on IS NULL AND version <> ''
             ORDER BY installed_rank",
            &[],
        )
        .await
        .map_err(db_err)?;
    rows.iter()
        .map(|r| {
            let v: String = r.get(1);
            Ok(Applied {
                rank: r.get(0),
                version: Version::parse(&v).ok_or_else(|| {
                    Error::Conflict(format!("history row has an unreadable version `{v}`"))
                })?,
                description: r.get(2),
                script: r.get(3),
                checksum: r.get(4),
                installed_by: r.get(5),
                installed_on: r.get(6),
                execution_ms: r.get(7),
                baseline: false,
            })
        })
        .collect()
}

/// Flyway's successful versioned rows (and its baseline), checksums as `crc32:<n>` — what
/// [`super::Script::matches`] compares with Flyway's checksum of the file. Repeatable rows
/// (no version) and Flyway Teams' undo rows are not versions this history holds.
async fn flyway_applied(c: &tokio_postgres::Client, store: &Store) -> Result<Vec<Applied>> {
    let rows = c
        .query(
            &format!(
                "SELECT installed_rank::bigint, version, description, script, checksum, installed_by,
                        to_char(installed_on, 'YYYY-MM-DD\"T\"HH24:MI:SS.MS'), execution_time::bigint, type
                   FROM {} WHERE success AND version IS NOT NULL AND type NOT LIKE 'UNDO%'
                    AND type <> 'DELETE' ORDER BY installed_rank",
                store.table()
            ),
            &[],
        )
        .await
        .map_err(db_err)?;
    rows.iter()
        .map(|r| {
            let v: String = r.get(1);
            let checksum: Option<i32> = r.get(4);
            let kind: String = r.get(8);
            Ok(Applied {
                rank: r.get(0),
                version: Version::parse(&v).ok_or_else(|| {
                    Error::Conflict(format!("Flyway's history has an unreadable version `{v}`"))
                })?,
                description: r.get(2),
                script: r.get(3),
                checksum: checksum.map(|n| format!("crc32:{n}")).unwrap_or_default(),
                installed_by: r.get(5),
                installed_on: r.get(6),
                execution_ms: r.get(7),
                baseline: kind.contains("BASELINE"),
            })
        })
        .collect()
}

/// The highest applied version over successful rows — not the latest by timestamp or rank: an
/// out-of-order file applied last is older than the schema it joined.
pub async fn current(c: &tokio_postgres::Client) -> Result<Option<Version>> {
    Ok(applied(c).await?.into_iter().map(|a| a.version).max())
}

/// The checksum each repeatable migration (by script name) was last applied with: our rows
/// with an empty version, Flyway's with none.
pub async fn repeatables(
    c: &tokio_postgres::Client,
    store: &Store,
) -> Result<std::collections::BTreeMap<String, String>> {
    let sql = match store {
        Store::Deploykit => {
            if !exists(c).await? {
                return Ok(Default::default());
            }
            "SELECT DISTINCT ON (script) script, checksum FROM deploykit_schema_history
              WHERE version = '' AND success ORDER BY script, installed_rank DESC"
                .to_string()
        }
        Store::Flyway(_) => format!(
            "SELECT DISTINCT ON (script) script, 'crc32:' || checksum FROM {}
              WHERE version IS NULL AND type = 'SQL' AND success ORDER BY script, installed_rank DESC",
            store.table()
        ),
    };
    let rows = c.query(&sql, &[]).await.map_err(db_err)?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get::<_, String>(0),
                r.get::<_, Option<String>>(1).unwrap_or_default(),
            )
        })
        .collect())
}
