//! Every contract endpoint through deploykit's typed client against an in-process trading_sim.

use crate::support::{ADMIN_TOKEN, client, http, sim, sim_with};
use deploykit::contract::*;
use std::time::Duration;

const ACC: &str = "TEST-SMOKE-01";

fn order(
    symbol: &str,
    side: Side,
    qty: i64,
    ty: OrderType,
    price: Option<f64>,
    id: &str,
) -> OrderRequest {
    OrderRequest {
        account: ACC.into(),
        symbol: symbol.into(),
        side,
        qty,
        order_type: ty,
        price,
        client_order_id: id.into(),
        strategy: None,
    }
}

#[tokio::test]
async fn health_and_metrics() {
    let s = sim("green", "3.2.2").await;
    let c = client(&s.url());
    let h = c.health().await.unwrap();
    assert_eq!(
        (h.color.as_str(), h.version.as_str(), h.status.as_str()),
        ("green", "3.2.2", "ok")
    );
    assert!(h.ready);
    assert_eq!(h.contract, VERSION);
    assert!(h.details.is_empty());
    c.place_order(&order("AAPL", Side::Buy, 1, OrderType::Market, None, "m1"))
        .await
        .unwrap();
    let m = c.metrics().await.unwrap();
    for name in [
        "http_request_duration_seconds_bucket",
        "http_requests_total",
        "orders_total{status=\"accepted\"} 1",
        "fills_total 1",
        "ticks_total",
        "inflight_requests",
        "open_orders",
        "trading_pnl",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    ] {
        assert!(m.contains(name), "metrics lack {name}:\n{m}");
    }
}

#[tokio::test]
async fn orders_rest_fill_cancel_and_move_positions() {
    let s = sim("blue", "1.0.0").await;
    let c = client(&s.url());
    // Market order fills at once.
    let m = c
        .place_order(&order(
            "MSFT",
            Side::Buy,
            10,
            OrderType::Market,
            None,
            "mkt-1",
        ))
        .await
        .unwrap();
    assert_eq!(m.status, OrderStatus::Filled);
    assert_eq!(m.filled_qty, 10);
    assert_eq!(m.fills.iter().map(|f| f.qty).sum::<i64>(), 10);
    assert!(m.order_id.starts_with("blue-"));
    let pos = c.positions(ACC).await.unwrap();
    assert_eq!(pos.qty("MSFT"), 10);
    // Same client_order_id again: the same order, not a second one.
    let again = c
        .place_order(&order(
            "MSFT",
            Side::Buy,
            10,
            OrderType::Market,
            None,
            "mkt-1",
        ))
        .await
        .unwrap();
    assert_eq!(again.order_id, m.order_id);
    assert_eq!(c.positions(ACC).await.unwrap().qty("MSFT"), 10);

    // A limit far below the market rests; cancel confirms.
    let l = c
        .place_order(&order(
            "AAPL",
            Side::Buy,
            5,
            OrderType::Limit,
            Some(1.0),
            "lim-1",
        ))
        .await
        .unwrap();
    assert_eq!(l.status, OrderStatus::Resting);
    assert_eq!(
        c.order(&l.order_id).await.unwrap().status,
        OrderStatus::Resting
    );
    assert_eq!(c.inflight().await.unwrap().open_orders, 1);
    let cancelled = c.cancel_order(&l.order_id).await.unwrap();
    assert_eq!(cancelled.status, OrderStatus::Cancelled);
    let twice = c.cancel_order(&l.order_id).await.unwrap_err();
    assert_eq!(twice.status(), Some(409));
    assert_eq!(
        c.cancel_order("nope").await.unwrap_err().status(),
        Some(404)
    );

    // A resting limit fills when the market crosses it.
    let r = c
        .place_order(&order(
            "NVDA",
            Side::Buy,
            3,
            OrderType::Limit,
            Some(100.0),
            "lim-2",
        ))
        .await
        .unwrap();
    assert_eq!(r.status, OrderStatus::Resting);
    c.set_price("NVDA", 99.0).await.unwrap();
    let filled = c.order(&r.order_id).await.unwrap();
    assert_eq!(filled.status, OrderStatus::Filled);
    assert_eq!(filled.avg_price, Some(100.0));
    assert_eq!(c.positions(ACC).await.unwrap().qty("NVDA"), 3);
    let all = c.orders(ACC).await.unwrap();
    assert_eq!(all.len(), 3);

    // P&L: selling NVDA at 110 realises 3 × (110 − 100).
    c.set_price("NVDA", 110.0).await.unwrap();
    c.place_order(&order(
        "NVDA",
        Side::Sell,
        3,
        OrderType::Market,
        None,
        "close-1",
    ))
    .await
    .unwrap();
    let pnl = c.pnl(ACC).await.unwrap();
    let nvda = c.positions(ACC).await.unwrap();
    assert_eq!(nvda.qty("NVDA"), 0);
    let realized_nvda = nvda
        .positions
        .iter()
        .find(|p| p.symbol == "NVDA")
        .unwrap()
        .realized_pnl;
    assert!((realized_nvda - 30.0).abs() < 1e-6, "{realized_nvda}");
    assert!((pnl.total - (pnl.realized + pnl.unrealized)).abs() < 1e-9);
}

