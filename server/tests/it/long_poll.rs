//! Long polling holds the request until data exists, and answers empty at its timeout.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::helpers::TestServer;

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

#[tokio::test]
async fn a_long_poll_is_held_until_a_tick_exists() {
    // A slow feed, so the request nearly always arrives before the next tick; when a tick
    // slips in between reading the head and asking, the request could not be held, so ask
    // again (at most a few times).
    let server = TestServer::start(|config| config.rate = 4.0);
    for _ in 0..5 {
        let head = server.snapshot().await.cursor;
        let asked_at_us = now_us();
        let batch = server
            .long_poll(&format!("since={head}&timeout_ms=20000"))
            .await;
        assert!(!batch.gap);
        assert!(
            !batch.ticks.is_empty(),
            "answered with data, not at the timeout"
        );
        assert!(batch.ticks.iter().all(|tick| tick.seq > head));
        if batch.ticks[0].ts >= asked_at_us {
            // The tick was published after the request was made: the request was held.
            return;
        }
    }
    panic!("every long poll was answered with a tick older than the request");
}

#[tokio::test]
async fn a_filtered_long_poll_waits_for_its_own_symbols() {
    let server = TestServer::start(|config| config.rate = 200.0);
    let head = server.snapshot().await.cursor;
    let batch = server
        .long_poll(&format!("since={head}&symbols=DLTA&timeout_ms=20000"))
        .await;
    assert!(!batch.ticks.is_empty());
    assert!(batch.ticks.iter().all(|tick| tick.symbol == "DLTA"));
    assert!(batch.cursor >= batch.ticks.last().unwrap().seq);
}

#[tokio::test]
async fn a_long_poll_answers_empty_at_its_timeout() {
    // A paused feed: only the opening quotes are ever published.
    let server = TestServer::start(|config| config.rate = 0.0);
    let head = server.snapshot().await.cursor;
    assert_eq!(head, 12, "one opening quote per symbol");
    let started = Instant::now();
    let batch = server
        .long_poll(&format!("since={head}&timeout_ms=300"))
        .await;
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "held for the timeout"
    );
    assert_eq!(
        (batch.cursor, batch.gap, batch.ticks.len()),
        (head, false, 0)
    );
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("tickscope_long_poll_timeouts_total 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_long_poll_behind_the_head_answers_at_once() {
    let server = TestServer::start(|config| config.rate = 0.0);
    let batch = server.long_poll("since=3&timeout_ms=60000").await;
    let seqs: Vec<u64> = batch.ticks.iter().map(|tick| tick.seq).collect();
    assert_eq!(seqs, (4..=12).collect::<Vec<_>>());
}
