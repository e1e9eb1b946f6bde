//! The fleet: every server of an environment — its name, colour, roles, URL and the HAProxy
//! server it is — and the one way to act on many of them. A fan-out runs every server at once
//! (bounded concurrency), gives each call one deadline, and keeps every server's outcome
//! (reached, failed and why, skipped because isolated) instead of stopping at the first error:
//! with 18 servers a colour, one dead host costs one deadline and is named, never hides the
//! other 17. A run on the fleet (`Ctx`: the environment, the fleet, isolation, the deadline) and
//! the fleet-wide steps every tool shares (health, one admin call everywhere, the live colours,
//! trading off) live here too; cutover, maintenance, rollout and the emergency tools build on
//! them. See docs/decisions/0023-fleet-module.md.

use crate::config::{Color, Environment, Role};
use crate::contract::Client;
use crate::error::Result;
use crate::http::Http;
use crate::lb;
use crate::redact::Secret;
use futures_util::StreamExt;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How many servers one fan-out calls at once: every server of the guide's production (18 a
/// colour, both colours) in one wave, without opening hundreds of sockets on a bigger fleet.
pub const CONCURRENCY: usize = 64;

/// One server: one service URL, with every role it serves.
#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub name: String,
    pub color: Color,
    pub roles: Vec<Role>,
    pub url: String,
    /// The load balancers (by name) whose HAProxy server of the same name is this server.
    pub load_balancers: Vec<String>,
}

impl Server {
    pub fn serves(&self, roles: &[Role]) -> bool {
        self.roles.iter().any(|r| roles.contains(r))
    }
}

/// Every server of an environment, built once from its config.
#[derive(Debug, Clone)]
pub struct Fleet {
    servers: Vec<Server>,
    isolated: BTreeSet<String>,
    http: Http,
    deadline: Duration,
}

impl Fleet {
    /// The servers of `env`, ordered by colour then name; `deadline` bounds each server's call.
    pub fn new(env: &Environment, http: Http, deadline: Duration) -> Fleet {
        let mut servers: Vec<Server> = vec![];
        for (color, roles) in &env.services {
            for (role, urls) in roles {
                for u in urls {
                    let url = u.to_string();
                    match servers
                        .iter_mut()
                        .find(|s| s.url == url && s.color == *color)
                    {
                        Some(s) => s.roles.push(*role),
                        None => servers.push(Server {
                            name: name_of(env, u),
                            color: *color,
                            roles: vec![*role],
                            url,
                            load_balancers: vec![],
                        }),
                    }
                }
            }
        }
        for s in &mut servers {
            s.load_balancers = env
                .load_balancers
                .iter()
                .filter(|l| l.servers.get(&s.color).is_some_and(|v| v.contains(&s.name)))
                .map(|l| l.name.clone())
                .collect();
        }
        servers.sort_by(|a, b| (a.color, &a.name).cmp(&(b.color, &b.name)));
        Fleet {
            servers,
            isolated: BTreeSet::new(),
            http,
            deadline,
        }
    }

    /// Mark servers as out of service: fan-outs skip them and say so.
    pub fn with_isolated(mut self, names: impl IntoIterator<Item = String>) -> Fleet {
        self.isolated.extend(names);
        self
    }

    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    pub fn all(&self) -> Vec<&Server> {
        self.servers.iter().collect()
    }

    /// The servers of `color` (every colour for `None`) that serve any of `roles`.
    pub fn select(&self, color: Option<Color>, roles: &[Role]) -> Vec<&Server> {
        self.servers
            .iter()
            .filter(|s| color.is_none_or(|c| s.color == c) && s.serves(roles))
            .collect()
    }

    pub fn by_name(&self, name: &str) -> Option<&Server> {
        self.servers.iter().find(|s| s.name == name)
    }

    pub fn is_isolated(&self, s: &Server) -> bool {
        self.isolated.contains(&s.name)
    }

    pub fn client(&self, s: &Server) -> Client {
        Client::new(&s.url, self.http.clone())
    }

    /// Run `f` on every server of `servers` at once (at most [`CONCURRENCY`] in flight), each
    /// call bounded by the fleet's deadline; isolated servers are skipped. Every server's
    /// outcome is kept, in the order given.
    pub async fn each<T, F, Fut>(&self, what: &str, servers: &[&Server], f: F) -> FleetOutcome<T>
    where
        F: Fn(Client) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, String>>,
    {
        self.each_server(what, servers, |_, c| f(c)).await
    }

