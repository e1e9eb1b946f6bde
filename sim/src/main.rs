//! `trading_sim` binary: serve one role (or all) on one port until SIGINT/SIGTERM.

use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use trading_sim::{Role, SimConfig};

/// Stand-in for the firm's trading services (docs/service-contract.md).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Colour this instance reports (blue or green).
    #[arg(long, default_value = "blue")]
    color: String,
    /// Version this instance reports.
    #[arg(
        long = "service-version",
        visible_alias = "app-version",
        default_value = "1.0.0"
    )]
    service_version: String,
    /// Role to serve; `all` serves every role on one port.
    #[arg(long, value_enum, default_value_t = Role::All)]
    role: Role,
    /// risk_limits.yaml to load (and re-read on POST /admin/config/reload).
    #[arg(long, value_name = "FILE")]
    risk_limits: Option<PathBuf>,
    /// Another config file it reads, as COMPONENT=FILE (`app=/etc/trading/app.yaml`; also
    /// strategy, database, endpoints); repeatable. Re-read on
    /// `POST /admin/config/reload {"component": COMPONENT}`.
    #[arg(long = "config", value_name = "COMPONENT=FILE", value_parser = component_file)]
    configs: Vec<(String, PathBuf)>,
    /// Variable holding the admin bearer token (never a flag: flags show in `ps`).
    #[arg(long, value_name = "VAR", default_value = "DEPLOYKIT_ADMIN_TOKEN")]
    admin_token_env: String,
    /// Answer 501 to POST /admin/config/reload: limits are read at start only (a service that
    /// must be restarted to pick up a new config).
    #[arg(long)]
    no_reload: bool,
    /// Start as a standby: trading deactivated until POST /admin/trading/activate.
    #[arg(long)]
    standby: bool,
    /// Runtime worker threads (1 = a single-threaded runtime: lowest latency on one pinned core).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Market tick interval in milliseconds.
    #[arg(long, default_value_t = 10)]
    tick_ms: u64,
    /// Instead of serving: send orders at --load-rate per second to this URL (e.g. HAProxy)
    /// until --load-duration or SIGTERM, then print a JSON summary (sent, acknowledged by colour,
    /// failed).
    #[arg(long, value_name = "URL")]
    load: Option<String>,
    #[arg(long, default_value_t = 100)]
    load_rate: u64,
    #[arg(long, default_value_t = 600)]
    load_duration_s: u64,
}

fn component_file(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((c, f)) if !c.is_empty() && !f.is_empty() => Ok((c.to_string(), PathBuf::from(f))),
        _ => Err(format!(
            "`{s}` is not COMPONENT=FILE (app=/etc/trading/app.yaml)"
        )),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SIM_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    let rt = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    }
    .expect("tokio runtime");
    if let Some(url) = args.load.clone() {
        return rt.block_on(async move {
            let stop = tokio_util::sync::CancellationToken::new();
            let s = stop.clone();
            tokio::spawn(async move {
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                        .expect("SIGTERM handler");
                tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = term.recv() => {} }
                s.cancel();
            });
            let summary = trading_sim::load::run(
                url,
                args.load_rate,
                std::time::Duration::from_secs(args.load_duration_s),
                stop,
            )
            .await;
            println!("{summary}");
            if summary["failed"].as_u64() == Some(0) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        });
    }
    rt.block_on(async move {
        let cfg = SimConfig {
            listen: args.listen,
            color: args.color,
            version: args.service_version,
            role: args.role,
            risk_limits: args.risk_limits,
            configs: args.configs,
            admin_token: std::env::var(&args.admin_token_env).ok().filter(|t| !t.is_empty()),
            reload_supported: !args.no_reload,
            standby: args.standby,
            tick_interval: std::time::Duration::from_millis(args.tick_ms.max(1)),
        };
        let handle = match trading_sim::serve(cfg.clone()).await {
            Ok(h) => h,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(3);
            }
        };
        tracing::info!(
            "trading_sim {} ({}, role {}) listening on {}",
            cfg.version,
            cfg.color,
            cfg.role.name(),
            handle.addr()
        );
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => ExitCode::SUCCESS,
            _ = term.recv() => ExitCode::SUCCESS,
            // A crash fault ends the process like a real crash would.
            _ = handle.crashed() => { eprintln!("crash fault injected: exiting"); ExitCode::from(70) }
        }
    })
}
