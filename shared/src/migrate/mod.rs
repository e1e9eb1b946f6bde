//! db_migrate: Flyway-named migrations (`V3.2.2__add_risk_limits_table.sql` with
//! `V3.2.2__add_risk_limits_table_rollback.sql` beside it) applied under a session advisory
//! lock, one transaction each, with lock/statement timeouts and retries. Owned on
//! tokio-postgres; docs/decisions/0006-db-migrate-without-refinery.md says why.

pub mod backup;
pub mod fingerprint;
pub mod history;
pub mod lint;
pub mod online;
pub mod ops;
pub mod refresh;
pub mod run;

use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

static NAME: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"^V(\d+(?:\.\d+)*)__([A-Za-z0-9_]+?)(_rollback)?\.sql$").unwrap()
});
/// The guide's custom scripts: `{version}_{description}.sql`.
static SCRIPT_NAME: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"^(\d+(?:\.\d+)*)_([A-Za-z0-9_]+?)(_rollback)?\.sql$").unwrap()
});

/// A repeatable migration (Flyway's `R__{description}.sql`): applied after the versioned ones,
/// again whenever its checksum changes.
static REPEATABLE: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(r"^R__([A-Za-z0-9_]+)\.sql$").unwrap());

/// The directive that runs a file outside a transaction, statement by statement.
pub const NO_TRANSACTION: &str = "-- deploykit: no-transaction";
/// A migration's own word on whether it can run while the services trade (first lines).
pub const ONLINE: &str = "-- deploykit: online";
pub const NEEDS_MAINTENANCE: &str = "-- deploykit: maintenance";

/// A dotted version, compared number by number (3.10 > 3.9; 3.2 == 3.2.0).
#[derive(Debug, Clone)]
pub struct Version(pub Vec<u64>);

// Equality must agree with Ord (3.2 == 3.2.0), so it is written by hand, not derived.
impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl Version {
    pub fn parse(s: &str) -> Option<Version> {
        let parts: Option<Vec<u64>> = s.split('.').map(|p| p.parse().ok()).collect();
        parts.filter(|p| !p.is_empty()).map(Version)
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        let n = self.0.len().max(other.0.len());
        for i in 0..n {
            let (a, b) = (
                self.0.get(i).copied().unwrap_or(0),
                other.0.get(i).copied().unwrap_or(0),
            );
            match a.cmp(&b) {
                Ordering::Equal => continue,
                o => return o,
            }
        }
        Ordering::Equal
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s: Vec<String> = self.0.iter().map(|n| n.to_string()).collect();
        f.write_str(&s.join("."))
    }
}

#[derive(Debug, Clone)]
pub struct Script {
    pub path: PathBuf,
    pub sql: String,
    pub checksum: String,
    /// Flyway's checksum of the same file (what an adopted Flyway history holds).
    pub flyway_checksum: i32,
    /// The first statement PostgreSQL refuses inside a transaction block (line, what): the
    /// file then runs outside one, as Flyway runs it, without needing the directive.
    pub outside_transaction: Option<(usize, String)>,
    /// A large-table change run in batches (`-- deploykit: batch` / `shadow`), or its
    /// built-in rollback.
    pub online: Option<online::Online>,
}