#[tokio::test]
async fn invalid_orders_are_rejected_with_a_reason() {
    let s = sim("blue", "1.0.0").await;
    let c = client(&s.url());
    for (o, expect) in [
        (
            order("AAPL", Side::Buy, 0, OrderType::Market, None, "z"),
            "qty must be positive",
        ),
        (
            order("AAPL", Side::Buy, -5, OrderType::Market, None, "n"),
            "qty must be positive",
        ),
        (
            order("ZZZZ", Side::Buy, 1, OrderType::Market, None, "u"),
            "unknown symbol",
        ),
        (
            order("AAPL", Side::Buy, 1, OrderType::Limit, Some(-1.0), "p"),
            "price must be positive",
        ),
        (
            order("AAPL", Side::Buy, 1, OrderType::Limit, None, "q"),
            "needs a price",
        ),
    ] {
        let e = c.place_order(&o).await.unwrap_err();
        assert_eq!(e.status(), Some(400), "{e}");
        assert!(e.to_string().contains(expect), "{e}");
        let d = c.risk_check(&o).await.unwrap();
        assert!(!d.allowed);
    }
}

#[tokio::test]
async fn risk_limits_are_enforced_and_reloadable() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("risk_limits.yaml");
    std::fs::write(
        &file,
        "default: {max_position_size: 100, max_loss_per_day: 1000}\n",
    )
    .unwrap();
    let s = sim_with(trading_sim::SimConfig {
        risk_limits: Some(file.clone()),
        admin_token: Some(ADMIN_TOKEN.into()),
        ..Default::default()
    })
    .await;
    let c = client(&s.url());
    let big = order("AAPL", Side::Buy, 150, OrderType::Market, None, "big");
    let d = c.risk_check(&big).await.unwrap();
    assert!(!d.allowed);
    assert!(d.reason.unwrap().contains("position limit exceeded"));
    let o = c.place_order(&big).await.unwrap();
    assert_eq!(o.status, OrderStatus::Rejected);
    assert_eq!(c.positions(ACC).await.unwrap().qty("AAPL"), 0);
    let l = c.limits().await.unwrap();
    assert_eq!(l.default.unwrap().max_position_size, 100);
    assert!(l.enforced);

    // Reload a raised limit: the same order now passes.
    std::fs::write(
        &file,
        "default: {max_position_size: 200, max_loss_per_day: 1000}\n",
    )
    .unwrap();
    let before = c.config_in_use().await.unwrap().files[0].sha256.clone();
    let l: Limits = serde_json::from_value(c.reload_config("risk-limits").await.unwrap()).unwrap();
    assert_eq!(l.default.unwrap().max_position_size, 200);
    assert!(c.risk_check(&big).await.unwrap().allowed);
    // GET /admin/config (1.3): the SHA-256 of the bytes now in use, from that path.
    let used = c.config_in_use().await.unwrap();
    assert_eq!(used.files[0].component, "risk-limits");
    assert_eq!(std::path::Path::new(&used.files[0].path), file.as_path());
    assert_eq!(
        used.files[0].sha256,
        deploykit::migrate::sha256_hex(&std::fs::read(&file).unwrap())
    );
    assert_ne!(used.files[0].sha256, before);

    // A broken file is refused; the old limits stay and /health says so.
    std::fs::write(&file, "default: {max_position_size: oops}\n").unwrap();
    let e = c.reload_config("risk-limits").await.unwrap_err();
    assert_eq!(e.status(), Some(422));
    assert_eq!(
        c.limits().await.unwrap().default.unwrap().max_position_size,
        200
    );
    let h = c.health().await.unwrap();
    assert_eq!(h.status, "degraded");
    // … and the config in use is still the good file's, with the failed reload named.
    let used = c.config_in_use().await.unwrap();
    assert_eq!(used.files[0].sha256.len(), 64);
    assert!(used.files[0].last_reload_error.is_some());
    assert!(h.details[0].contains("last config reload failed"));

    // Loss limit: losing more than max_loss_per_day blocks new orders.
    std::fs::write(
        &file,
        "default: {max_position_size: 200, max_loss_per_day: 50}\n",
    )
    .unwrap();
    c.reload_config("risk-limits").await.unwrap();
    c.set_price("EURUSD", 100.0).await.unwrap();
    c.place_order(&order(
        "EURUSD",
        Side::Buy,
        10,
        OrderType::Market,
        None,
        "l1",
    ))
    .await
    .unwrap();
    c.set_price("EURUSD", 90.0).await.unwrap();
    let d = c
        .risk_check(&order(
            "EURUSD",
            Side::Buy,
            1,
            OrderType::Market,
            None,
            "l2",
        ))
        .await
        .unwrap();
    assert!(!d.allowed);
    assert!(d.reason.unwrap().contains("daily loss limit"), "loss check");
}

