//! `config/deploy.toml`: one file describes every environment. Parsing is strict — unknown
//! fields and bad values are errors with `file:line:column` and the allowed values — because a
//! typo in a deploy config must stop the deploy, not be silently ignored.
//!
//! Layering: built-in defaults < `[defaults]` in the file < `DEPLOYKIT_*` variables < flags
//! (the last two are resolved by clap, see [`crate::cli`]).

use crate::error::{Error, Result};
use crate::redact::Secret;
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_PATH: &str = "config/deploy.toml";

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum EnvName {
    Local,
    Dev,
    Staging,
    Production,
}

impl EnvName {
    pub fn as_str(self) -> &'static str {
        match self {
            EnvName::Local => "local",
            EnvName::Dev => "dev",
            EnvName::Staging => "staging",
            EnvName::Production => "production",
        }
    }
}

impl std::fmt::Display for EnvName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Deserialize,
    serde::Serialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Color {
    Blue,
    Green,
}

impl Color {
    pub fn as_str(self) -> &'static str {
        match self {
            Color::Blue => "blue",
            Color::Green => "green",
        }
    }
    pub fn other(self) -> Color {
        match self {
            Color::Blue => Color::Green,
            Color::Green => Color::Blue,
        }
    }
}

impl std::fmt::Display for Color {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The firm's service roles (docs/service-contract.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    TradingEngine,
    RiskEngine,
    Marketdata,
    Oms,
    Web,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::TradingEngine,
        Role::RiskEngine,
        Role::Marketdata,
        Role::Oms,
        Role::Web,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Role::TradingEngine => "trading-engine",
            Role::RiskEngine => "risk-engine",
            Role::Marketdata => "marketdata",
            Role::Oms => "oms",
            Role::Web => "web",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Human,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// A duration written the human way (`750ms`, `30s`, `5m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s)
            .map(HumanDuration)
            .map_err(serde::de::Error::custom)
    }
}

/// The longest wait any tool here may be asked for: longer is a typo (`500000000000h`).
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// An input as an error message shows it: at most 40 characters (a 10 MB value is not echoed).
pub fn shown(s: &str) -> String {
    let mut out: String = s.chars().take(40).collect();
    if s.chars().count() > 40 {
        out.push_str(&format!("… ({} characters)", s.chars().count()));
    }
    out
}

/// The longest look back (report windows, relative times): ten years.
pub const MAX_SPAN: Duration = Duration::from_secs(3660 * 24 * 3600);

/// What one duration form accepts: zero or not, its bound and how the errors read.
struct DurationRule {
    zero_ok: bool,
    max: Duration,
    too_long: &'static str,
    examples: &'static str,
}

/// The one parser behind every duration flag and field: humantime, then the form's rule.
fn parse_with(s: &str, rule: &DurationRule) -> std::result::Result<Duration, InvalidDuration> {
    parse_rule(s, rule).map_err(InvalidDuration)
}

fn parse_rule(s: &str, rule: &DurationRule) -> std::result::Result<Duration, String> {
    if rule.zero_ok && s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    if s.trim_start().starts_with('-') {
        return Err(format!(
            "`{}` is negative: durations are positive (write e.g. {})",
            shown(s),
            rule.examples
        ));
    }
    let d = humantime::parse_duration(s.trim()).map_err(|e| {
        format!(
            "invalid duration `{}`: {e} (write e.g. {})",
            shown(s),
            rule.examples
        )
    })?;
    if d.is_zero() && !rule.zero_ok {
        return Err(format!("duration `{}` must be greater than zero", shown(s)));
    }
    if d > rule.max {
        return Err(format!("duration `{}` is {}", shown(s), rule.too_long));
    }
    Ok(d)
}

const WAIT: &str = "longer than 7 days, the most any wait here may take";

crate::failure!(
    /// A duration on the command line or in the config that is not one: what is wrong and
    /// what would be accepted.
    InvalidDuration
);

/// A span of history (`30days`, `-1d` back from now), not a wait: up to ten years.
pub fn parse_span(s: &str) -> std::result::Result<Duration, InvalidDuration> {
    parse_with(
        s,
        &DurationRule {
            zero_ok: false,
            max: MAX_SPAN,
            too_long: "longer than ten years of history",
            examples: "15m, 1d, 30days",
        },
    )
}

