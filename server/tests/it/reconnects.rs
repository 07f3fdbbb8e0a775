//! A client that drops its connection at random moments, 1,000 times on each transport,
//! resumes from its cursor every time and ends with one continuous chain: nothing lost,
//! nothing repeated, no gap.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tickscope_shared::cursor::CursorChain;

use crate::helpers::{TestServer, accept, next_sse_batch, next_ws_batch};

const RECONNECTS: usize = 1000;

fn server() -> TestServer {
    TestServer::start(|config| config.rate = 2000.0)
}

/// Checks the chain covered ticks and flagged no gap.
fn assert_continuous(chain: &CursorChain, transport: &str) {
    assert_eq!(chain.gaps(), 0, "{transport}: no gap");
    assert!(
        chain.ticks() > RECONNECTS as u64,
        "{transport}: ticks flowed ({})",
        chain.ticks()
    );
}

#[tokio::test]
async fn websocket_reconnects_lose_nothing() {
    let server = server();
    let mut rng = StdRng::seed_from_u64(1);
    let mut chain = CursorChain::new(Some(0), true);
    for _ in 0..RECONNECTS {
        let mut ws = server.ws_subscribe(None, chain.cursor()).await;
        // Dropped at once, or after up to three batches.
        for _ in 0..rng.random_range(0..4) {
            accept(&mut chain, &next_ws_batch(&mut ws).await);
        }
        drop(ws);
    }
    assert_continuous(&chain, "websocket");
}

#[tokio::test]
async fn sse_reconnects_lose_nothing() {
    let server = server();
    let mut rng = StdRng::seed_from_u64(2);
    let mut chain = CursorChain::new(Some(0), true);
    for _ in 0..RECONNECTS {
        // As a browser reconnects: the cursor in Last-Event-ID.
        let mut events = server.sse("", chain.cursor()).await;
        for _ in 0..rng.random_range(0..4) {
            accept(&mut chain, &next_sse_batch(&mut events).await);
        }
        drop(events);
    }
    assert_continuous(&chain, "sse");
}

#[tokio::test]
async fn long_polls_cut_off_at_random_lose_nothing() {
    let server = server();
    let mut rng = StdRng::seed_from_u64(3);
    let mut chain = CursorChain::new(Some(0), true);
    for _ in 0..RECONNECTS {
        let query = format!("since={}", chain.cursor().unwrap());
        // A fresh connection each time, given up after a random moment of at most 2 ms.
        let cut = Duration::from_micros(rng.random_range(0..2000));
        if let Ok(batch) = tokio::time::timeout(cut, server.long_poll(&query)).await {
            accept(&mut chain, &batch);
        }
    }
    // The last answer proves the chain reaches the head.
    let query = format!("since={}", chain.cursor().unwrap());
    accept(&mut chain, &server.long_poll(&query).await);
    assert_continuous(&chain, "long polling");
}

#[tokio::test]
async fn polls_from_fresh_connections_lose_nothing() {
    let server = server();
    let mut chain = CursorChain::new(Some(0), true);
    for _ in 0..RECONNECTS {
        let query = format!("since={}", chain.cursor().unwrap());
        accept(&mut chain, &server.poll(&query).await);
    }
    assert_continuous(&chain, "polling");
}

/// A client that opens a stream again says why (`reconnect=silent|error`); `/metrics` counts
/// it per transport and reason, and an unknown reason is refused before any stream opens.
#[tokio::test]
async fn reconnect_reasons_are_counted_per_transport() {
    let server = TestServer::start(|_| {});
    let ws_url = |query: &str| format!("{}?{query}", server.ws_url());
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url("reconnect=silent"))
        .await
        .expect("WebSocket handshake");
    let mut events = server.sse("since=0&reconnect=silent", None).await;
    let mut again = server.sse("since=0&reconnect=error", None).await;
    next_sse_batch(&mut events).await;
    next_sse_batch(&mut again).await;
    let metrics = server.metrics().await;
    for series in [
        r#"tickscope_client_reconnects_total{transport="websocket",reason="silent"} 1"#,
        r#"tickscope_client_reconnects_total{transport="sse",reason="silent"} 1"#,
        r#"tickscope_client_reconnects_total{transport="sse",reason="error"} 1"#,
    ] {
        assert!(metrics.contains(series), "{series} in\n{metrics}");
    }
    let refused = reqwest::get(server.url("/api/sse?reconnect=bored"))
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("silent"), "{body}");
    let refused = tokio_tungstenite::connect_async(ws_url("reconnect=bored")).await;
    assert!(
        matches!(&refused, Err(tokio_tungstenite::tungstenite::Error::Http(response)) if response.status() == 400),
        "{refused:?}"
    );
    ws.close(None).await.unwrap();
}
