//! The synthetic market: every symbol ticks once per interval with a small random walk, each
//! tick stamped with its publish time; crossed resting orders fill. A `stale_feed` fault stops
//! publishing, so feeds go stale exactly as a dead upstream would look.

use crate::state::{AppState, FEEDS, lock, now_unix_ns};
use rand::Rng;
use std::sync::Arc;
use std::time::{Duration, Instant};

const HISTORY: usize = 100;

pub async fn run(state: Arc<AppState>) {
    let mut interval = tokio::time::interval(state.cfg.tick_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last = Instant::now();
    loop {
        interval.tick().await;
        let dt = last.elapsed().as_secs_f64();
        last = Instant::now();
        // Strategies trade on market data: a stale feed stops them too.
        if state.faults().stale_feed == Some(true) {
            continue;
        }
        state.accrue_strategies(dt);
        let marks = {
            let mut rng = rand::rng();
            let mut market = lock(&state.market);
            let now = Instant::now();
            let ns = now_unix_ns();
            for (feed, symbols) in FEEDS {
                for (sym, _) in *symbols {
                    if let Some(q) = market.quotes.get_mut(*sym) {
                        let step: f64 = rng.random_range(-0.0005..0.0005);
                        q.price = (q.price * (1.0 + step) * 1e6).round() / 1e6;
                        q.seq += 1;
                        q.published_unix_ns = ns;
                        q.history.push_back((q.price, q.seq, ns));
                        if q.history.len() > HISTORY {
                            q.history.pop_front();
                        }
                    }
                }
                if let Some(f) = market.feeds.get_mut(*feed) {
                    f.last_msg = now;
                    for _ in 0..symbols.len() {
                        f.window.push_back(now);
                    }
                    while f
                        .window
                        .front()
                        .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(1))
                    {
                        f.window.pop_front();
                    }
                }
                state
                    .metrics
                    .ticks
                    .get_or_create(&crate::metrics::FeedLabel {
                        feed: feed.to_string(),
                    })
                    .inc_by(symbols.len() as u64);
            }
            market.marks()
        };
        state.match_resting(&marks);
    }
}