/// Parse `30s`, `1m30s`, `250ms`, up to 7 days. Zero is refused: a zero timeout is never what
/// anyone means.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, InvalidDuration> {
    parse_with(
        s,
        &DurationRule {
            zero_ok: false,
            max: MAX_DURATION,
            too_long: WAIT,
            examples: "500ms, 30s, 5m; durations are positive",
        },
    )
}

/// Like [`parse_duration`] but zero is allowed (a warm-up may be skipped).
pub fn parse_duration_or_zero(s: &str) -> std::result::Result<Duration, InvalidDuration> {
    parse_with(
        s,
        &DurationRule {
            zero_ok: true,
            max: MAX_DURATION,
            too_long: WAIT,
            examples: "0s, 500ms, 5s; durations are positive",
        },
    )
}

/// An http(s) base URL of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl(pub url::Url);

impl<'de> Deserialize<'de> for HttpUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let u = url::Url::parse(&s)
            .map_err(|e| serde::de::Error::custom(format!("invalid URL `{s}`: {e}")))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(serde::de::Error::custom(format!(
                "URL `{s}` must start with http:// or https://"
            )));
        }
        if u.password().is_some() {
            return Err(serde::de::Error::custom(
                "service URLs must not carry a password; put secrets in an environment variable",
            ));
        }
        Ok(HttpUrl(u))
    }
}

impl std::fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.as_str().trim_end_matches('/'))
    }
}

/// HAProxy runtime API address: `unix:/path/to/admin.sock` or `tcp:host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeApi {
    Unix(PathBuf),
    Tcp(String),
}

impl<'de> Deserialize<'de> for RuntimeApi {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if let Some(p) = s.strip_prefix("unix:") {
            if p.is_empty() {
                return Err(serde::de::Error::custom("unix: needs a socket path"));
            }
            Ok(RuntimeApi::Unix(PathBuf::from(p)))
        } else if let Some(a) = s.strip_prefix("tcp:") {
            if !a.contains(':') {
                return Err(serde::de::Error::custom(format!(
                    "`{s}`: tcp: needs host:port"
                )));
            }
            Ok(RuntimeApi::Tcp(a.to_owned()))
        } else {
            Err(serde::de::Error::custom(format!(
                "runtime_api `{s}` must be `unix:/path/to/admin.sock` or `tcp:host:port`"
            )))
        }
    }
}

impl std::fmt::Display for RuntimeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RuntimeApi::Unix(p) => write!(f, "unix:{}", p.display()),
            RuntimeApi::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

/// A percentage between 0 and 1000.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pct(pub f64);

impl<'de> Deserialize<'de> for Pct {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        if !(0.0..=1000.0).contains(&v) {
            return Err(serde::de::Error::custom(format!(
                "{v} is out of range: a percentage between 0 and 1000"
            )));
        }
        Ok(Pct(v))
    }
}

/// A ratio ≥ 1 (e.g. "error rate at most 2× baseline").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ratio(pub f64);

impl<'de> Deserialize<'de> for Ratio {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        if !(1.0..=1000.0).contains(&v) {
            return Err(serde::de::Error::custom(format!(
                "{v} is out of range: a ratio between 1.0 and 1000"
            )));
        }
        Ok(Ratio(v))
    }
}

/// A finite amount ≥ 0 (e.g. a loss per minute in the account currency).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NonNegative(pub f64);

impl<'de> Deserialize<'de> for NonNegative {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        if !(v.is_finite() && v >= 0.0) {
            return Err(serde::de::Error::custom(format!(
                "{v} is out of range: a finite amount ≥ 0"
            )));
        }
        Ok(NonNegative(v))
    }
}

