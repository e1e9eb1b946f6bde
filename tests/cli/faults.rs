//! Each injected fault is observable through the contract, and DELETE clears them all.

use crate::support::{client, sim};
use deploykit::contract::*;
use std::time::{Duration, Instant};

fn market(id: &str, qty: i64) -> OrderRequest {
    OrderRequest {
        account: "TEST-SMOKE-01".into(),
        symbol: "AAPL".into(),
        side: Side::Buy,
        qty,
        order_type: OrderType::Market,
        price: None,
        client_order_id: id.into(),
        strategy: None,
    }
}

#[tokio::test]
async fn latency_fault_slows_business_calls_and_shows_in_feeds() {
    let s = sim("blue", "1.0.0").await;
    let c = client(&s.url());
    c.set_faults(&Faults {
        latency_ms: Some(200),
        ..Default::default()
    })
    .await
    .unwrap();
    let t = Instant::now();
    c.positions("TEST-SMOKE-01").await.unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(200),
        "the injected delay was not applied"
    );
    assert!(
        c.feeds()
            .await
            .unwrap()
            .iter()
            .all(|f| f.latency_us >= 200_000)
    );
    assert_eq!(c.faults().await.unwrap().latency_ms, Some(200));
}

#[tokio::test]
async fn error_rate_fault_fails_requests() {
    let s = sim("blue", "1.0.0").await;
    let c = client(&s.url());
    c.set_faults(&Faults {
        error_rate: Some(1.0),
        ..Default::default()
    })
    .await
    .unwrap();
    let e = c.place_order(&market("e1", 1)).await.unwrap_err();
    assert_eq!(e.status(), Some(500));
    assert!(
        c.metrics()
            .await
            .unwrap()
            .contains("http_request_errors_total{route=\"/orders\"} 1")
    );
    // Out-of-range rates are refused.
    let bad = c
        .set_faults(&Faults {
            error_rate: Some(1.5),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.status(), Some(400));
}

#[tokio::test]
async fn stall_fault_holds_requests_for_its_duration() {
    let s = sim("blue", "1.0.0").await;
    let c = client(&s.url());
    let f = c
        .set_faults(&Faults {
            stall_ms: Some(300),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(f.stall_ms.unwrap() > 0, "an active stall is shown");
    let t = Instant::now();
    c.feeds().await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(200));
    // About time: the stall's window has passed.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        c.faults().await.unwrap().stall_ms,
        None,
        "a stall ends by itself"
    );
}

#[tokio::test]
async fn stale_feed_fault_stops_ticks() {
    let s = sim("blue", "1.0.0").await;
    let c = client(&s.url());
    // About time: the feeds tick before they are stopped.
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.set_faults(&Faults {
        stale_feed: Some(true),
        ..Default::default()
    })
    .await
    .unwrap();
    // About time: a stale feed ages; 400 ms of no ticks.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let feeds = c.feeds().await.unwrap();
    assert!(feeds.iter().all(|f| f.last_msg_age_ms >= 300), "{feeds:?}");
    let seq = c.ticks("AAPL").await.unwrap().last().unwrap().seq;
    // About time: no tick arrives in the next 100 ms.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(c.ticks("AAPL").await.unwrap().last().unwrap().seq, seq);
}

#[tokio::test]
async fn risk_ignore_fault_lets_over_limit_orders_through() {
    let s = sim("blue", "1.0.0").await;
    let c = client(&s.url());
    let over = market("big", 5000);
    assert_eq!(
        c.place_order(&over).await.unwrap().status,
        OrderStatus::Rejected
    );
    c.set_faults(&Faults {
        risk_ignore_limits: Some(true),
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(!c.limits().await.unwrap().enforced);
    assert_eq!(
        c.place_order(&market("big2", 5000)).await.unwrap().status,
        OrderStatus::Filled
    );
}

#[tokio::test]
async fn version_fault_changes_the_reported_version() {
    let s = sim("blue", "1.0.0").await;
    let c = client(&s.url());
    c.set_faults(&Faults {
        version: Some("0.9.9".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(c.health().await.unwrap().version, "0.9.9");
    c.clear_faults().await.unwrap();
    assert_eq!(c.health().await.unwrap().version, "1.0.0");
    assert_eq!(c.faults().await.unwrap(), Faults::default());
}

#[tokio::test]
async fn crash_fault_takes_the_service_down() {
    let s = sim("blue", "1.0.0").await;
    let c = client(&s.url());
    c.set_faults(&Faults {
        crash: Some(true),
        ..Default::default()
    })
    .await
    .unwrap();
    tokio::time::timeout(Duration::from_secs(2), s.crashed())
        .await
        .expect("crash fired");
    let e = crate::support::eventually_async(
        "the listener closed",
        Duration::from_secs(5),
        async || c.health().await.err(),
    )
    .await;
    assert!(e.is_unreachable(), "{e}");
}

#[tokio::test]
async fn unknown_fault_fields_are_refused() {
    let s = sim("blue", "1.0.0").await;
    let r = reqwest::Client::new()
        .post(format!("{}/sim/faults", s.url()))
        .json(&serde_json::json!({ "latency": 5 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
}
