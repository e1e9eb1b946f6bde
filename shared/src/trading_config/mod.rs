//! Schemas of the trading configs the guide deploys (§8: risk limits, strategy parameters,
//! application config, database connections, API endpoints): syntax with line:column, required
//! fields, ranges, consistency, and the diff against what is deployed. docs/validate_config.md
//! lists every rule; `live` checks what only the network can tell (a database accepts the new
//! settings, every endpoint answers).

pub mod live;

use crate::config::Role;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    RiskLimits,
    Strategy,
    App,
    Database,
    Endpoints,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::RiskLimits,
        Kind::Strategy,
        Kind::App,
        Kind::Database,
        Kind::Endpoints,
    ];

    /// The type's name, which is also its component in the service contract
    /// (`POST /admin/config/reload {"component": …}`, `GET /admin/config`) and its key in
    /// `config_files`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::RiskLimits => "risk-limits",
            Kind::Strategy => "strategy",
            Kind::App => "app",
            Kind::Database => "database",
            Kind::Endpoints => "endpoints",
        }
    }

    /// The environment's file of this type in the repository: `config/<env>/<this>`.
    pub fn file_name(self) -> &'static str {
        match self {
            Kind::RiskLimits => "risk_limits.yaml",
            Kind::Strategy => "strategy.yaml",
            Kind::App => "app.yaml",
            Kind::Database => "database.yaml",
            Kind::Endpoints => "endpoints.yaml",
        }
    }

    /// The roles whose services read this type: a deploy reloads and reads back every server
    /// of them.
    pub fn readers(self) -> &'static [Role] {
        match self {
            Kind::RiskLimits => &[Role::RiskEngine],
            Kind::Strategy => &[Role::TradingEngine],
            Kind::App => &Role::ALL,
            Kind::Database => &[Role::TradingEngine, Role::RiskEngine, Role::Oms],
            Kind::Endpoints => &[Role::TradingEngine, Role::Marketdata, Role::Oms],
        }
    }

    /// Whether production takes this type only after staging tested the identical file
    /// (`promote_from`). Database connections and API endpoints name each environment's own
    /// hosts — staging must never get production's — so each environment has its own file, and
    /// the live checks (connect, reach) from the deploying machine stand in for the test.
    pub fn promoted(self) -> bool {
        !matches!(self, Kind::Database | Kind::Endpoints)
    }

    /// A type named on the command line (`risk-limits` or the file's `risk_limits`).
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == s || k.name().replace('-', "_") == s)
    }

    /// From the file name: risk*, strateg*, database*/db*, endpoint*, else app.
    pub fn guess(path: &Path) -> Kind {
        let n = path
            .file_name()
            .map(|f| f.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        if n.contains("risk") {
            Kind::RiskLimits
        } else if n.contains("strateg") {
            Kind::Strategy
        } else if n.contains("database") || n.starts_with("db") {
            Kind::Database
        } else if n.contains("endpoint") {
            Kind::Endpoints
        } else {
            Kind::App
        }
    }
}

/// `TYPE` given instead of a file: the environment's file of that type beside the config file,
/// as the guide keeps them (`config/production/risk_limits.yaml`). None when `arg` is a path.
pub fn environment_file(arg: &Path, config: &Path, env: &str) -> Option<(PathBuf, Kind)> {
    let kind = Kind::parse(arg.to_str()?)?;
    if arg.exists() {
        return None;
    }
    Some((repo_file(config, env, kind), kind))
}

/// `<config dir>/<environment>/<type's file>`: the repository's copy.
pub fn repo_file(config: &Path, env: &str, kind: Kind) -> PathBuf {
    let dir = config
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    dir.join(env).join(kind.file_name())
}