/// Contract 1.4: every other config type is a component of its own — reloaded with
/// `{"component": …}` (also at the guide's `POST /api/config/reload`), listed in
/// `GET /admin/config`; a bad file is refused, the old one stays in use, /health degrades; a
/// component the service does not read is a 422 (not a 404, which means "cannot reload").
#[tokio::test]
async fn every_config_type_is_a_component_reloaded_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app.yaml");
    std::fs::write(&app, "log_level: info\n").unwrap();
    let s = sim_with(trading_sim::SimConfig {
        configs: vec![("app".into(), app.clone())],
        admin_token: Some(ADMIN_TOKEN.into()),
        ..Default::default()
    })
    .await;
    let c = client(&s.url());
    let sha = |p: &std::path::Path| deploykit::migrate::sha256_hex(&std::fs::read(p).unwrap());
    let in_use = async || {
        c.config_in_use()
            .await
            .unwrap()
            .files
            .into_iter()
            .find(|f| f.component == "app")
            .unwrap()
    };
    assert_eq!(in_use().await.sha256, sha(&app));
    std::fs::write(&app, "log_level: debug\n").unwrap();
    c.reload_config("app").await.unwrap();
    assert_eq!(in_use().await.sha256, sha(&app));
    // The guide's own path reloads the same way.
    std::fs::write(&app, "log_level: warn\n").unwrap();
    let _: serde_json::Value = http()
        .with_token(deploykit::redact::Secret::new(ADMIN_TOKEN))
        .post_json(
            &format!("{}/api/config/reload", s.url()),
            &serde_json::json!({"component": "app"}),
            true,
        )
        .await
        .unwrap();
    assert_eq!(in_use().await.sha256, sha(&app));
    let good = sha(&app);
    // A bad file: refused, the old one in use, the failure named.
    std::fs::write(&app, "log_level: [unclosed\n").unwrap();
    assert_eq!(
        c.reload_config("app").await.unwrap_err().status(),
        Some(422)
    );
    let f = in_use().await;
    assert_eq!(f.sha256, good);
    assert!(f.last_reload_error.is_some());
    assert_eq!(c.health().await.unwrap().status, "degraded");
    // Not read by this service: 422.
    assert_eq!(
        c.reload_config("database").await.unwrap_err().status(),
        Some(422)
    );
}