/// A regular expression, compiled at load time so a bad pattern is a config error.
#[derive(Debug, Clone)]
pub struct Pattern(pub regex::Regex);

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        regex::Regex::new(&s)
            .map(Pattern)
            .map_err(|e| serde::de::Error::custom(format!("invalid regular expression: {e}")))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Weekday {
    pub fn from_chrono(d: chrono::Weekday) -> Self {
        use chrono::Weekday as W;
        match d {
            W::Mon => Weekday::Mon,
            W::Tue => Weekday::Tue,
            W::Wed => Weekday::Wed,
            W::Thu => Weekday::Thu,
            W::Fri => Weekday::Fri,
            W::Sat => Weekday::Sat,
            W::Sun => Weekday::Sun,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    pub timeout: Option<HumanDuration>,
    pub format: Option<Format>,
    pub log_format: Option<LogFormat>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    /// Name of the variable holding the URL — never the URL itself.
    pub url_env: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redis {
    /// `host:port` of the Redis the services use (reachability only).
    pub address: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadBalancer {
    pub name: String,
    pub runtime_api: RuntimeApi,
    /// Backends whose servers switch colour together.
    pub backends: Vec<String>,
    /// Server names per colour, the same in every backend listed.
    pub servers: BTreeMap<Color, Vec<String>>,
    /// Public address clients use (for checks through the load balancer).
    pub frontend: Option<HttpUrl>,
    /// HAProxy map file whose `maintenance` key (on/off) switches the frontend's maintenance
    /// page (see scripts/stack's haproxy.cfg for the rule).
    pub maintenance_map: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Days deploys are allowed (empty: any day).
    #[serde(default)]
    pub deploy_days: Vec<Weekday>,
    #[serde(default)]
    pub freeze_fridays: bool,
    /// No deploy on these dates nor the working day before them.
    #[serde(default)]
    pub holidays: Vec<chrono::NaiveDate>,
    /// A change ticket must be present in `change_ticket_env` and match this.
    pub change_ticket: Option<Pattern>,
    #[serde(default = "default_change_ticket_env")]
    pub change_ticket_env: String,
    /// The change system that says whether a ticket is approved for this environment now
    /// (without one, the pattern alone decides).
    #[serde(default)]
    pub change_system: Option<ChangeSystem>,
}

/// `GET {url}/changes/{ticket}?environment={env}` answers `{"approved": bool, "reason": …,
/// "window_start": …, "window_end": …}` (RFC 3339 times; no window: any time).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeSystem {
    pub url: HttpUrl,
    /// Variable holding the bearer token for it (a secret), if it needs one.
    #[serde(default)]
    pub token_env: Option<String>,
}

impl ChangeSystem {
    pub fn token(&self) -> Result<Option<Secret>> {
        self.token_env
            .as_deref()
            .map(|v| read_secret_env(v, "policy.change_system.token_env"))
            .transpose()
    }
}

fn default_change_ticket_env() -> String {
    "CHANGE_TICKET".into()
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            deploy_days: vec![],
            freeze_fridays: false,
            holidays: vec![],
            change_ticket: None,
            change_ticket_env: default_change_ticket_env(),
            change_system: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// Post-deploy latency gate: p99 may rise at most this much.
    pub latency_increase_pct: Pct,
    /// Error rate may be at most this multiple of the baseline.
    pub error_rate_max_ratio: Ratio,
    /// Alert (and roll back) on a latency spike above this.
    pub alert_latency_spike_pct: Pct,
    /// P&L trend during cutover watches and strategy holds: the active strategies may lose at
    /// most this much per minute (the account currency).
    pub max_strategy_loss_per_min: NonNegative,
    /// Error rate ceiling (percent of business requests), whatever the baseline: the watch,
    /// holds and compare_metrics' default `error_rate`.
    pub max_error_rate_pct: Pct,
    /// compare_metrics' default `p99_latency` may never exceed this, whatever the baseline.
    pub max_p99_latency_ms: NonNegative,
    /// Watches and holds: the new colour's mean latency may never exceed this, whatever the
    /// baseline (the ceiling that still judges when the baseline window was idle).
    pub max_mean_latency_ms: NonNegative,
    /// Watches and holds: the new colour must carry at least this share of the business
    /// traffic the old one carried (req/s, percent); less is a failure, not missing data.
    pub min_traffic_pct: Pct,
    /// Watches and holds: the fill rate (fills per accepted order, 0…1) may never fall below
    /// this, whatever the baseline; unset, fill rate is judged against the baseline only.
    pub min_fill_rate: Option<NonNegative>,
    /// Watches and holds: how much longer to watch while a fail-closed metric is still
    /// inconclusive, before its `on_inconclusive` policy decides.
    pub inconclusive_extend: HumanDuration,
    /// Per watch metric: `fail` (roll back) or `pass` when it never became conclusive. Unlisted
    /// metrics: error_rate and throughput fail, the rest pass and are listed in the report.
    pub on_inconclusive: std::collections::BTreeMap<String, OnInconclusive>,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            latency_increase_pct: Pct(10.0),
            error_rate_max_ratio: Ratio(2.0),
            alert_latency_spike_pct: Pct(50.0),
            max_strategy_loss_per_min: NonNegative(100.0),
            max_error_rate_pct: Pct(1.0),
            max_p99_latency_ms: NonNegative(250.0),
            max_mean_latency_ms: NonNegative(100.0),
            min_traffic_pct: Pct(50.0),
            min_fill_rate: None,
            inconclusive_extend: HumanDuration(Duration::from_secs(120)),
            on_inconclusive: Default::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timeouts {
    pub connect: HumanDuration,
    pub request: HumanDuration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: HumanDuration(Duration::from_secs(2)),
            request: HumanDuration(Duration::from_secs(10)),
        }
    }
}

fn default_keep_previous_for() -> HumanDuration {
    HumanDuration(Duration::from_secs(3600))
}
fn default_colors() -> Vec<Color> {
    vec![Color::Blue, Color::Green]
}
fn default_notify_webhook_env() -> String {
    crate::env_vars::EnvVars::NOTIFY_WEBHOOK.into()
}

fn default_pagerduty_key_env() -> String {
    crate::env_vars::EnvVars::PAGERDUTY_ROUTING_KEY.into()
}
fn default_pagerduty_url() -> HttpUrl {
    HttpUrl(url::Url::parse("https://events.pagerduty.com/v2/enqueue").expect("valid URL"))
}
fn yes() -> bool {
    true
}

/// `notify_email = { smtp = "smtp.firm.example:587", from = "…", to = ["…"] }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyEmail {
    /// The SMTP relay, `host:port`.
    pub smtp: String,
    pub from: String,
    pub to: Vec<String>,
    /// Require STARTTLS [default: true]; false only for a relay on the same host.
    #[serde(default = "yes")]
    pub starttls: bool,
    /// SMTP login, with `password_env` naming the variable that holds the password.
    pub username: Option<String>,
    pub password_env: Option<String>,
}

/// `pagerduty = { routing_key_env = "…", url = "…" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerDuty {
    /// The variable holding the service's integration (routing) key.
    #[serde(default = "default_pagerduty_key_env")]
    pub routing_key_env: String,
    /// The Events API v2 endpoint [default: https://events.pagerduty.com/v2/enqueue].
    #[serde(default = "default_pagerduty_url")]
    pub url: HttpUrl,
}