/// The environment's live file of a type (`config_files.<type>`), the one the services read:
/// validate_config deploys and restores it, show_config compares with it.
pub fn live_file(
    ctx: &crate::cli::Context,
    env: &crate::config::Environment,
    kind: Kind,
) -> crate::error::Result<PathBuf> {
    env.config_files.get(kind.name()).cloned().ok_or_else(|| {
        crate::error::Error::config(
            ctx.config.path.display().to_string(),
            format!(
                "environments.{}.config_files has no `{}` path",
                ctx.env_name,
                kind.name()
            ),
        )
    })
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    pub max_position_size: i64,
    pub max_loss_per_day: f64,
}

/// Risk limits: per strategy or account, and optionally a default for everything unnamed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiskLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Limit>,
    #[serde(default)]
    pub limits: BTreeMap<String, Limit>,
}

/// A risk-limits file as written: the firm's shape (the guide's §8, `risk_limits:` name →
/// limits) or the long form (`limits:`), each with an optional `default:`. Every number keeps
/// where it stands, so a bad value is named with file:line:column.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    #[serde(default)]
    default: Option<LimitEntry>,
    #[serde(default, alias = "risk_limits")]
    limits: BTreeMap<String, LimitEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitEntry {
    max_position_size: serde_saphyr::Spanned<i64>,
    max_loss_per_day: serde_saphyr::Spanned<f64>,
}