impl Script {
    fn load(path: &Path) -> Result<Script> {
        let sql =
            std::fs::read_to_string(path).map_err(|e| Error::io("read migration", path, e))?;
        let checksum = sha256_hex(sql.as_bytes());
        Ok(Script {
            online: online::parse(path, &sql)?,
            path: path.to_owned(),
            flyway_checksum: flyway_checksum(&sql),
            outside_transaction: statements(&sql)
                .iter()
                .find_map(|st| non_transactional(&st.sql).map(|w| (st.line, w))),
            sql,
            checksum,
        })
    }
    /// Whether a history row's checksum is this file's: ours (SHA-256) or Flyway's
    /// (`crc32:<n>`, from an adopted Flyway history).
    pub fn matches(&self, recorded: &str) -> bool {
        recorded == self.checksum || recorded == format!("crc32:{}", self.flyway_checksum)
    }
    pub fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
    /// Runs statement by statement outside a transaction: declared (the directive), or one of
    /// its statements cannot run inside one (detected, as Flyway does).
    pub fn no_transaction(&self) -> bool {
        self.outside_transaction.is_some() || self.declared_no_transaction()
    }
    pub fn declared_no_transaction(&self) -> bool {
        self.sql.lines().take(5).any(|l| l.trim() == NO_TRANSACTION)
    }
    /// The built-in rollback of a shadow change: swap the old table back.
    fn swap_back(&self) -> Option<Script> {
        let Some(online::Online::Shadow { table, .. }) = &self.online else {
            return None;
        };
        Some(Script {
            path: self
                .path
                .with_file_name(format!("{} (swap back)", self.file_name())),
            sql: String::new(),
            checksum: String::new(),
            flyway_checksum: 0,
            outside_transaction: None,
            online: Some(online::Online::SwapBack {
                table: table.clone(),
                of: self.file_name(),
            }),
        })
    }
    /// The script with Flyway's placeholders replaced (`${name}` → its value, `${flyway:filename}`
    /// → the file's name). A versioned file keeps the checksums of its bytes on disk; a
    /// repeatable one (`repeatable`) takes them after replacement, so a new value re-applies it
    /// — both as Flyway computes them. A placeholder without a value is an error at its line.
    pub fn with_placeholders(
        &self,
        values: &BTreeMap<String, String>,
        repeatable: bool,
    ) -> Result<Script> {
        static RE: LazyLock<regex::Regex> =
            LazyLock::new(|| regex::Regex::new(r"\$\{([A-Za-z0-9_.:-]+)\}").unwrap());
        if !self.sql.contains("${") {
            return Ok(self.clone());
        }
        let mut missing = None;
        let sql = RE.replace_all(&self.sql, |c: &regex::Captures| {
            let name = &c[1];
            match (name, values.get(name)) {
                _ if online::is_runner_placeholder(name) => c[0].to_string(),
                (_, Some(v)) => v.clone(),
                ("flyway:filename", None) => self.file_name(),
                (_, None) => {
                    if missing.is_none() {
                        missing = Some((name.to_string(), c.get(0).map_or(0, |m| m.start())));
                    }
                    c[0].to_string()
                }
            }
        });
        if let Some((name, at)) = missing {
            return Err(Error::config(
                format!(
                    "{}:{}",
                    self.path.display(),
                    line_of(&self.sql, self.sql[..at].chars().count() + 1)
                ),
                format!(
                    "no value for placeholder ${{{name}}}: set it in [environments.<env>.migrate.placeholders]"
                ),
            ));
        }
        let sql = sql.into_owned();
        let (checksum, flyway) = if repeatable {
            (sha256_hex(sql.as_bytes()), flyway_checksum(&sql))
        } else {
            (self.checksum.clone(), self.flyway_checksum)
        };
        Ok(Script {
            online: online::parse(&self.path, &sql)?,
            path: self.path.clone(),
            outside_transaction: statements(&sql)
                .iter()
                .find_map(|st| non_transactional(&st.sql).map(|w| (st.line, w))),
            sql,
            checksum,
            flyway_checksum: flyway,
        })
    }

    /// Why it runs outside a transaction, for the report.
    pub fn why_no_transaction(&self) -> Option<String> {
        match &self.outside_transaction {
            Some((line, what)) => {
                Some(format!("{what} at line {line} cannot run in a transaction"))
            }
            None => self
                .declared_no_transaction()
                .then(|| format!("`{NO_TRANSACTION}`")),
        }
    }
    /// `Some(true)`: declared online-safe; `Some(false)`: declared to need maintenance.
    pub fn declared_online(&self) -> Option<bool> {
        self.sql.lines().take(5).find_map(|l| match l.trim() {
            ONLINE => Some(true),
            NEEDS_MAINTENANCE => Some(false),
            _ => None,
        })
    }
}

/// `R__{description}.sql`: no version, applied after every versioned migration (in description
/// order, as Flyway does) whenever it is new or its checksum changed.
#[derive(Debug, Clone)]
pub struct Repeatable {
    pub description: String,
    pub script: Script,
}