    /// [`Fleet::each`] for a call that also needs to know its server (its colour or role).
    pub async fn each_server<T, F, Fut>(
        &self,
        what: &str,
        servers: &[&Server],
        f: F,
    ) -> FleetOutcome<T>
    where
        F: Fn(Server, Client) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, String>>,
    {
        let deadline = self.deadline;
        // Owned servers and ready-made calls: the stream's items borrow nothing from a closure
        // argument, which keeps the future `Send` for every caller.
        let calls: Vec<_> = servers
            .iter()
            .map(|s| {
                let server = (*s).clone();
                let call = (!self.is_isolated(s)).then(|| f(server.clone(), self.client(s)));
                async move {
                    let started = Instant::now();
                    let status = match call {
                        None => Status::Skipped("isolated (out of service)".into()),
                        Some(call) => match tokio::time::timeout(deadline, call).await {
                            Ok(Ok(t)) => Status::Reached(t),
                            Ok(Err(why)) => Status::Failed(why),
                            Err(_) => Status::Failed(format!(
                                "no answer within {} (stalled or unreachable)",
                                humantime::format_duration(deadline)
                            )),
                        },
                    };
                    ServerResult {
                        server,
                        status,
                        took: started.elapsed(),
                    }
                }
            })
            .collect();
        let results = futures_util::stream::iter(calls)
            .buffered(CONCURRENCY)
            .collect()
            .await;
        FleetOutcome {
            what: what.into(),
            results,
        }
    }
}

/// A server's name: the config's name for its URL, else its host (with the port when the host
/// is an address or serves more than one URL).
fn name_of(env: &Environment, u: &crate::config::HttpUrl) -> String {
    if let Some((n, _)) = env.servers.iter().find(|(_, v)| v.0 == u.0) {
        return n.clone();
    }
    let host = u.0.host_str().unwrap_or("?").to_string();
    let shared = env
        .services
        .values()
        .flat_map(|r| r.values().flatten())
        .any(|o| o.0.host_str() == Some(&host) && o.0.port() != u.0.port());
    let is_addr =
        matches!(u.0.host(), Some(url::Host::Ipv4(_) | url::Host::Ipv6(_))) || host == "localhost";
    match u.0.port() {
        Some(p) if shared || is_addr => format!("{host}:{p}"),
        _ => host,
    }
}

/// The journal action of `isolate_server`: one entry per isolation or return, its step the
/// server's name, its state `isolated` or `returned`.
pub const ISOLATE_ACTION: &str = "isolate";

/// One isolation as the journal records it.
#[derive(Debug, Clone, PartialEq)]
pub struct Isolation {
    pub server: String,
    pub since: String,
    pub reason: String,
}

/// The servers isolated now: per server, its last `isolate` entry says `isolated`.
pub fn isolated_in(entries: &[crate::journal::Entry]) -> Vec<Isolation> {
    let mut last: std::collections::BTreeMap<&str, &crate::journal::Entry> = Default::default();
    for e in entries.iter().filter(|e| e.action == ISOLATE_ACTION) {
        last.insert(&e.step, e);
    }
    last.into_values()
        .filter(|e| e.state == "isolated")
        .map(|e| Isolation {
            server: e.step.clone(),
            since: e.at.clone(),
            reason: e.detail.clone(),
        })
        .collect()
}

/// The servers isolated now, read from the environment's journal without its lock. A journal
/// that cannot be read isolates nothing: every server then counts, and a dead one fails the
/// run that needs it (the safe side), with a warning saying why.
pub async fn isolated(
    env_name: &str,
    env: &Environment,
    timeout: Duration,
    journal_dir: &std::path::Path,
) -> Vec<Isolation> {
    match crate::journal::Journal::read(env_name, env, timeout, journal_dir).await {
        Ok(entries) => isolated_in(&entries),
        Err(e) => {
            tracing::warn!("isolated servers unknown (journal unreadable: {e}): none skipped");
            vec![]
        }
    }
}

/// `env` without `names`: their URLs leave `services` and their HAProxy servers leave every
/// load balancer's list, so health checks, switches, drains and the live colour count only
/// the servers in service.
pub fn without(env: &mut Environment, fleet: &Fleet, names: &[String]) {
    for n in names {
        let Some(s) = fleet.by_name(n) else { continue };
        if let Some(roles) = env.services.get_mut(&s.color) {
            for urls in roles.values_mut() {
                urls.retain(|u| u.to_string() != s.url);
            }
        }
        for l in &mut env.load_balancers {
            if let Some(v) = l.servers.get_mut(&s.color) {
                v.retain(|x| x != n);
            }
        }
    }
}

