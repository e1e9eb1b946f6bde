//! HAProxy's runtime API (stats socket at `level admin`): send one command, read the answer,
//! always within a deadline.

use crate::config::{Color, LoadBalancer, RuntimeApi};
use crate::error::{Error, Result};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Send `command` and return HAProxy's full answer.
pub async fn command(api: &RuntimeApi, command: &str, timeout: Duration) -> Result<String> {
    let what = format!("HAProxy runtime API {api}");
    let fut = async {
        let mut buf = Vec::new();
        let line = format!("{command}\n");
        match api {
            RuntimeApi::Unix(p) => {
                let mut s = tokio::net::UnixStream::connect(p).await?;
                s.write_all(line.as_bytes()).await?;
                s.read_to_end(&mut buf).await?;
            }
            RuntimeApi::Tcp(a) => {
                let mut s = tokio::net::TcpStream::connect(a.as_str()).await?;
                s.write_all(line.as_bytes()).await?;
                s.read_to_end(&mut buf).await?;
            }
        }
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&buf).into_owned())
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(Error::unreachable(what, e)),
        Err(_) => Err(Error::unreachable(
            what,
            format!("no answer within {timeout:?}"),
        )),
    }
}

/// One server's state from `show servers state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerState {
    pub backend: String,
    pub server: String,
    /// 0 stopped, 1 starting, 2 running, 3 stopping.
    pub op_state: u8,
    /// Bit field: 0x01 forced, 0x02 inherited, 0x20 resolution maintenance; 0x08/0x10 drain;
    /// 0x04 only records that the config said `disabled` (it stays set after `state ready`).
    pub admin_state: u8,
}

impl ServerState {
    /// Takes new load-balanced traffic: no maintenance or drain flag set.
    pub fn is_active(&self) -> bool {
        self.admin_state & 0x3b == 0
    }

    /// Forced into maintenance (`set server … state maint`) and not draining: out of service,
    /// as a standby colour's servers and an isolated server are.
    pub fn is_maint(&self) -> bool {
        self.admin_state & 0x01 != 0 && self.admin_state & 0x18 == 0
    }
}

/// Parse `show servers state [backend]` (format version 1).
pub fn parse_servers_state(text: &str) -> Vec<ServerState> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 6).then(|| ServerState {
                backend: f[1].to_string(),
                server: f[3].to_string(),
                op_state: f[5].parse().unwrap_or(0),
                admin_state: f[6].parse().unwrap_or(0xff),
            })
        })
        .collect()
}

/// Which colour one load balancer sends new traffic to: the colour with a server active in
/// every backend and every other server of it in maintenance (an isolated server), while the
/// other colour has none active. A colour with a draining server is mid-switch: not live.
pub async fn live_color(lb: &LoadBalancer, timeout: Duration) -> Result<Option<Color>> {
    let mut states = vec![];
    for b in &lb.backends {
        let text = command(&lb.runtime_api, &format!("show servers state {b}"), timeout).await?;
        if text.contains("Can't find backend") || text.contains("Unknown command") {
            return Err(Error::config(
                format!("load balancer {}", lb.name),
                format!("HAProxy says: {}", text.trim()),
            ));
        }
        states.extend(parse_servers_state(&text));
    }
    Ok(live_of(lb, &states))
}

/// [`live_color`] on parsed states.
pub fn live_of(lb: &LoadBalancer, states: &[ServerState]) -> Option<Color> {
    let of = |n: &String, b: &String| states.iter().find(|s| &s.backend == b && &s.server == n);
    // In every backend, the server's state satisfies `ok`.
    let everywhere = |n: &String, ok: fn(&ServerState) -> bool| {
        lb.backends.iter().all(|b| of(n, b).is_some_and(ok))
    };
    let active = |c: &Color| {
        lb.servers.get(c).is_some_and(|names| {
            names.iter().any(|n| everywhere(n, ServerState::is_active))
                && names
                    .iter()
                    .all(|n| everywhere(n, |s| s.is_active() || s.is_maint()))
        })
    };
    let live: Vec<Color> = lb.servers.keys().filter(|c| active(c)).copied().collect();
    match live.as_slice() {
        [one] => Some(*one),
        _ => None,
    }
}

