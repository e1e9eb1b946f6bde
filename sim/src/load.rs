//! A steady order load for demos and drills: open-loop at a fixed rate through a URL (HAProxy),
//! counting what was acknowledged, by which colour, and what failed. Stops at --duration or on
//! SIGINT/SIGTERM and prints one JSON summary.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    ok_blue: AtomicU64,
    ok_green: AtomicU64,
    failed: AtomicU64,
}

pub async fn run(
    url: String,
    rate: u64,
    duration: Duration,
    stop: tokio_util::sync::CancellationToken,
) -> serde_json::Value {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let counts = Arc::new(Counts::default());
    let errors = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let run_id = std::process::id();
    let mut i = 0u64;
    while start.elapsed() < duration && !stop.is_cancelled() {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => break,
        }
        i += 1;
        let (http, counts, errors, url) =
            (http.clone(), counts.clone(), errors.clone(), url.clone());
        counts.sent.fetch_add(1, Ordering::Relaxed);
        tasks.spawn(async move {
            let body = serde_json::json!({"account": "LOAD-01", "symbol": "MSFT", "side": if i.is_multiple_of(2) { "buy" } else { "sell" },
                "qty": 1, "type": "market", "client_order_id": format!("load-{run_id}-{i}")});
            match http.post(format!("{url}/orders")).json(&body).send().await {
                Ok(r) if r.status().is_success() => match r.json::<serde_json::Value>().await.ok().and_then(|v| v["color"].as_str().map(String::from)).as_deref() {
                    Some("green") => counts.ok_green.fetch_add(1, Ordering::Relaxed),
                    _ => counts.ok_blue.fetch_add(1, Ordering::Relaxed),
                },
                Ok(r) => {
                    errors.lock().unwrap_or_else(|e| e.into_inner()).push(format!("HTTP {}", r.status()));
                    counts.failed.fetch_add(1, Ordering::Relaxed)
                }
                Err(e) => {
                    errors.lock().unwrap_or_else(|e| e.into_inner()).push(e.to_string());
                    counts.failed.fetch_add(1, Ordering::Relaxed)
                }
            };
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let errs = errors.lock().unwrap_or_else(|e| e.into_inner()).clone();
    serde_json::json!({
        "sent": counts.sent.load(Ordering::Relaxed),
        "acknowledged_blue": counts.ok_blue.load(Ordering::Relaxed),
        "acknowledged_green": counts.ok_green.load(Ordering::Relaxed),
        "failed": counts.failed.load(Ordering::Relaxed),
        "seconds": start.elapsed().as_secs_f64(),
        "first_errors": errs.into_iter().take(5).collect::<Vec<_>>(),
    })
}
