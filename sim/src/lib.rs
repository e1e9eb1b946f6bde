//! trading_sim: a faithful stand-in for the firm's trading services (trading engine, OMS, risk
//! engine, market data, web), implementing the whole service contract with real behaviour —
//! orders rest and fill against a moving market, positions and P&L follow fills, risk limits
//! are enforced — plus fault injection so every check of every tool can be shown to fail.
//!
//! It deliberately does not depend on `deploykit`: it is the other side of the contract, so a
//! disagreement between the two shows up in tests instead of being compiled away.

mod api;
pub mod load;
mod market;
mod metrics;
mod state;

pub use state::{Limit, RiskLimits};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The service roles of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// Every role on one port.
    All,
    TradingEngine,
    Oms,
    RiskEngine,
    Marketdata,
    Web,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::All => "all",
            Role::TradingEngine => "trading-engine",
            Role::Oms => "oms",
            Role::RiskEngine => "risk-engine",
            Role::Marketdata => "marketdata",
            Role::Web => "web",
        }
    }
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub listen: SocketAddr,
    pub color: String,
    pub version: String,
    pub role: Role,
    /// `risk_limits.yaml`; built-in limits when absent.
    pub risk_limits: Option<PathBuf>,
    /// The other config files it reads, by component (`app`, `strategy`, `database`,
    /// `endpoints`): loaded at start, re-read on `POST /admin/config/reload {"component": …}`.
    pub configs: Vec<(String, PathBuf)>,
    /// Bearer token for `/admin/*`; without one the admin API answers 503.
    pub admin_token: Option<String>,
    /// How often the market moves (every symbol ticks once per interval).
    pub tick_interval: Duration,
    /// Whether `POST /admin/config/reload` works; `false` answers 501, like a service that
    /// must be restarted to read its config.
    pub reload_supported: bool,
    /// Start as a standby: trading deactivated until `POST /admin/trading/activate` (a colour
    /// freshly deployed beside the live one trades nothing until a cutover activates it).
    pub standby: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            listen: "127.0.0.1:0".parse().expect("static addr"),
            color: "blue".into(),
            version: "1.0.0".into(),
            role: Role::All,
            risk_limits: None,
            configs: vec![],
            admin_token: None,
            tick_interval: Duration::from_millis(10),
            reload_supported: true,
            standby: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("risk limits: {0}")]
    Limits(String),
    #[error("config: {0}")]
    Config(String),
}

/// A running sim. Dropping it stops the server.
pub struct SimHandle {
    addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
    ticker: tokio::task::JoinHandle<()>,
    crashed: CancellationToken,
}

impl SimHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    /// Resolves when a `crash` fault stopped the server.
    pub async fn crashed(&self) {
        self.crashed.cancelled().await
    }
    pub fn stop(self) {}
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.server.abort();
        self.ticker.abort();
    }
}

/// Start serving on the current tokio runtime.
pub async fn serve(cfg: SimConfig) -> Result<SimHandle, SimError> {
    let (limits, digest) = match &cfg.risk_limits {
        Some(p) => {
            let (l, d) = RiskLimits::load(p).map_err(SimError::Limits)?;
            (l, Some(d))
        }
        None => (RiskLimits::builtin(), None),
    };
    let mut components = std::collections::BTreeMap::new();
    for (component, path) in &cfg.configs {
        let sha256 = state::load_component(path).map_err(SimError::Config)?;
        components.insert(
            component.clone(),
            state::LoadedFile {
                path: path.clone(),
                sha256,
                loaded_at_unix_ms: state::now_unix_ms(),
                last_reload_error: None,
            },
        );
    }
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| SimError::Listen {
            addr: cfg.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| SimError::Listen {
        addr: cfg.listen,
        source,
    })?;
    let crashed = CancellationToken::new();
    let state = state::AppState::new(cfg, limits, crashed.clone());
    *state::lock(&state.limits_loaded) = digest.map(|d| (d, state::now_unix_ms()));
    *state::lock(&state.components) = components;
    let ticker = tokio::spawn(market::run(state.clone()));
    let app = api::router(state);
    let server = tokio::spawn(accept_loop(listener, app, crashed.clone()));
    Ok(SimHandle {
        addr,
        server,
        ticker,
        crashed,
    })
}

/// Our own accept loop (rather than `axum::serve`) so a crash fault, or dropping the handle,
/// kills every open connection at once, like a dead process would.
async fn accept_loop(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    crash: CancellationToken,
) {
    use hyper_util::rt::TokioIo;
    use hyper_util::service::TowerToHyperService;
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = crash.cancelled() => break,
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((s, _)) => s,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!("accept: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let svc = TowerToHyperService::new(app.clone());
                conns.spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    conns.abort_all();
}
