//! Reference data, clock, health, metrics, the served app, and dead-peer detection.

use std::time::{SystemTime, UNIX_EPOCH};

use tickscope_shared::wire::{History, ServerTime, SymbolList};
use tokio::io::AsyncReadExt;

use crate::helpers::{PATIENCE, TestServer};

#[tokio::test]
async fn symbols_snapshot_history_and_time() {
    let server = TestServer::start(|config| config.rate = 500.0);
    let symbols: SymbolList = server.get_json("/api/symbols").await;
    assert_eq!(symbols.symbols.len(), 12);
    assert_eq!(symbols.symbols[0].symbol, "ACME");
    assert!(
        symbols
            .symbols
            .iter()
            .all(|s| !s.name.is_empty() && !s.sector.is_empty() && s.open > 0.0)
    );

    server.wait_for_head(300).await;
    let snapshot = server.snapshot().await;
    assert_eq!(snapshot.quotes.len(), 12);
    assert!(
        snapshot
            .quotes
            .iter()
            .all(|q| q.seq <= snapshot.cursor && q.bid < q.ask)
    );
    let filtered: tickscope_shared::wire::Snapshot =
        server.get_json("/api/snapshot?symbols=BLU,CRST").await;
    let names: Vec<&str> = filtered.quotes.iter().map(|q| q.symbol.as_str()).collect();
    assert_eq!(names, ["BLU", "CRST"]);

    let history: History = server.get_json("/api/history?symbol=CRST&seconds=60").await;
    assert_eq!((history.symbol.as_str(), history.seconds), ("CRST", 60));
    assert!(!history.candles.is_empty());
    for candle in &history.candles {
        assert!(candle.low <= candle.open && candle.open <= candle.high);
        assert!(candle.low <= candle.close && candle.close <= candle.high);
        assert!(candle.ticks > 0 && candle.volume > 0);
    }
    assert!(history.candles.windows(2).all(|pair| pair[0].t < pair[1].t));

    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    let time: ServerTime = server.get_json("/api/time").await;
    let after = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    assert!(
        before <= time.server_time && time.server_time <= after,
        "same machine, same clock"
    );
}

#[tokio::test]
async fn health_and_metrics_count_what_happened() {
    let server = TestServer::start(|config| config.rate = 0.0);
    let health: serde_json::Value = server.get_json("/healthz").await;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["cursor"], 12);
    let head = server.snapshot().await.cursor;
    for _ in 0..3 {
        assert!(server.poll(&format!("since={head}")).await.ticks.is_empty());
    }
    server.poll("since=0").await;
    let metrics = server.metrics().await;
    for line in [
        "tickscope_ticks_published_total 12",
        r#"tickscope_requests_total{transport="polling"} 4"#,
        "tickscope_empty_polls_total 3",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
    let bytes_line = metrics
        .lines()
        .find(|l| l.starts_with(r#"tickscope_bytes_sent_total{transport="polling"}"#))
        .unwrap();
    let bytes: u64 = bytes_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(bytes > 1000, "four poll bodies, one with 12 ticks: {bytes}");
}

#[tokio::test]
async fn the_built_app_is_served_at_the_root() {
    let dist = std::env::temp_dir().join(format!("tickscope-dist-{}", std::process::id()));
    std::fs::create_dir_all(&dist).unwrap();
    std::fs::write(dist.join("index.html"), "<title>tickscope app</title>").unwrap();
    let server = TestServer::start(|config| {
        config.rate = 0.0;
        config.static_dir = dist.clone();
    });
    let page = reqwest::get(server.url("/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("tickscope app"));
    std::fs::remove_dir_all(&dist).unwrap();

    let unbuilt = TestServer::start(|config| config.rate = 0.0);
    let page = reqwest::get(unbuilt.url("/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("has not been built"));
}

#[tokio::test]
async fn a_silent_websocket_peer_is_dropped() {
    let server = TestServer::start(|config| {
        config.rate = 0.0;
        config.ws_heartbeat_ms = 50;
        config.ws_client_timeout_ms = 300;
    });
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url())
        .await
        .unwrap();
    // Read the socket underneath the WebSocket layer, so the client never answers a ping:
    // a dead peer as the server sees it. The server must close the connection.
    let mut raw = Vec::new();
    let read = tokio::time::timeout(PATIENCE, ws.get_mut().read_to_end(&mut raw)).await;
    assert!(
        read.is_ok(),
        "the server closed the connection of a silent peer"
    );
    assert!(raw.len() >= 2, "it pinged before giving up");
}

#[tokio::test]
async fn an_idle_sse_stream_gets_heartbeat_events() {
    use futures_util::StreamExt;

    let server = TestServer::start(|config| {
        config.rate = 0.0;
        config.sse_heartbeat_ms = 50;
    });
    let response = reqwest::get(server.url("/api/sse")).await.unwrap();
    let mut body = response.bytes_stream();
    let mut seen = String::new();
    let found = tokio::time::timeout(PATIENCE, async {
        while let Some(Ok(chunk)) = body.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen
                .matches("event: heartbeat\ndata: {\"server_time\":")
                .count()
                >= 2
            {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        found,
        Ok(true),
        "two heartbeats on an idle stream; saw {seen:?}"
    );
    assert!(
        seen.starts_with("retry: "),
        "the stream tells browsers how soon to reconnect"
    );
}