fn default_admin_token_env() -> String {
    crate::env_vars::EnvVars::ADMIN_TOKEN.into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    #[serde(default = "default_colors")]
    pub colors: Vec<Color>,
    /// Base URLs per colour and role.
    #[serde(default)]
    pub services: BTreeMap<Color, BTreeMap<Role, Vec<HttpUrl>>>,
    /// Names for the servers behind `services`' URLs (`trade-blue-01 = "http://10.0.1.7:8080"`):
    /// reports, `isolate_server NAME` and the journal use them, and a name that is also a load
    /// balancer's server name (`load_balancers.servers`) is that HAProxy server. A URL without
    /// a name here is named after its host (`host:port` for an IP or a host serving several).
    #[serde(default)]
    pub servers: BTreeMap<String, HttpUrl>,
    pub database: Option<Database>,
    pub redis: Option<Redis>,
    /// Name of the variable holding the admin bearer token.
    #[serde(default = "default_admin_token_env")]
    pub admin_token_env: String,
    /// Name of the variable holding the Slack-compatible webhook URL `notify` posts to.
    #[serde(default = "default_notify_webhook_env")]
    pub notify_webhook_env: String,
    /// Where `notify` emails the deployment team (the same relay, sender and recipients as
    /// Alertmanager's `deployment-email` receiver, monitoring/alertmanager/alertmanager.yml).
    pub notify_email: Option<NotifyEmail>,
    /// PagerDuty (Events API v2) for `notify --event failure` (a trigger) and `--event success`
    /// (the resolve of that deployment's page), as Alertmanager's `pagerduty` receiver.
    pub pagerduty: Option<PagerDuty>,
    #[serde(default)]
    pub load_balancers: Vec<LoadBalancer>,
    pub prometheus: Option<HttpUrl>,
    /// Where every environment-changing run pushes its outcome (Prometheus Pushgateway).
    pub pushgateway: Option<HttpUrl>,
    /// The Alertmanager the environment's Prometheus sends to: `verify_env --only alerts` reads
    /// its silences (none may mute a standing alert after a deploy).
    pub alertmanager: Option<HttpUrl>,
    pub test_account: Option<String>,
    #[serde(default)]
    pub policy: Policy,
    #[serde(default)]
    pub thresholds: Thresholds,
    #[serde(default)]
    pub timeouts: Timeouts,
    /// verify_env's profile for this environment.
    #[serde(default)]
    pub verify: Verify,
    /// Who may approve what: rule (`hotfix`) → role (`risk-manager`) → the user ids of that
    /// role's group. `verify_env --only approvals --approval-rule R` checks that every role of
    /// the rule approved, each by a member of its group, all different people, none the starter.
    #[serde(default)]
    pub approvals: BTreeMap<String, BTreeMap<String, Vec<String>>>,
    /// smoke_tests' parameters for this environment.
    #[serde(default)]
    pub smoke: Smoke,
    /// db_migrate's limits for this environment.
    #[serde(default)]
    pub migrate: Migrate,
    /// compare_metrics' metrics [default: the guide's set for the service contract's metrics].
    pub metrics: Option<Vec<MetricSpec>>,
    /// Live config files the services read, by kind (`risk-limits = "/etc/trading/risk_limits.yaml"`),
    /// for `validate_config deploy`.
    #[serde(default)]
    pub config_files: BTreeMap<String, PathBuf>,
    /// Command that restarts one service, for `validate_config --deploy` when the service cannot
    /// reload its config (`POST /admin/config/reload` answers 404, 405 or 501). `{url}`,
    /// `{color}` and `{role}` are replaced per service; e.g.
    /// `["sudo", "systemctl", "restart", "trading-{role}@{color}"]`.
    pub restart_command: Option<Vec<String>>,
    /// Command that makes one service re-read one config file when it has no reload API,
    /// tried before `restart_command` (the guide's `config_manager update <component> --file`):
    /// `{component}` (risk-limits, app, …), `{file}` (the live file), `{url}`, `{color}` and
    /// `{role}` are replaced; e.g. `["ssh", "{color}-host", "config_manager", "update",
    /// "{component}", "--file", "{file}"]`.
    pub reload_command: Option<Vec<String>>,
    /// Where a config must have been tested first (guide §8 Step 3): a `validate_config
    /// --deploy` here refuses a file that was not deployed, byte for byte, to this environment
    /// and passed its smoke tests there since (both read from that environment's journal);
    /// `--skip-staging REASON` overrides, recorded and notified. E.g. `promote_from = "staging"`.
    pub promote_from: Option<EnvName>,
    /// How long the previous colour stays up after a cutover, trading nothing, so a rollback is
    /// one switch away (guide §5: one hour); `cutover decommission` refuses inside it.
    #[serde(default = "default_keep_previous_for")]
    pub keep_previous_for: HumanDuration,
    /// Command that stops every service of one colour, for `cutover decommission` (`{color}` is
    /// replaced); e.g. `["ansible-playbook", "playbooks/stop_color.yml", "-e", "color={color}"]`.
    pub stop_command: Option<Vec<String>>,
    /// Where the deploy journal and the environment lock live when there is no `database`
    /// (relative to this file) [default: `.deploykit` beside this file]. One place per
    /// environment, so runs started from different directories still exclude each other.
    pub journal_dir: Option<PathBuf>,
}