/// Every file's placeholders replaced (see [`Script::with_placeholders`]).
pub fn replace_placeholders(
    all: &mut [Migration],
    repeatables: &mut [Repeatable],
    values: &BTreeMap<String, String>,
) -> Result<()> {
    for m in all.iter_mut() {
        m.up = m.up.with_placeholders(values, false)?;
        if let Some(d) = &m.down {
            m.down = Some(d.with_placeholders(values, false)?);
        }
    }
    for r in repeatables.iter_mut() {
        r.script = r.script.with_placeholders(values, true)?;
    }
    Ok(())
}

/// The repeatable migrations of `dir`, in description order.
pub fn load_repeatables(dir: &Path) -> Result<Vec<Repeatable>> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Error::config(
            dir.display().to_string(),
            format!("cannot read migrations directory: {e}; pass --migrations DIR"),
        )
    })?;
    let mut out = vec![];
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        let Some(file) = path.file_name().map(|f| f.to_string_lossy().into_owned()) else {
            continue;
        };
        if let Some(c) = REPEATABLE.captures(&file) {
            out.push(Repeatable {
                description: c[1].to_string(),
                script: Script::load(&path)?,
            });
        }
    }
    out.sort_by(|a, b| a.description.cmp(&b.description));
    Ok(out)
}

#[derive(Debug, Clone)]
pub struct Migration {
    pub version: Version,
    pub description: String,
    pub up: Script,
    pub down: Option<Script>,
}