/// Send several commands in one runtime-API transaction (`;`-separated on one line): HAProxy
/// applies them in one pass, so no request sees a half-switched backend.
pub async fn transaction(
    api: &RuntimeApi,
    commands: &[String],
    timeout: Duration,
) -> Result<String> {
    let line = commands.join("; ");
    let out = command(api, &line, timeout).await?;
    // Successful `set server` commands answer nothing; anything else is HAProxy's complaint.
    let complaints: Vec<&str> = out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if !complaints.is_empty() {
        return Err(Error::Conflict(format!(
            "HAProxy {api} refused `{line}`: {}",
            complaints.join(" | ")
        )));
    }
    Ok(out)
}

/// `set server` commands that send new traffic to `to` and drain `from`, in every backend.
pub fn switch_commands(lb: &LoadBalancer, from: Color, to: Color) -> Vec<String> {
    let mut cmds = vec![];
    for b in &lb.backends {
        for s in lb.servers.get(&to).into_iter().flatten() {
            cmds.push(format!("set server {b}/{s} state ready"));
        }
        for s in lb.servers.get(&from).into_iter().flatten() {
            cmds.push(format!("set server {b}/{s} state drain"));
        }
    }
    cmds
}

/// `set server … state STATE` for one server in every backend (isolate_server: drain, maint,
/// ready).
pub fn server_commands(lb: &LoadBalancer, server: &str, state: &str) -> Vec<String> {
    lb.backends
        .iter()
        .map(|b| format!("set server {b}/{server} state {state}"))
        .collect()
}

/// Current sessions + queued requests on the named servers (`show stat`: scur, qcur).
pub async fn sessions_of(lb: &LoadBalancer, names: &[String], timeout: Duration) -> Result<u64> {
    let text = command(&lb.runtime_api, "show stat", timeout).await?;
    let mut total = 0;
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let f: Vec<&str> = l.split(',').collect();
        if f.len() > 4 && lb.backends.iter().any(|b| b == f[0]) && names.iter().any(|n| n == f[1]) {
            total += f[2].parse::<u64>().unwrap_or(0) + f[4].parse::<u64>().unwrap_or(0);
        }
    }
    Ok(total)
}

/// `set server … state maint` for every server of `color` (after its drain completed).
pub fn maint_commands(lb: &LoadBalancer, color: Color) -> Vec<String> {
    let mut cmds = vec![];
    for b in &lb.backends {
        for s in lb.servers.get(&color).into_iter().flatten() {
            cmds.push(format!("set server {b}/{s} state maint"));
        }
    }
    cmds
}

/// Current sessions + queued requests on every server of `color` (`show stat`: scur, qcur).
pub async fn sessions(lb: &LoadBalancer, color: Color, timeout: Duration) -> Result<u64> {
    let names = lb.servers.get(&color).cloned().unwrap_or_default();
    sessions_of(lb, &names, timeout).await
}