/// How a metric is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricKind {
    /// A series of samples (latency, throughput, business rates): Mann-Whitney U plus a
    /// minimum relative effect.
    Series,
    /// Events out of trials (errors of requests): a two-proportion z-test that works with an
    /// all-zero baseline.
    Proportion,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Higher is worse (latency, errors).
    Lower,
    /// Lower is worse (throughput, fill rate).
    Higher,
    /// Any change beyond the tolerance is bad.
    Either,
}

/// What a missing answer means: fail closed by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnMissing {
    #[default]
    Fail,
    Inconclusive,
    Pass,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricSpec {
    pub name: String,
    pub kind: MetricKind,
    /// PromQL for a `series` metric (a range query; must return one series).
    pub query: Option<String>,
    /// PromQL counting events and trials for a `proportion` metric, over `$__range`.
    pub events: Option<String>,
    pub trials: Option<String>,
    pub direction: Direction,
    /// Allowed relative change (series) or ratio to baseline (proportion, as percent: 100 = 2×).
    pub tolerance_pct: f64,
    /// Absolute ceiling the current value must stay under, whatever the baseline.
    pub max: Option<f64>,
    /// Absolute floor the current value must stay above, whatever the baseline.
    #[serde(default)]
    pub min: Option<f64>,
    /// A change smaller than this (in the metric's unit) is noise, whatever its percentage:
    /// 0.1 ms → 0.16 ms is +60 % but no user notices.
    #[serde(default)]
    pub min_abs_delta: Option<f64>,
    #[serde(default = "d_min_samples")]
    pub min_samples: usize,
    #[serde(default)]
    pub on_empty: OnMissing,
    #[serde(default)]
    pub on_nan: OnMissing,
    #[serde(default)]
    pub on_error: OnMissing,
    /// In a watch or hold: what a metric still inconclusive after the longest extension means.
    #[serde(default)]
    pub on_inconclusive: OnInconclusive,
}

