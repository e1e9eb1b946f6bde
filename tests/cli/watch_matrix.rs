//! The watch's fault matrix on real trading services (in-process trading_sim, real HTTP): for
//! every watch metric (the same loop serves cutover's watch and strategy_rollout's holds), its
//! fault injected on the colour being watched under client orders, against (a) a busy baseline,
//! (b) an empty baseline (6 am), (c) a baseline with half the traffic. Every fault fails naming
//! its metric; every healthy twin passes. Counts go to docs/benchmarks.md.

use crate::support::{ADMIN_TOKEN, client, sim};
use deploykit::config::{Color, Config, EnvName};
use deploykit::contract::{Faults, OrderRequest, OrderType, Side, Strategy};
use deploykit::fleet::Ctx;
use deploykit::watch::{self, Failed};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const RATE: u64 = 40;
const TICK: Duration = Duration::from_millis(250);

/// Market orders at `rate`/s, alternating sides (positions stay small), open loop.
fn orders(url: String, rate: u64) -> CancellationToken {
    let stop = CancellationToken::new();
    if rate == 0 {
        return stop;
    }
    let s = stop.clone();
    tokio::spawn(async move {
        let c = client(&url);
        let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
        let mut i = 0u64;
        while !s.is_cancelled() {
            tick.tick().await;
            i += 1;
            let (c, id) = (c.clone(), format!("m-{i}-{}", rand::random::<u32>()));
            tokio::spawn(async move {
                let _ = c
                    .place_order(&OrderRequest {
                        account: "CLIENT-A".into(),
                        symbol: "MSFT".into(),
                        side: if i.is_multiple_of(2) {
                            Side::Buy
                        } else {
                            Side::Sell
                        },
                        qty: 1,
                        order_type: OrderType::Market,
                        price: None,
                        client_order_id: id,
                        strategy: None,
                    })
                    .await;
            });
        }
    });
    stop
}

fn ctx(blue: &str, green: &str) -> Ctx {
    let roles = |u: &str| {
        format!(
            "trading-engine = [\"{u}\"]\noms = [\"{u}\"]\nrisk-engine = [\"{u}\"]\nmarketdata = [\"{u}\"]\n"
        )
    };
    let text = format!(
        "[environments.local]\ncolors = [\"blue\", \"green\"]\nadmin_token_env = \"DEPLOYKIT_ADMIN_TOKEN\"\n\
         [environments.local.thresholds]\nmin_fill_rate = 0.5\ninconclusive_extend = \"5s\"\n\
         [environments.local.services.blue]\n{}[environments.local.services.green]\n{}",
        roles(blue),
        roles(green)
    );
    let cfg = Config::parse(std::path::Path::new("matrix.toml"), &text).unwrap();
    let env = cfg.environment(EnvName::Local).unwrap().clone();
    Ctx::new(
        "local",
        env,
        Some(deploykit::redact::Secret::new(ADMIN_TOKEN)),
        Duration::from_secs(5),
        CancellationToken::new(),
        false,
    )
}

/// One case: Ok(()) when the watch passed, Err(why) when it failed.
async fn watch_once(
    baseline_rate: u64,
    fault: Option<Faults>,
    strategies: bool,
) -> Result<(), String> {
    let (blue, green) = (sim("blue", "1.0.0").await, sim("green", "1.1.0").await);
    let c = ctx(&blue.url(), &green.url());
    let g = client(&green.url());
    if strategies {
        g.set_trading(true).await.unwrap();
        g.set_strategy(
            "MM_EQ_001",
            &Strategy {
                active: true,
                size_pct: 100,
            },
        )
        .await
        .unwrap();
    }
    let stop_blue = orders(blue.url(), baseline_rate);
    // About time: blue under load before the baseline window opens.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let base = watch::baseline(
        c.clients(Color::Blue, &deploykit::config::Role::ALL),
        Duration::from_millis(1500),
        TICK,
    )
    .await
    .unwrap();
    stop_blue.cancel();
    if let Some(f) = &fault {
        g.set_faults(f).await.unwrap();
    }
    let stop_green = orders(green.url(), RATE);
    let r = watch::observe(
        &c,
        Color::Green,
        c.all(Color::Green),
        &base,
        Duration::from_secs(3),
        TICK,
        "watch",
    )
    .await;
    stop_green.cancel();
    let _ = g.clear_faults().await;
    match r {
        Ok(_) => Ok(()),
        Err(Failed::Regressed(why))
        | Err(Failed::Unhealthy(why))
        | Err(Failed::Unreadable(why)) => Err(why),
        Err(Failed::Interrupted) => Err("interrupted".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_watch_metric_fails_on_its_fault_and_passes_healthy_whatever_the_baseline() {
    let f = Faults::default;
    let cases: Vec<(&str, Faults, bool)> = vec![
        (
            "error_rate",
            Faults {
                error_rate: Some(0.5),
                ..f()
            },
            false,
        ),
        (
            "throughput",
            Faults {
                stall_ms: Some(6_000),
                ..f()
            },
            false,
        ),
        (
            "mean_latency",
            Faults {
                latency_ms: Some(150),
                ..f()
            },
            false,
        ),
        (
            "fill_rate",
            Faults {
                fill_ratio: Some(0.2),
                ..f()
            },
            false,
        ),
        (
            "risk_rejections",
            Faults {
                risk_reject_rate: Some(0.3),
                ..f()
            },
            false,
        ),
        (
            "strategy_loss_per_min",
            Faults {
                strategy_loss_per_s: Some(40.0),
                ..f()
            },
            true,
        ),
    ];
    let baselines = [("busy", RATE), ("empty", 0), ("half", RATE / 2)];
    let mut runs = vec![];
    for (metric, fault, strategies) in &cases {
        for (bname, brate) in baselines {
            for faulty in [true, false] {
                let (metric, fault, strategies) = (*metric, fault.clone(), *strategies);
                runs.push(async move {
                    let r = watch_once(brate, faulty.then_some(fault), strategies).await;
                    (metric, bname, faulty, r)
                });
            }
        }
    }
    // Six cases at a time: each is two sims and ~40 orders/s.
    let mut results = vec![];
    let mut it = runs.into_iter();
    loop {
        let batch: Vec<_> = it.by_ref().take(6).collect();
        if batch.is_empty() {
            break;
        }
        results.extend(futures_util::future::join_all(batch).await);
    }
    let (mut caught, mut missed, mut false_alarms, mut healthy) = (0, vec![], vec![], 0);
    for (metric, bname, faulty, r) in &results {
        match (faulty, r) {
            (true, Err(why)) if why.starts_with(&format!("{metric} regressed")) => caught += 1,
            (true, other) => missed.push(format!("{metric}/{bname}: {other:?}")),
            (false, Ok(())) => healthy += 1,
            (false, Err(why)) => false_alarms.push(format!("{metric}/{bname}: {why}")),
        }
    }
    println!(
        "watch fault matrix: {} fault cases, {caught} caught with the metric named; {} healthy twins, {} false alarms",
        results.len() / 2,
        results.len() / 2,
        false_alarms.len()
    );
    assert!(
        missed.is_empty(),
        "faults not caught (or another metric named): {missed:#?}"
    );
    assert!(
        false_alarms.is_empty(),
        "healthy twins failed: {false_alarms:#?}"
    );
    assert_eq!(healthy, results.len() / 2);
}
