//! maintenance_mode on the real stack: order of steps, counters not sleeps, deadline policy,
//! idempotence, HAProxy's own maintenance page, and --status from the live parts.

use crate::support::stack::Stack;
use crate::support::{check_message, checks_with, client};
use deploykit::contract::{Faults, OrderRequest, OrderType, Side};
use std::time::{Duration, Instant};

async fn mm(st: &Stack, args: &[&str]) -> (i32, String) {
    let r = st.run("maintenance_mode", args).await;
    (r.code, r.stdout)
}

fn order(ty: OrderType, price: Option<f64>, id: &str) -> OrderRequest {
    OrderRequest {
        account: "TEST-SMOKE-01".into(),
        symbol: "AAPL".into(),
        side: Side::Buy,
        qty: 1,
        order_type: ty,
        price,
        client_order_id: id.into(),
        strategy: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enable_status_idempotent_disable() {
    let st = Stack::up();
    let lb = st.env["HAPROXY_URL"].clone();
    let (code, out) = mm(&st, &["--enable", "--reason", "deploy 3.2.2"]).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        checks_with(&out, "ok"),
        vec![
            "Stop new orders",
            "Complete in-flight orders",
            "Stop trading strategies",
            "Serve the maintenance page"
        ]
    );
    // HAProxy answers with the maintenance page; orders are refused.
    let r = reqwest::get(format!("{lb}/")).await.unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert!(r.text().await.unwrap().contains("Scheduled maintenance"));
    let blue = deploykit::contract::Client::new(
        &st.env["BLUE_URL"],
        crate::support::http().with_token(deploykit::redact::Secret::new(
            st.env["DEPLOYKIT_ADMIN_TOKEN"].clone(),
        )),
    );
    assert_eq!(
        blue.place_order(&order(OrderType::Market, None, "m1"))
            .await
            .unwrap_err()
            .status(),
        Some(503)
    );
    let (code, out) = mm(&st, &["--status"]).await;
    assert_eq!(code, 0);
    assert!(
        check_message(&out, "Maintenance mode").contains("ON"),
        "{out}"
    );
    // Twice is a no-op that says so.
    let (code, out) = mm(&st, &["--enable"]).await;
    assert_eq!(code, 0);
    assert!(
        check_message(&out, "Maintenance mode").contains("already in maintenance"),
        "{out}"
    );
    // Disable: page gone, orders accepted, strategies still stopped.
    let (code, out) = mm(&st, &["--disable"]).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        reqwest::get(format!("{lb}/"))
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    assert!(
        blue.place_order(&order(OrderType::Market, None, "m2"))
            .await
            .is_ok()
    );
    assert!(!blue.admin_state().await.unwrap().trading_active);
    assert!(checks_with(&out, "skip").contains(&"Resume trading".to_string()));
    // A half state is reported as such (exit 1) by --status, read from the services.
    blue.set_maintenance(Some("someone by hand")).await.unwrap();
    let (code, out) = mm(&st, &["--status"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(check_message(&out, "Maintenance mode").contains("partly in maintenance"));
    let (code, _) = mm(&st, &["--disable", "--resume-strategies"]).await;
    assert_eq!(code, 0);
    assert!(blue.admin_state().await.unwrap().trading_active);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_orders_complete_and_the_deadline_cancels_working_orders() {
    let st = Stack::up();
    let blue = client(&st.env["BLUE_URL"]);
    // A working (resting) order, and a slow order in flight when maintenance starts.
    let resting = blue
        .place_order(&order(OrderType::Limit, Some(1.0), "rest-1"))
        .await
        .unwrap();
    blue.set_faults(&Faults {
        latency_ms: Some(800),
        ..Default::default()
    })
    .await
    .unwrap();
    let slow_client = blue.clone();
    let slow = tokio::spawn(async move {
        slow_client
            .place_order(&order(OrderType::Market, None, "slow-1"))
            .await
    });
    let admin = st.client("blue");
    crate::support::eventually_async(
        "the slow order in flight",
        Duration::from_secs(5),
        async || (admin.inflight().await.ok()?.inflight_requests > 0).then_some(()),
    )
    .await;
    let t = Instant::now();
    let (code, out) = mm(&st, &["--enable", "--deadline", "1500ms"]).await;
    let took = t.elapsed();
    assert_eq!(code, 0, "{out}");
    // The in-flight order completed (not refused): stop applies to new orders only.
    let o = slow.await.unwrap().expect("in-flight order completed");
    assert_eq!(o.status, deploykit::contract::OrderStatus::Filled);
    // The resting order kept the drain open until the deadline, then was cancelled and named.
    let m = check_message(&out, "Complete in-flight orders");
    assert!(
        m.contains("deadline") && m.contains(&resting.order_id),
        "{m}"
    );
    assert!(took >= Duration::from_millis(1500), "{took:?}");
    assert_eq!(
        blue.order(&resting.order_id).await.unwrap().status,
        deploykit::contract::OrderStatus::Cancelled
    );
}