/// What a metric that never became conclusive during a watch or hold means: `fail` (the watch
/// fails, so cutover rolls back and a rollout step is set back; `rollback` says the same) or
/// `pass` (accepted, and listed in the report as never conclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnInconclusive {
    #[default]
    #[serde(alias = "rollback")]
    Fail,
    Pass,
}

fn d_min_samples() -> usize {
    5
}

/// db_migrate's limits: every step runs with these timeouts and retries on lock timeout.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Migrate {
    pub lock_timeout: HumanDuration,
    pub statement_timeout: HumanDuration,
    pub max_retries: u32,
    /// How long to wait for another run's migration lock.
    pub lock_wait: HumanDuration,
    pub backups_dir: PathBuf,
    /// How long pg_dump may take.
    pub backup_timeout: HumanDuration,
    /// How the migration files are named: `flyway` (`V3.2.2__add_table.sql`, the guide's
    /// preferred source) or `scripts` (the guide's custom `scripts/db/migrations/
    /// 3.2.2_add_table.sql`).
    pub layout: MigrationLayout,
    /// Flyway's placeholders: `${name}` in a migration is replaced by this value before it runs
    /// (`${flyway:filename}` is the file's name); a `${…}` with no value is an error.
    pub placeholders: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MigrationLayout {
    #[default]
    Flyway,
    Scripts,
}

impl Default for Migrate {
    fn default() -> Self {
        Migrate {
            lock_timeout: HumanDuration(Duration::from_secs(5)),
            statement_timeout: HumanDuration(Duration::from_secs(15 * 60)),
            max_retries: 10,
            lock_wait: HumanDuration(Duration::from_secs(10 * 60)),
            backups_dir: PathBuf::from("backups"),
            backup_timeout: HumanDuration(Duration::from_secs(30 * 60)),
            layout: MigrationLayout::Flyway,
            placeholders: BTreeMap::new(),
        }
    }
}

/// smoke_tests' parameters: what the test orders trade and what "healthy" means for feeds.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Smoke {
    /// Symbol the test orders trade.
    pub symbol: String,
    /// Quantity of each test order.
    pub qty: i64,
    /// A feed whose last message is older than this is stale.
    pub max_feed_age_ms: u64,
    pub min_msgs_per_s: f64,
    pub max_msgs_per_s: Option<f64>,
    pub max_feed_latency_us: u64,
    /// P&L may differ from fills × marks by this much (marks move between reads).
    pub pnl_tolerance: f64,
    /// Share of 5xx answers (over the service's lifetime counters) above which a service fails.
    pub max_error_ratio: f64,
    /// Tables `--database-focused` requires.
    pub required_tables: Vec<String>,
}

impl Default for Smoke {
    fn default() -> Self {
        Smoke {
            symbol: "AAPL".into(),
            qty: 1,
            max_feed_age_ms: 1000,
            min_msgs_per_s: 1.0,
            max_msgs_per_s: None,
            max_feed_latency_us: 5000,
            pnl_tolerance: 1.0,
            max_error_ratio: 0.01,
            required_tables: ["orders", "positions", "risk_limits"]
                .map(String::from)
                .to_vec(),
        }
    }
}

/// The checks verify_env knows.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum VerifyCheck {
    Git,
    Tools,
    Ssh,
    Vpn,
    Docker,
    Credentials,
    Policy,
    /// Role-based approvals (`--approval-rule`, `--approved-by`, `--started-by`); never by default.
    Approvals,
    /// The standing alerts are armed (rules loaded, targets up, an Alertmanager attached, no
    /// silence muting them): the production pipeline's last stage; never by default.
    Alerts,
}

/// A required tool: `name` may list alternatives (`curl|wget`); `min` is the least version.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolReq {
    pub name: String,
    pub min: Option<MinVersion>,
    /// Arguments that print the version [default: --version]; empty: presence only.
    pub args: Option<Vec<String>>,
    /// What to tell the user when it is missing.
    pub install_hint: Option<String>,
}