/// What happened on one server.
#[derive(Debug, Clone, PartialEq)]
pub enum Status<T> {
    Reached(T),
    Failed(String),
    Skipped(String),
}

#[derive(Debug, Clone)]
pub struct ServerResult<T> {
    pub server: Server,
    pub status: Status<T>,
    pub took: Duration,
}

/// Every server's outcome of one fan-out.
#[derive(Debug, Clone)]
pub struct FleetOutcome<T> {
    pub what: String,
    pub results: Vec<ServerResult<T>>,
}

impl<T> FleetOutcome<T> {
    pub fn failed(&self) -> Vec<(&Server, &str)> {
        self.results
            .iter()
            .filter_map(|r| match &r.status {
                Status::Failed(w) => Some((&r.server, w.as_str())),
                _ => None,
            })
            .collect()
    }

    pub fn reached(&self) -> Vec<(&Server, &T)> {
        self.results
            .iter()
            .filter_map(|r| match &r.status {
                Status::Reached(t) => Some((&r.server, t)),
                _ => None,
            })
            .collect()
    }

    pub fn skipped(&self) -> Vec<&Server> {
        self.results
            .iter()
            .filter(|r| matches!(r.status, Status::Skipped(_)))
            .map(|r| &r.server)
            .collect()
    }

    /// Every server not skipped was reached.
    pub fn all_reached(&self) -> bool {
        self.failed().is_empty()
    }

    /// One line: `stop orders on 16/18 server(s); failed: trade-blue-02 (…), …; skipped
    /// (isolated): trade-blue-03`.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} on {}/{} server(s)",
            self.what,
            self.reached().len(),
            self.results.len()
        );
        let failed = self.failed();
        if !failed.is_empty() {
            s.push_str("; failed: ");
            s.push_str(
                &failed
                    .iter()
                    .map(|(sv, w)| format!("{} ({w})", sv.name))
                    .collect::<Vec<_>>()
                    .join(", "),
            );
        }
        let skipped = self.skipped();
        if !skipped.is_empty() {
            s.push_str("; skipped (isolated): ");
            s.push_str(
                &skipped
                    .iter()
                    .map(|sv| sv.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            );
        }
        s
    }

    /// As a cutover step: the summary when every server was reached, else the summary as the
    /// failure (naming each server).
    pub fn into_step(self) -> StepResult {
        if self.results.is_empty() {
            return Err(format!("{}: no service configured", self.what).into());
        }
        if self.all_reached() {
            Ok((self.summary(), serde_json::json!({})))
        } else {
            Err(self.summary().into())
        }
    }
}

// ---------------------------------------------------------------- a run on the fleet

/// Everything a cutover or rollback needs.
pub struct Ctx {
    pub env_name: String,
    pub env: Environment,
    pub http: Http,
    pub timeout: Duration,
    pub cancel: CancellationToken,
    pub dry_run: bool,
    /// Every server of the environment: the one way to act on a role or colour.
    pub fleet: Fleet,
}

impl Ctx {
    pub fn new(
        env_name: &str,
        env: Environment,
        token: Option<Secret>,
        timeout: Duration,
        cancel: CancellationToken,
        dry_run: bool,
    ) -> Ctx {
        let mut http = Http::new(env.timeouts.connect.0, timeout);
        if let Some(t) = token {
            http = http.with_token(t);
        }
        let fleet = Fleet::new(&env, http.clone(), timeout);
        Ctx {
            env_name: env_name.into(),
            env,
            fleet,
            http,
            timeout,
            cancel,
            dry_run,
        }
    }

    /// The run of a tool that changes services: its environment, the admin token (missing:
    /// the config error it always was), the tool's timeout and a child of its cancellation.
    pub fn for_tool(ctx: &crate::cli::Context, dry_run: bool) -> Result<Ctx> {
        let env = ctx.env()?.clone();
        let token = env.admin_token()?;
        Ok(Ctx::new(
            ctx.env_name.as_str(),
            env,
            Some(token),
            ctx.timeout,
            ctx.cancel.child_token(),
            dry_run,
        ))
    }

    /// The journal's isolated servers out of service for this run (see [`Ctx::isolate`]).
    pub async fn load_isolation(&mut self, journal_dir: &std::path::Path) {
        let isolated =
            crate::fleet::isolated(&self.env_name, &self.env, self.timeout, journal_dir).await;
        self.isolate(&isolated);
    }

