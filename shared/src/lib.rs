//! deploykit: every line of deploy-tools' logic. The binaries under `bins/` only call
//! [`cli::main`] with their tool's `Args`.

pub mod alerts_armed;
pub mod baselines;
pub mod channels;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod contract;
pub mod cutover;
pub mod db;
pub mod dbcheck;
pub mod deploy_metrics;
pub mod deploy_report;
pub mod emergency;
pub mod env_vars;
pub mod error;
pub mod exit;
pub mod fault;
pub mod fleet;
pub mod html;
pub mod http;
pub mod journal;
pub mod latency;
pub mod lb;
pub mod lifecycle;
pub mod maintenance;
pub mod measure;
pub mod metrics;
pub mod migrate;
pub mod output;
pub mod process;
pub mod promotion;
pub mod redact;
pub mod report;
pub mod rollout;
pub mod smoke;
pub mod telemetry;
pub mod trading_config;
pub mod verify;
pub mod watch;

pub use error::{Error, Result};