/// Flyway's checksum of a migration (decision 0025): CRC-32 over the UTF-8 bytes of each line
/// without its terminator (`\n`, `\r\n` or `\r`, as Java's `BufferedReader.readLine` splits),
/// a byte-order mark at the start dropped, as a signed 32-bit integer. Line endings and a BOM
/// therefore do not change it; any other byte does.
pub fn flyway_checksum(text: &str) -> i32 {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut crc = crc32fast::Hasher::new();
    let mut rest = text;
    while !rest.is_empty() {
        let end = rest.find(['\n', '\r']).unwrap_or(rest.len());
        crc.update(&rest.as_bytes()[..end]);
        rest = &rest[end..];
        // One terminator: \r\n counts once, like readLine.
        rest = rest
            .strip_prefix("\r\n")
            .or_else(|| rest.strip_prefix('\n'))
            .or_else(|| rest.strip_prefix('\r'))
            .unwrap_or(rest);
    }
    crc.finalize() as i32
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Every `.sql` file in `dir` must be a migration or a rollback: anything else, a duplicate
/// version or a rollback without its migration is an error (exit 3), never a silent skip.
pub fn load_dir(dir: &Path) -> Result<Vec<Migration>> {
    load_dir_as(dir, crate::config::MigrationLayout::Flyway)
}

/// [`load_dir`] for a naming `layout` (the environment's `migrate.layout`).
pub fn load_dir_as(dir: &Path, layout: crate::config::MigrationLayout) -> Result<Vec<Migration>> {
    let (name_re, example) = match layout {
        crate::config::MigrationLayout::Flyway => (
            &*NAME,
            "V<version>__<description>.sql (e.g. V3.2.2__add_risk_limits_table.sql), its _rollback.sql, or R__<description>.sql (repeatable)",
        ),
        crate::config::MigrationLayout::Scripts => (
            &*SCRIPT_NAME,
            "<version>_<description>.sql (e.g. 3.2.2_add_risk_limits_table.sql, migrate.layout = \"scripts\") or its _rollback.sql",
        ),
    };
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Error::config(
            dir.display().to_string(),
            format!("cannot read migrations directory: {e}; pass --migrations DIR"),
        )
    })?;
    let mut ups: BTreeMap<Version, (String, Script)> = BTreeMap::new();
    let mut downs: BTreeMap<Version, (String, Script)> = BTreeMap::new();
    let mut names: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    names.sort();
    for path in names {
        let Some(file) = path.file_name().map(|f| f.to_string_lossy().into_owned()) else {
            continue;
        };
        if !file.ends_with(".sql") {
            // `.SQL`, `.Sql`…: a migration nobody would see skipped is an error, not silence.
            if file.to_ascii_lowercase().ends_with(".sql") {
                return Err(Error::config(
                    path.display().to_string(),
                    "migration files end in lower-case `.sql`: rename it",
                ));
            }
            continue;
        }
        if REPEATABLE.is_match(&file) {
            continue; // load_repeatables
        }
        let Some(c) = name_re.captures(&file) else {
            return Err(Error::config(
                path.display().to_string(),
                format!("not a migration name: write {example}"),
            ));
        };
        // Each part of the version must fit in 64 bits (the regex only promises digits).
        let Some(version) = Version::parse(&c[1]) else {
            return Err(Error::config(
                path.display().to_string(),
                format!(
                    "version {} has a part larger than {}: use smaller numbers",
                    &c[1],
                    u64::MAX
                ),
            ));
        };
        let desc = c[2].to_string();
        let target = if c.get(3).is_some() {
            &mut downs
        } else {
            &mut ups
        };
        if let Some((_, other)) = target.get(&version) {
            return Err(Error::config(
                path.display().to_string(),
                format!(
                    "duplicate version {version}: {} has the same version",
                    other.file_name()
                ),
            ));
        }
        let script = Script::load(&path)?;
        // A file with no statement would be recorded as applied while changing nothing.
        if strip_comments(&script.sql)
            .trim()
            .trim_matches(';')
            .trim()
            .is_empty()
        {
            return Err(Error::config(
                path.display().to_string(),
                "the file holds no SQL statement (empty or comments only): write the migration or remove the file",
            ));
        }
        if !script.no_transaction()
            && let Some((stmt, what)) = statements(&script.sql)
                .into_iter()
                .find_map(|st| transaction_control(&st.sql).map(|w| (st, w)))
        {
            return Err(Error::config(
                format!("{}:{}", path.display(), stmt.line),
                format!(
                    "`{what}` in a migration that runs in one transaction would end it early and leave the rest to run on its own: remove it, or put `{NO_TRANSACTION}` in the first lines to run the file statement by statement"
                ),
            ));
        }
        target.insert(version, (desc, script));
    }
    let mut out = vec![];
    for (version, (desc, down)) in &downs {
        match ups.get(version) {
            Some((d, _)) if d == desc => {}
            _ => {
                return Err(Error::config(
                    down.path.display().to_string(),
                    format!("rollback for V{version}__{desc} has no migration beside it"),
                ));
            }
        }
    }
    for (version, (description, up)) in ups {
        let down = downs.remove(&version).map(|(_, s)| s);
        if up.swap_back().is_some()
            && let Some(d) = &down
        {
            return Err(Error::config(
                d.path.display().to_string(),
                "a shadow migration's rollback is built in (the old table swapped back until `db_migrate cleanup`): remove this file",
            ));
        }
        let down = down.or_else(|| up.swap_back());
        out.push(Migration {
            version,
            description,
            up,
            down,
        });
    }
    Ok(out)
}

/// 1-based line of a character offset (PostgreSQL reports error positions in characters).
pub fn line_of(sql: &str, char_pos: usize) -> usize {
    sql.chars()
        .take(char_pos.saturating_sub(1))
        .filter(|c| *c == '\n')
        .count()
        + 1
}

/// One statement of a file: its text (trimmed) and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub sql: String,
    /// Byte offset of the trimmed statement in the file.
    pub offset: usize,
    /// 1-based line of its first character.
    pub line: usize,
}