/// A minimum version written `2.40`, `1.28.2` or `24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct MinVersion(pub [u64; 3]);

impl<'de> Deserialize<'de> for MinVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let parts: Vec<_> = s.trim().split('.').collect();
        if parts.is_empty() || parts.len() > 3 {
            return Err(serde::de::Error::custom(format!(
                "version `{s}`: write 1 to 3 numbers separated by dots, e.g. 2.40"
            )));
        }
        let mut v = [0u64; 3];
        for (i, p) in parts.iter().enumerate() {
            v[i] = p.parse().map_err(|_| {
                serde::de::Error::custom(format!("version `{s}`: `{p}` is not a number"))
            })?;
        }
        Ok(MinVersion(v))
    }
}

impl std::fmt::Display for MinVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [a, b, c] = self.0;
        if c == 0 {
            write!(f, "{a}.{b}")
        } else {
            write!(f, "{a}.{b}.{c}")
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vpn {
    /// Network interface that exists only while the VPN is up (e.g. tun0).
    pub interface: Option<String>,
    /// `host:port` reachable only through the VPN (e.g. the bastion's SSH port).
    pub bastion: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// Variables that must be set and non-empty (values are never printed).
    #[serde(default)]
    pub env: Vec<String>,
    /// Files that must exist and be non-empty.
    #[serde(default)]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verify {
    /// Checks to run [default: by environment, see docs/verify_env.md].
    pub checks: Option<Vec<VerifyCheck>>,
    /// Branch the checkout must be on: a name, or a list of names where `prefix/*` matches
    /// every branch under it (`["main", "hotfix/*"]`: the guide's hotfix branches deploy too).
    /// A release tag must be on the first plain name.
    #[serde(default, deserialize_with = "one_or_many")]
    pub expected_branch: Vec<String>,
    /// Required tools [default: the guide's list].
    pub tools: Option<Vec<ToolReq>>,
    pub vpn: Option<Vpn>,
    /// Docker daemon socket [default: DOCKER_HOST if unix://, else /var/run/docker.sock].
    pub docker_socket: Option<PathBuf>,
    /// Credentials that must be present [default: the database and admin token variables].
    pub credentials: Option<Credentials>,
    /// Private keys to look for [default: ~/.ssh/id_ed25519, id_ecdsa, id_rsa].
    pub ssh_keys: Option<Vec<PathBuf>>,
    /// Per-check timeout [default: --timeout, else 5s].
    pub check_timeout: Option<HumanDuration>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    defaults: Defaults,
    environments: BTreeMap<EnvName, Environment>,
}

/// A loaded, validated config file.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub defaults: Defaults,
    pub environments: BTreeMap<EnvName, Environment>,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::config(
                path.display().to_string(),
                format!(
                    "cannot read config file: {e}; pass --config FILE or set {}",
                    crate::env_vars::EnvVars::CONFIG
                ),
            )
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Config> {
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let loc = location(path, text, e.span().map(|s| s.start));
            Error::config(loc, e.message().trim().replace('\n', " "))
        })?;
        let mut environments = BTreeMap::new();
        for (name, env) in raw.environments {
            // Cross-field errors point at the environment's first table header. (toml's
            // Spanned fails on implicitly created tables, so find the header ourselves.)
            let header = regex::Regex::new(&format!(r"(?m)^\s*\[\[?\s*environments\.{name}\b"))
                .expect("static pattern");
            let at = location(
                path,
                text,
                header
                    .find(text)
                    .map(|m| m.start() + m.as_str().find('[').unwrap_or(0)),
            );
            validate_env(name, &env).map_err(|m| Error::config(at, m))?;
            environments.insert(name, env);
        }
        Ok(Config {
            path: path.to_owned(),
            defaults: raw.defaults,
            environments,
        })
    }

    pub fn environment(&self, name: EnvName) -> Result<&Environment> {
        self.environments.get(&name).ok_or_else(|| {
            let defined: Vec<_> = self.environments.keys().map(|k| k.as_str()).collect();
            Error::config(
                self.path.display().to_string(),
                format!(
                    "environment `{name}` is not defined (defined: {}); add [environments.{name}]",
                    defined.join(", ")
                ),
            )
        })
    }
}