/// Wait, bounded by `deadline` for them all, until the servers `names` picks on each load
/// balancer hold no session (current or queued), a progress line a second. Answers the sessions
/// left at the end: 0 drained; `u64::MAX` when a load balancer did not answer.
pub async fn wait_drained<'a>(
    lbs: impl IntoIterator<Item = &'a LoadBalancer>,
    names: impl Fn(&LoadBalancer) -> Vec<String>,
    what: &str,
    deadline: Duration,
    timeout: Duration,
) -> u64 {
    let start = std::time::Instant::now();
    let mut every = crate::telemetry::Every::new(Duration::from_secs(1));
    let mut left = 0;
    for l in lbs {
        let names = names(l);
        loop {
            left = sessions_of(l, &names, timeout).await.unwrap_or(u64::MAX);
            if left == 0 || start.elapsed() >= deadline {
                break;
            }
            if every.due() {
                tracing::info!("{what}: draining on {}: {left} session(s) left", l.name);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    left
}

/// The one colour every instance agrees is live, or why not.
pub fn agreed(live: &[(String, Option<Color>)]) -> std::result::Result<Color, String> {
    let colors: Vec<Option<Color>> = live.iter().map(|(_, c)| *c).collect();
    match colors.first() {
        None => Err("no load balancer configured for this environment".into()),
        Some(Some(c)) if colors.iter().all(|x| x == &Some(*c)) => Ok(*c),
        _ => Err(format!(
            "load balancers disagree about the live colour: {}",
            live.iter()
                .map(|(n, c)| format!("{n}={}", c.map_or("none".to_string(), |c| c.to_string())))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// The colour to act on: `explicit`, else the one every load balancer agrees is live (exit 5
/// when they disagree or none is), else — with no load balancer — the environment's first colour.
pub async fn target_color(
    env: &crate::config::Environment,
    explicit: Option<Color>,
    timeout: Duration,
) -> Result<Color> {
    if let Some(c) = explicit {
        return Ok(c);
    }
    if env.load_balancers.is_empty() {
        return Ok(env.colors[0]);
    }
    let mut live = vec![];
    for l in &env.load_balancers {
        live.push((l.name.clone(), live_color(l, timeout).await?));
    }
    agreed(&live).map_err(|e| Error::Conflict(format!("{e}; pass --color blue|green")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_show_servers_state() {
        let text = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight\n\
3 trading 1 blue 127.0.0.1 2 0 1 1 4 6 3 4 6 0 0 0 - 18181 - 0 0 - - 0\n\
3 trading 2 green 127.0.0.1 0 5 1 1 4 1 0 0 14 0 0 0 - 18182 - 0 0 - - 0\n\
3 other 1 x 127.0.0.1 2 4 1 1 4 1 0 0 14 0 0 0 - 18182 - 0 0 - - 0\n";
        let s = parse_servers_state(text);
        assert_eq!(s.len(), 3);
        // Configured `disabled`, then `set server … state ready`: active.
        assert!(s[2].is_active());
        assert!(s[0].is_active());
        assert_eq!((s[1].server.as_str(), s[1].admin_state), ("green", 5));
        assert!(!s[1].is_active());
    }

    #[test]
    fn a_colour_with_an_isolated_server_is_still_live_a_draining_one_is_not() {
        let lb: LoadBalancer = toml::from_str(
            "name = \"l\"\nruntime_api = \"unix:/x\"\nbackends = [\"b\"]\n\
             servers = { blue = [\"b1\", \"b2\"], green = [\"g1\", \"g2\"] }",
        )
        .unwrap();
        let st = |states: &[(&str, u8)]| -> Vec<ServerState> {
            states
                .iter()
                .map(|(n, a)| ServerState {
                    backend: "b".into(),
                    server: n.to_string(),
                    op_state: 2,
                    admin_state: *a,
                })
                .collect()
        };
        // blue serving, green in maintenance: blue.
        let s = st(&[("b1", 0), ("b2", 0), ("g1", 1), ("g2", 1)]);
        assert_eq!(live_of(&lb, &s), Some(Color::Blue));
        // b2 isolated (maint): still blue.
        let s = st(&[("b1", 0), ("b2", 1), ("g1", 1), ("g2", 1)]);
        assert_eq!(live_of(&lb, &s), Some(Color::Blue));
        // b2 draining: mid-switch, no live colour.
        let s = st(&[("b1", 0), ("b2", 8), ("g1", 1), ("g2", 1)]);
        assert_eq!(live_of(&lb, &s), None);
        // Every server in maintenance: none; both serving: none.
        let s = st(&[("b1", 1), ("b2", 1), ("g1", 1), ("g2", 1)]);
        assert_eq!(live_of(&lb, &s), None);
        let s = st(&[("b1", 0), ("b2", 0), ("g1", 0), ("g2", 0)]);
        assert_eq!(live_of(&lb, &s), None);
        // A server HAProxy does not list: not live.
        let s = st(&[("b1", 0), ("g1", 1), ("g2", 1)]);
        assert_eq!(live_of(&lb, &s), None);
    }
}