    /// Take `isolated` servers out of service for this run: fan-outs skip them (and say so),
    /// and health checks, switches, drains and the live colour no longer count them.
    pub fn isolate(&mut self, isolated: &[crate::fleet::Isolation]) {
        let names: Vec<String> = isolated.iter().map(|i| i.server.clone()).collect();
        for i in isolated {
            tracing::info!(
                "{} is isolated (since {}): out of service for this run",
                i.server,
                i.since
            );
        }
        crate::fleet::without(&mut self.env, &self.fleet, &names);
        self.fleet = self.fleet.clone().with_isolated(names);
    }

    pub fn clients(&self, color: Color, roles: &[Role]) -> Vec<Client> {
        self.fleet
            .select(Some(color), roles)
            .into_iter()
            .filter(|s| !self.fleet.is_isolated(s))
            .map(|s| self.fleet.client(s))
            .collect()
    }

    pub fn all(&self, color: Color) -> Vec<Client> {
        self.clients(color, &Role::ALL)
    }
}

/// The live colour on every load balancer; unreachable → exit 4.
pub async fn live_colors(ctx: &Ctx) -> Result<Vec<(String, Option<Color>)>> {
    let mut out = vec![];
    for l in &ctx.env.load_balancers {
        out.push((l.name.clone(), lb::live_color(l, ctx.timeout).await?));
    }
    Ok(out)
}

crate::failure!(
    /// Why a step of a cutover or rollback failed (or a precondition of one does not hold):
    /// the run records it as the step's failed check and then rolls back or stops, so it
    /// carries no exit code of its own; the report's verdict decides that.
    StepFailure
);

/// A step's outcome: its message and data for the report, or why it failed.
pub type StepResult = std::result::Result<(String, serde_json::Value), StepFailure>;

/// Every server of `color` in service healthy, ready and (when asked) at `version`, asked at
/// once; a failure names every server that is not, and why.
pub async fn health(
    ctx: &Ctx,
    color: Color,
    version: Option<&str>,
) -> std::result::Result<(), StepFailure> {
    let out = health_of(ctx, color).await;
    if out.results.is_empty() {
        return Err(format!("no services configured for {color}").into());
    }
    let mut bad: Vec<String> = out
        .failed()
        .into_iter()
        .map(|(s, why)| format!("{} ({}): {why}", s.name, s.url))
        .collect();
    if let Some(v) = version {
        bad.extend(
            out.reached()
                .into_iter()
                .filter(|(_, runs)| runs.as_str() != v)
                .map(|(s, runs)| format!("{} ({}): runs {runs} (expected {v})", s.name, s.url)),
        );
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad.join("; ").into())
    }
}

/// `/health` of every server of `color` not isolated, all at once: Reached(its version) when
/// its status is `ok`, else Failed(why).
pub async fn health_of(ctx: &Ctx, color: Color) -> FleetOutcome<String> {
    let servers: Vec<_> = ctx
        .fleet
        .select(Some(color), &Role::ALL)
        .into_iter()
        .filter(|s| !ctx.fleet.is_isolated(s))
        .collect();
    ctx.fleet
        .each("health", &servers, |c| async move {
            let h = c.health().await.map_err(|e| e.to_string())?;
            (h.status == "ok")
                .then_some(h.version)
                .ok_or_else(|| format!("status {}", h.status))
        })
        .await
}

/// One admin call on every server of `color` serving `roles`, all at once through the fleet:
/// every server is tried, and a failure names each server that failed and why.
pub async fn admin_all<F, Fut, T>(
    ctx: &Ctx,
    color: Color,
    roles: &[Role],
    what: &str,
    f: F,
) -> StepResult
where
    F: Fn(Client) -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, crate::http::HttpError>>,
{
    let servers = ctx.fleet.select(Some(color), roles);
    ctx.fleet
        .each(what, &servers, |c| {
            let call = f(c);
            async move { call.await.map_err(|e| e.to_string()) }
        })
        .await
        .into_step()
}

/// Trading and every active strategy off on one service, each strategy keeping its size for
/// the day it is switched back on; answers the strategies it switched off. Standby, rollback and
/// the emergency stop all stop a service this way.
pub async fn trading_off(
    c: &crate::contract::Client,
) -> std::result::Result<Vec<String>, crate::http::HttpError> {
    c.set_trading(false).await?;
    let st = c.admin_state().await?;
    let mut stopped = vec![];
    for (name, s) in st.strategies.iter().filter(|(_, s)| s.active) {
        let off = crate::contract::Strategy {
            active: false,
            size_pct: s.size_pct,
        };
        c.set_strategy(name, &off).await?;
        stopped.push(name.clone());
    }
    Ok(stopped)
}