/// Split SQL into statements at top-level semicolons (quotes, dollar quotes and comments
/// respected), for files that must run outside a transaction one statement at a time. One pass
/// over the bytes: a 50 MB file costs what its length costs (the delimiters are ASCII, so byte
/// offsets always fall on character boundaries).
pub fn statements(sql: &str) -> Vec<Statement> {
    let b = sql.as_bytes();
    let n = b.len();
    let mut out = vec![];
    let (mut start, mut line_at_start) = (0usize, 1usize);
    // Where the current statement's code begins (comments before it are not part of it).
    let mut code: Option<usize> = None;
    let mut i = 0;
    let mut end_statement =
        |start: &mut usize, line_at_start: &mut usize, end: usize, code: Option<usize>| {
            if let Some(c) = code {
                out.push(Statement {
                    sql: sql[c..end].trim_end().to_string(),
                    offset: c,
                    line: *line_at_start + sql[*start..c].matches('\n').count(),
                });
            }
            *line_at_start += sql[*start..end].matches('\n').count();
            *start = end + 1;
        };
    while i < n {
        match b[i] {
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < n && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < n && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i = (i + 2).min(n);
                continue;
            }
            q @ (b'\'' | b'"') => {
                code.get_or_insert(i);
                i += 1;
                while i < n {
                    if b[i] == q {
                        if b.get(i + 1) == Some(&q) {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
            }
            b'$' => {
                code.get_or_insert(i);
                // $tag$ … $tag$ (a tag never starts with a digit: `$1` is a parameter).
                let mut j = i + 1;
                while j < n && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                    j += 1;
                }
                if j < n && b[j] == b'$' && !b.get(i + 1).is_some_and(u8::is_ascii_digit) {
                    let tag = &sql[i..=j];
                    i = match sql[j + 1..].find(tag) {
                        Some(e) => j + 1 + e + tag.len(),
                        None => n,
                    };
                    continue;
                }
            }
            b';' => {
                end_statement(&mut start, &mut line_at_start, i, code.take());
            }
            c if !c.is_ascii_whitespace() => {
                code.get_or_insert(i);
            }
            _ => {}
        }
        i += 1;
    }
    if start < n {
        end_statement(&mut start, &mut line_at_start, n, code);
    }
    out
}

/// The statements' texts alone.
pub fn split_statements(sql: &str) -> Vec<String> {
    statements(sql).into_iter().map(|s| s.sql).collect()
}

/// Byte offset → 1-based line, by binary search over the newline offsets (built once per
/// file; a lint finding costs log n, not n).
pub struct Lines(Vec<usize>);

impl Lines {
    pub fn new(sql: &str) -> Lines {
        Lines(
            sql.bytes()
                .enumerate()
                .filter(|(_, c)| *c == b'\n')
                .map(|(i, _)| i)
                .collect(),
        )
    }
    pub fn line(&self, offset: usize) -> usize {
        self.0.partition_point(|nl| *nl < offset) + 1
    }
}

/// A transaction-control statement (`BEGIN`, `COMMIT`, `ROLLBACK`, …), named, or `None`.
/// Inside a file the runner wraps in one transaction, such a statement would commit or discard
/// part of the migration behind the runner's back.
pub fn transaction_control(stmt: &str) -> Option<String> {
    let code = strip_comments(stmt).to_uppercase();
    let words: Vec<&str> = code.split_whitespace().take(2).collect();
    let first = words.first()?.trim_end_matches(';');
    let second = words.get(1).copied().unwrap_or("");
    let hit = match first {
        "BEGIN" | "COMMIT" | "END" | "ABORT" => true,
        "START" => second.starts_with("TRANSACTION"),
        // ROLLBACK TO SAVEPOINT stays inside the transaction.
        "ROLLBACK" => second != "TO",
        "PREPARE" => second.starts_with("TRANSACTION"),
        _ => false,
    };
    hit.then(|| words.join(" ").trim_end_matches(';').to_string())
}

/// What PostgreSQL refuses to run inside a transaction block ("cannot run inside a transaction
/// block"), when `stmt` is one of them: the statement's leading words.
pub fn non_transactional(stmt: &str) -> Option<String> {
    static RE: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(
            r"(?is)^\s*(CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY|DROP\s+INDEX\s+CONCURRENTLY|REINDEX\s+(?:\([^)]*\)\s*)?(?:INDEX|TABLE|SCHEMA|DATABASE|SYSTEM)\s+CONCURRENTLY|ALTER\s+TABLE\s+.*\bDETACH\s+PARTITION\s+.*\bCONCURRENTLY|VACUUM|CREATE\s+DATABASE|DROP\s+DATABASE|ALTER\s+SYSTEM|CREATE\s+TABLESPACE|DROP\s+TABLESPACE|(?:CREATE|ALTER|DROP)\s+SUBSCRIPTION)\b",
        )
        .unwrap()
    });
    let code = strip_comments(stmt);
    RE.captures(&code).map(|c| {
        c[1].split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_uppercase()
    })
}