impl LimitEntry {
    fn plain(&self) -> Limit {
        Limit {
            max_position_size: self.max_position_size.value,
            max_loss_per_day: self.max_loss_per_day.value,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StrategyParams {
    pub name: String,
    pub enabled: bool,
    pub size_pct: u8,
    pub max_order_qty: i64,
    pub symbols: Vec<String>,
    pub spread_bps: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppTimeouts {
    pub connect_ms: u64,
    pub request_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    pub service: String,
    pub listen: String,
    pub log_level: String,
    pub timeouts: AppTimeouts,
}

/// `database.yaml`: the connections a service opens, by name. The password only by reference
/// (`password_ref: env:VAR` or `file:/path`): a secret never sits in the repository.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseFile {
    pub connections: BTreeMap<String, Connection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connection {
    pub host: String,
    #[serde(default = "default_pg_port")]
    pub port: u16,
    pub dbname: String,
    pub user: String,
    #[serde(default)]
    pub password_ref: Option<String>,
    /// Only so a literal password is refused by name (with its line), not as "unknown field".
    #[serde(default)]
    password: Option<serde_saphyr::Spanned<String>>,
    #[serde(default = "default_pool_min")]
    pub pool_min: u32,
    #[serde(default = "default_pool_max")]
    pub pool_max: u32,
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
}

fn default_pg_port() -> u16 {
    5432
}
fn default_pool_min() -> u32 {
    1
}
fn default_pool_max() -> u32 {
    10
}
fn default_connect_timeout_ms() -> u64 {
    5000
}
fn default_endpoint_timeout_ms() -> u64 {
    2000
}

/// `endpoints.yaml`: the APIs a service calls (exchange gateways, market data vendors), by name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointsFile {
    pub endpoints: BTreeMap<String, Endpoint>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    pub url: serde_saphyr::Spanned<String>,
    #[serde(default = "default_endpoint_timeout_ms")]
    pub timeout_ms: u64,
}

/// A file parsed by its type, for the checks that need more than the schema (the diff of risk
/// limits, connecting to a database, reaching endpoints).
#[derive(Debug)]
pub enum Parsed {
    RiskLimits(RiskLimits),
    Database(DatabaseFile),
    Endpoints(EndpointsFile),
    Other,
}

impl Parsed {
    pub fn limits(&self) -> Option<&RiskLimits> {
        match self {
            Parsed::RiskLimits(l) => Some(l),
            _ => None,
        }
    }
}

pub const MAX_POSITION: i64 = 1_000_000;
pub const MAX_LOSS: f64 = 10_000_000.0;

/// `file:line:col: message` on one line (the parser's snippet rendering is for terminals; a
/// check message is one line).
pub fn located(path: &Path, e: &serde_saphyr::Error) -> String {
    let plain = e.render_with_options(serde_saphyr::render_options! {
        formatter: &serde_saphyr::UserMessageFormatter,
        snippets: serde_saphyr::SnippetMode::Off,
    });
    let first = plain.lines().next().unwrap_or_default();
    match e.location() {
        Some(l) => {
            // The location leads the line already; the parser's own suffix would repeat it.
            let suffix = format!(" at line {}, column {}", l.line(), l.column());
            let msg = first.strip_suffix(suffix.as_str()).unwrap_or(first);
            format!("{}:{}:{}: {msg}", path.display(), l.line(), l.column())
        }
        None => format!("{}: {first}", path.display()),
    }
}

/// Parse (YAML or JSON) and check every rule; errors are one line each, with file:line:col.
pub fn validate(kind: Kind, path: &Path, text: &str) -> Result<Parsed, Vec<String>> {
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_' || c == '-')
    };
    match kind {
        Kind::RiskLimits => {
            let doc: LimitsFile =
                serde_saphyr::from_str(text).map_err(|e| vec![located(path, &e)])?;
            let at = |l: &serde_saphyr::Location| {
                format!("{}:{}:{}", path.display(), l.line(), l.column())
            };
            let mut errs = vec![];
            if doc.default.is_none() && doc.limits.is_empty() {
                errs.push(format!(
                    "{}: no limits: write `risk_limits:` with one entry per strategy or account",
                    path.display()
                ));
            }
            let default = doc.default.as_ref().map(LimitEntry::plain);
            for (name, lim) in doc
                .default
                .iter()
                .map(|d| ("default", d))
                .chain(doc.limits.iter().map(|(k, v)| (k.as_str(), v)))
            {
                let (pos, loss) = (&lim.max_position_size, &lim.max_loss_per_day);
                if !(1..=MAX_POSITION).contains(&pos.value) {
                    errs.push(format!(
                        "{}: {name}.max_position_size {} is outside 1..={MAX_POSITION}",
                        at(&pos.referenced),
                        pos.value
                    ));
                }
                if !(loss.value > 0.0 && loss.value <= MAX_LOSS) {
                    errs.push(format!(
                        "{}: {name}.max_loss_per_day {} is outside (0, {MAX_LOSS}]",
                        at(&loss.referenced),
                        loss.value
                    ));
                }
                if name != "default" && !name_ok(name) {
                    errs.push(format!(
                        "{}: limit name `{name}` must be upper-case letters, digits, _ or -",
                        at(&pos.referenced)
                    ));
                }
                // Consistency: a test account never gets more room than the default.
                if let Some(d) = &default
                    && name.starts_with("TEST-")
                    && (pos.value > d.max_position_size || loss.value > d.max_loss_per_day)
                {
                    errs.push(format!(
                        "{}: test account {name} has limits above the default",
                        at(&pos.referenced)
                    ));
                }
            }
            if errs.is_empty() {
                Ok(Parsed::RiskLimits(RiskLimits {
                    default,
                    limits: doc
                        .limits
                        .iter()
                        .map(|(k, v)| (k.clone(), v.plain()))
                        .collect(),
                }))
            } else {
                Err(errs)
            }
        }
        Kind::Database => {
            let doc: DatabaseFile =
                serde_saphyr::from_str(text).map_err(|e| vec![located(path, &e)])?;
            let errs = database_rules(path, &doc);
            if errs.is_empty() {
                Ok(Parsed::Database(doc))
            } else {
                Err(errs)
            }
        }
        Kind::Endpoints => {
            let doc: EndpointsFile =
                serde_saphyr::from_str(text).map_err(|e| vec![located(path, &e)])?;
            let errs = endpoint_rules(path, &doc);
            if errs.is_empty() {
                Ok(Parsed::Endpoints(doc))
            } else {
                Err(errs)
            }
        }
        Kind::Strategy => {
            let s: StrategyParams =
                serde_saphyr::from_str(text).map_err(|e| vec![located(path, &e)])?;
            let mut errs = vec![];
            if !name_ok(&s.name) {
                errs.push(format!(
                    "{}: name `{}` must be upper-case letters, digits, _ or -",
                    path.display(),
                    s.name
                ));
            }
            if s.size_pct > 100 {
                errs.push(format!(
                    "{}: size_pct {} is above 100",
                    path.display(),
                    s.size_pct
                ));
            }
            if s.max_order_qty <= 0 {
                errs.push(format!(
                    "{}: max_order_qty must be positive",
                    path.display()
                ));
            }
            if s.symbols.is_empty() {
                errs.push(format!(
                    "{}: symbols must list at least one symbol",
                    path.display()
                ));
            }
            if !(s.spread_bps > 0.0 && s.spread_bps <= 1000.0) {
                errs.push(format!(
                    "{}: spread_bps {} is outside (0, 1000]",
                    path.display(),
                    s.spread_bps
                ));
            }
            if s.enabled && s.size_pct == 0 {
                errs.push(format!(
                    "{}: enabled with size_pct 0: disable it or give it a size",
                    path.display()
                ));
            }
            if errs.is_empty() {
                Ok(Parsed::Other)
            } else {
                Err(errs)
            }
        }
        Kind::App => {
            let a: AppConfig = serde_saphyr::from_str(text).map_err(|e| vec![located(path, &e)])?;
            let mut errs = vec![];
            if !["error", "warn", "info", "debug", "trace"].contains(&a.log_level.as_str()) {
                errs.push(format!(
                    "{}: log_level `{}` is not one of error, warn, info, debug, trace",
                    path.display(),
                    a.log_level
                ));
            }
            if a.listen.parse::<std::net::SocketAddr>().is_err() {
                errs.push(format!(
                    "{}: listen `{}` is not host:port",
                    path.display(),
                    a.listen
                ));
            }
            if a.timeouts.connect_ms == 0
                || a.timeouts.request_ms == 0
                || a.timeouts.connect_ms > a.timeouts.request_ms
            {
                errs.push(format!(
                    "{}: timeouts must be > 0 and connect_ms ≤ request_ms",
                    path.display()
                ));
            }
            if errs.is_empty() {
                Ok(Parsed::Other)
            } else {
                Err(errs)
            }
        }
    }
}

fn database_rules(path: &Path, doc: &DatabaseFile) -> Vec<String> {
    let p = path.display();
    let mut errs = vec![];
    if doc.connections.is_empty() {
        errs.push(format!(
            "{p}: no connections: write `connections:` with one entry per database"
        ));
    }
    for (name, c) in &doc.connections {
        if let Some(pw) = &c.password {
            let l = &pw.referenced;
            errs.push(format!(
                "{p}:{}:{}: {name}.password: secrets by reference only: write `password_ref: env:VAR` (or `file:/path`) and keep the password out of the repository",
                l.line(),
                l.column()
            ));
        }
        match c.password_ref.as_deref() {
            None => {}
            Some(r) if secret_ref(r).is_some() => {}
            Some(_) => errs.push(format!(
                "{p}: {name}.password_ref must be `env:VAR` or `file:/path`"
            )),
        }
        if c.host.trim().is_empty() || c.dbname.trim().is_empty() || c.user.trim().is_empty() {
            errs.push(format!(
                "{p}: {name}: host, dbname and user must not be empty"
            ));
        }
        if c.port == 0 {
            errs.push(format!("{p}: {name}.port 0 is not a port"));
        }
        if !(1..=1000).contains(&c.pool_max) || c.pool_min > c.pool_max {
            errs.push(format!(
                "{p}: {name}: pool_max {} must be 1..=1000 and pool_min {} at most pool_max",
                c.pool_max, c.pool_min
            ));
        }
        if !(1..=60_000).contains(&c.connect_timeout_ms) {
            errs.push(format!(
                "{p}: {name}.connect_timeout_ms {} is outside 1..=60000",
                c.connect_timeout_ms
            ));
        }
    }
    errs
}

/// Where a secret is kept: `env:VAR` or `file:/path`.
pub enum SecretRef<'a> {
    Env(&'a str),
    File(&'a Path),
}

pub fn secret_ref(r: &str) -> Option<SecretRef<'_>> {
    match r.split_once(':')? {
        ("env", v) if !v.is_empty() => Some(SecretRef::Env(v)),
        ("file", f) if !f.is_empty() => Some(SecretRef::File(Path::new(f))),
        _ => None,
    }
}

fn endpoint_rules(path: &Path, doc: &EndpointsFile) -> Vec<String> {
    let p = path.display();
    let mut errs = vec![];
    if doc.endpoints.is_empty() {
        errs.push(format!(
            "{p}: no endpoints: write `endpoints:` with one entry per API"
        ));
    }
    for (name, e) in &doc.endpoints {
        let l = &e.url.referenced;
        let at = format!("{p}:{}:{}", l.line(), l.column());
        match url::Url::parse(&e.url.value) {
            Err(err) => errs.push(format!("{at}: {name}.url is not a URL: {err}")),
            Ok(u) if !matches!(u.scheme(), "http" | "https") => {
                errs.push(format!("{at}: {name}.url must be http or https"))
            }
            Ok(u) if !u.username().is_empty() || u.password().is_some() => errs.push(format!(
                "{at}: {name}.url carries credentials: secrets by reference only (the service reads them from its secret store)"
            )),
            Ok(_) => {}
        }
        if !(1..=60_000).contains(&e.timeout_ms) {
            errs.push(format!(
                "{p}: {name}.timeout_ms {} is outside 1..=60000",
                e.timeout_ms
            ));
        }
    }
    errs
}

/// A change between deployed and new risk limits.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub field: String,
    pub old: Option<f64>,
    pub new: Option<f64>,
    /// Percent increase (None for added/removed entries).
    pub increase_pct: Option<f64>,
}

pub fn diff(old: &RiskLimits, new: &RiskLimits) -> Vec<Change> {
    let mut out = vec![];
    let all = |l: &RiskLimits| -> BTreeMap<String, Limit> {
        let mut m = l.limits.clone();
        if let Some(d) = &l.default {
            m.insert("default".into(), d.clone());
        }
        m
    };
    let (a, b) = (all(old), all(new));
    let names: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for n in names {
        let pairs = |l: Option<&Limit>| {
            l.map(|l| {
                [
                    ("max_position_size", l.max_position_size as f64),
                    ("max_loss_per_day", l.max_loss_per_day),
                ]
            })
        };
        match (pairs(a.get(n)), pairs(b.get(n))) {
            (Some(x), Some(y)) => {
                for ((f, o), (_, v)) in x.iter().zip(y.iter()) {
                    if o != v {
                        out.push(Change {
                            field: format!("{n}.{f}"),
                            old: Some(*o),
                            new: Some(*v),
                            increase_pct: Some((v - o) / o.abs().max(1e-9) * 100.0),
                        });
                    }
                }
            }
            (None, Some(y)) => {
                for (f, v) in y {
                    out.push(Change {
                        field: format!("{n}.{f}"),
                        old: None,
                        new: Some(v),
                        increase_pct: None,
                    });
                }
            }
            (Some(x), None) => {
                for (f, o) in x {
                    out.push(Change {
                        field: format!("{n}.{f}"),
                        old: Some(o),
                        new: None,
                        increase_pct: None,
                    });
                }
            }
            (None, None) => {}
        }
    }
    out
}

/// `GET /limits` as the schema's shape.
pub fn from_live(l: &crate::contract::Limits) -> Option<RiskLimits> {
    Some(RiskLimits {
        default: l.default.as_ref().map(|d| Limit {
            max_position_size: d.max_position_size,
            max_loss_per_day: d.max_loss_per_day,
        }),
        limits: l
            .limits
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    Limit {
                        max_position_size: v.max_position_size,
                        max_loss_per_day: v.max_loss_per_day,
                    },
                )
            })
            .collect(),
    })
}