fn validate_env(name: EnvName, env: &Environment) -> std::result::Result<(), String> {
    if env.colors.is_empty() {
        return Err(format!(
            "environments.{name}.colors must name at least one colour"
        ));
    }
    for c in env.services.keys() {
        if !env.colors.contains(c) {
            return Err(format!(
                "environments.{name}.services.{c}: colour `{c}` is not in colors {:?}",
                env.colors.iter().map(|c| c.as_str()).collect::<Vec<_>>()
            ));
        }
    }
    if env.promote_from == Some(name) {
        return Err(format!(
            "environments.{name}.promote_from names {name} itself: name the environment configs are tested in first (staging)"
        ));
    }
    // A config type no tool deploys would be silently ignored: refuse it, as a typo.
    for t in env.config_files.keys() {
        if crate::trading_config::Kind::parse(t).is_none() {
            return Err(format!(
                "environments.{name}.config_files.{}: not a config type (risk-limits, strategy, app, database, endpoints)",
                shown(t)
            ));
        }
    }
    // A name for a URL no service has would name nothing: refuse it, as a typo.
    for (n, u) in &env.servers {
        let served = env
            .services
            .values()
            .flat_map(|roles| roles.values().flatten())
            .any(|s| s.0 == u.0);
        if !served {
            return Err(format!(
                "environments.{name}.servers.{}: {u} is not one of the environment's services' URLs",
                shown(n)
            ));
        }
    }
    // A misspelt metric would silently keep its default policy: refuse it.
    for k in env.thresholds.on_inconclusive.keys() {
        if !crate::watch::WATCH_METRICS.contains(&k.as_str()) {
            return Err(format!(
                "environments.{name}.thresholds.on_inconclusive: `{}` is not a watch metric (one of {})",
                shown(k),
                crate::watch::WATCH_METRICS.join(", ")
            ));
        }
    }
    for lb in &env.load_balancers {
        if lb.backends.is_empty() {
            return Err(format!("load balancer `{}` lists no backends", lb.name));
        }
        for c in &env.colors {
            if lb.servers.get(c).is_none_or(|s| s.is_empty()) {
                return Err(format!(
                    "load balancer `{}` has no servers for colour `{c}`",
                    lb.name
                ));
            }
        }
    }
    Ok(())
}

/// `file:line:column` for a byte offset (1-based, like compilers print).
fn location(path: &Path, text: &str, offset: Option<usize>) -> String {
    match offset {
        Some(off) => {
            let before = &text[..off.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("{}:{line}:{col}", path.display())
        }
        None => path.display().to_string(),
    }
}

impl Environment {
    /// Base URLs of `role` for `color`.
    pub fn urls(&self, color: Color, role: Role) -> &[HttpUrl] {
        self.services
            .get(&color)
            .and_then(|r| r.get(&role))
            .map_or(&[], |v| v.as_slice())
    }

    /// The notification webhook URL from the variable the config names.
    pub fn notify_webhook(&self) -> Result<Secret> {
        let s = read_secret_env(&self.notify_webhook_env, "notify_webhook_env")?;
        // The token is the URL's path: mask it wherever a part of it is echoed back.
        crate::redact::register_url_parts(s.expose());
        Ok(s)
    }

    /// The PagerDuty routing key from the variable the config names.
    pub fn pagerduty_key(&self, pd: &PagerDuty) -> Result<Secret> {
        read_secret_env(&pd.routing_key_env, "pagerduty.routing_key_env")
    }

    /// The SMTP password from the variable the config names, if it names one.
    pub fn smtp_password(&self, e: &NotifyEmail) -> Result<Option<Secret>> {
        e.password_env
            .as_deref()
            .map(|v| read_secret_env(v, "notify_email.password_env"))
            .transpose()
    }

    /// The admin token from the variable the config names.
    pub fn admin_token(&self) -> Result<Secret> {
        read_secret_env(&self.admin_token_env, "admin_token_env")
    }

    /// The database URL from the variable the config names.
    pub fn database_url(&self) -> Result<Secret> {
        let db = self
            .database
            .as_ref()
            .ok_or_else(|| Error::config("config", "this environment has no [database] section"))?;
        read_secret_env(&db.url_env, "database.url_env")
    }
}

/// A string or a list of strings.
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

fn read_secret_env(var: &str, field: &str) -> Result<Secret> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Ok(Secret::new(v.trim())),
        _ => Err(Error::config(
            "environment",
            format!(
                "variable {var} (named by {field}) is unset or empty; export it before running"
            ),
        )),
    }
}