pub(crate) fn strip_comments(s: &str) -> String {
    s.lines()
        .map(|l| l.split("--").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    /// The value Flyway's documentation shows it writing for `V3__Couple.sql` (its "Dry Runs"
    /// tutorial: `… 'V3__Couple.sql', -722651034, …`), the file exactly as printed there.
    #[test]
    fn flyway_checksum_matches_the_value_flyway_documents() {
        let couple = "create table COUPLE (\n    ID int not null,\n    PERSON1 int not null references PERSON(ID), \n    PERSON2 int not null references PERSON(ID) \n);\n";
        assert_eq!(flyway_checksum(couple), -722_651_034);
        // Line endings and a BOM do not change it; a trailing space does.
        assert_eq!(flyway_checksum(&couple.replace('\n', "\r\n")), -722_651_034);
        assert_eq!(flyway_checksum(&couple.replace('\n', "\r")), -722_651_034);
        assert_eq!(flyway_checksum(&format!("\u{feff}{couple}")), -722_651_034);
        assert_eq!(flyway_checksum(couple.trim_end()), -722_651_034);
        assert_ne!(
            flyway_checksum(&couple.replace("(ID) \n", "(ID)\n")),
            -722_651_034
        );
        assert_eq!(flyway_checksum(""), 0);
    }

    use super::*;

    #[test]
    fn versions_order_numerically() {
        let v = |s| Version::parse(s).unwrap();
        assert!(v("3.10") > v("3.9"));
        assert!(v("3.2.2") > v("3.2.1"));
        assert_eq!(v("3.2"), v("3.2.0"));
        assert!(Version::parse("3.x").is_none());
    }

    #[test]
    fn statements_know_their_lines_and_skip_leading_comments() {
        let sql = "-- deploykit: no-transaction\nCREATE INDEX a ON t (x);\n\n/* why */ SELECT $$;$$, $1;\nSELECT 'it''s;'";
        let s = statements(sql);
        assert_eq!(s.len(), 3, "{s:?}");
        assert_eq!(
            (s[0].line, s[0].sql.as_str()),
            (2, "CREATE INDEX a ON t (x)")
        );
        assert_eq!((s[1].line, s[1].sql.as_str()), (4, "SELECT $$;$$, $1"));
        assert_eq!((s[2].line, s[2].sql.as_str()), (5, "SELECT 'it''s;'"));
        let lines = Lines::new(sql);
        assert_eq!(lines.line(0), 1);
        assert_eq!(lines.line(s[2].offset), 5);
        for (stmt, hit) in [
            ("COMMIT", true),
            ("-- x\nrollback", true),
            ("ROLLBACK TO SAVEPOINT a", false),
            ("start transaction isolation level serializable", true),
            ("BEGIN", true),
            ("DO $$ BEGIN PERFORM 1; END $$", false),
            ("SAVEPOINT a", false),
        ] {
            assert_eq!(transaction_control(stmt).is_some(), hit, "{stmt}");
        }
    }

    #[test]
    fn statements_split_at_top_level() {
        let sql = "-- deploykit: no-transaction\nCREATE INDEX CONCURRENTLY a ON t (x);\n\
                   INSERT INTO t VALUES ('a;b');\nCREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;\n-- trailing\n";
        let s = split_statements(sql);
        assert_eq!(s.len(), 3, "{s:?}");
        assert!(s[1].contains("'a;b'"));
        assert!(s[2].contains("SELECT 1; $$"));
    }

    #[test]
    fn error_positions_map_to_lines() {
        assert_eq!(line_of("a\nb\nSELEC x", 5), 3);
        assert_eq!(line_of("x", 1), 1);
    }
}