#[tokio::test]
async fn market_data_feeds_and_ticks() {
    let s = sim("blue", "1.0.0").await;
    let c = client(&s.url());
    // About time: 300 ms of ticks, so every feed has published more than once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let feeds = c.feeds().await.unwrap();
    assert_eq!(feeds.len(), 2);
    for f in &feeds {
        assert!(f.connected);
        assert_eq!(f.source, FeedSource::Staging);
        assert!(f.msgs_per_s > 0.0, "{f:?}");
        assert!(f.last_msg_age_ms < 200, "{f:?}");
    }
    let ticks = c.ticks("AAPL").await.unwrap();
    assert!(!ticks.is_empty());
    assert!(
        ticks
            .windows(2)
            .all(|w| w[1].seq > w[0].seq && w[1].published_unix_ns >= w[0].published_unix_ns)
    );
}

#[tokio::test]
async fn admin_requires_the_token_and_controls_the_service() {
    let s = sim("blue", "1.0.0").await;
    let anon = Client::new(s.url(), http());
    assert_eq!(anon.stop_orders().await.unwrap_err().status(), Some(401));
    let wrong = Client::new(
        s.url(),
        http().with_token(deploykit::redact::Secret::new("wrong-token")),
    );
    assert_eq!(wrong.inflight().await.unwrap_err().status(), Some(401));

    let c = client(&s.url());
    let st = c.stop_orders().await.unwrap();
    assert!(!st.accepting_orders);
    let e = c
        .place_order(&order("AAPL", Side::Buy, 1, OrderType::Market, None, "x"))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(503));
    assert!(!c.inflight().await.unwrap().accepting_orders);
    assert!(c.resume_orders().await.unwrap().accepting_orders);

    let st = c.set_trading(false).await.unwrap();
    assert!(!st.trading_active);
    let e = c
        .set_strategy(
            "MM_EQ_001",
            &Strategy {
                active: true,
                size_pct: 10,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(409));
    c.set_trading(true).await.unwrap();
    let st = c
        .set_strategy(
            "MM_EQ_001",
            &Strategy {
                active: true,
                size_pct: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        st.strategies["MM_EQ_001"],
        Strategy {
            active: true,
            size_pct: 10
        }
    );

    let st = c.set_feed_source(FeedSource::Production).await.unwrap();
    assert_eq!(st.feed_source, FeedSource::Production);
    assert_eq!(c.feeds().await.unwrap()[0].source, FeedSource::Production);

    let (code, body) = c.web_page().await.unwrap();
    assert_eq!(code, 200);
    assert!(body.contains("Trading Dashboard"));
    let st = c.set_maintenance(Some("deploy 3.2.2")).await.unwrap();
    assert_eq!(st.maintenance.as_deref(), Some("deploy 3.2.2"));
    let (code, body) = c.web_page().await.unwrap();
    assert_eq!(code, 503);
    assert!(body.contains("deploy 3.2.2"));
    assert_eq!(c.health().await.unwrap().status, "maintenance");
    let e = c
        .place_order(&order("AAPL", Side::Buy, 1, OrderType::Market, None, "y"))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(503));
    assert!(c.set_maintenance(None).await.unwrap().maintenance.is_none());
    assert_eq!(c.admin_state().await.unwrap().maintenance, None);
}

#[tokio::test]
async fn inflight_counts_requests_being_served() {
    let s = sim("blue", "1.0.0").await;
    let c = client(&s.url());
    c.set_faults(&Faults {
        latency_ms: Some(400),
        ..Default::default()
    })
    .await
    .unwrap();
    let c2 = c.clone();
    let slow = tokio::spawn(async move { c2.positions(ACC).await });
    crate::support::eventually_async(
        "the slow request in flight",
        Duration::from_secs(5),
        async || (c.inflight().await.ok()?.inflight_requests == 1).then_some(()),
    )
    .await;
    slow.await.unwrap().unwrap();
    assert_eq!(c.inflight().await.unwrap().inflight_requests, 0);
}
