//! HTTP streaming (`/api/stream`): newline-delimited JSON in one long response, read
//! as a plain HTTP client reads it. The chain holds, a new stream resumes from a cursor, an old
//! cursor gets a gap, bad input gets a 400 with `{"error"}`, a page of another site gets a 403,
//! heartbeats and wire reports come as lines, and shutdown ends the stream.

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tickscope_shared::cursor::CursorChain;
use tickscope_shared::wire::{Batch, ServerMessage};

use crate::helpers::{PATIENCE, TestServer, accept};

/// A response body's chunks.
type Chunks = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// The lines of a streamed response, as they come.
struct Lines {
    chunks: Chunks,
    pending: Vec<u8>,
}

impl Lines {
    /// The next message, or `None` when the response ended.
    async fn next(&mut self) -> Option<ServerMessage> {
        loop {
            if let Some(end) = self.pending.iter().position(|&byte| byte == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                return Some(
                    serde_json::from_slice(&line[..end])
                        .unwrap_or_else(|err| panic!("a message per line: {err}: {line:?}")),
                );
            }
            let chunk = tokio::time::timeout(PATIENCE, self.chunks.next())
                .await
                .expect("a chunk of the stream in time")?
                .expect("the stream reads");
            self.pending.extend_from_slice(&chunk);
        }
    }

    async fn next_batch(&mut self) -> Batch {
        loop {
            match self.next().await.expect("the stream is open") {
                ServerMessage::Batch(batch) => return batch,
                ServerMessage::Heartbeat { .. } | ServerMessage::Wire(_) => continue,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}

async fn open(server: &TestServer, query: &str) -> Lines {
    let response = reqwest::get(server.url(&format!("/api/stream?{query}")))
        .await
        .expect("GET /api/stream");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/x-ndjson",
        "one JSON document per line"
    );
    Lines {
        chunks: Box::pin(response.bytes_stream()),
        pending: Vec::new(),
    }
}

#[tokio::test]
async fn a_stream_delivers_a_continuous_chain_and_resumes_from_its_cursor() {
    let server = TestServer::start(|config| config.rate = 2000.0);
    let mut lines = open(&server, "since=0").await;
    // The first line is a heartbeat: the page knows the stream is up before any tick.
    assert!(matches!(
        lines.next().await,
        Some(ServerMessage::Heartbeat { server_time }) if server_time > 0
    ));
    let mut chain = CursorChain::new(Some(0), true);
    while chain.ticks() < 500 {
        accept(&mut chain, &lines.next_batch().await);
    }
    drop(lines);
    // A new stream from the last cursor goes on with nothing lost or repeated.
    let cursor = chain.cursor().unwrap();
    let mut lines = open(&server, &format!("since={cursor}")).await;
    let before = chain.ticks();
    while chain.ticks() < before + 300 {
        accept(&mut chain, &lines.next_batch().await);
    }
    assert_eq!(chain.gaps(), 0);
    let metrics = server.metrics().await;
    assert!(
        metrics.contains(r#"tickscope_requests_total{transport="stream"} 2"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_filtered_stream_carries_only_its_symbols_and_an_old_cursor_gets_a_gap() {
    let server = TestServer::start(|config| {
        config.rate = 2000.0;
        config.retention = 1000;
    });
    let head = server.wait_for_head(3000).await;
    let mut lines = open(&server, "since=1&symbols=ACME,IONQ").await;
    let first = lines.next_batch().await;
    assert!(first.gap, "since=1 is older than the retained window");
    assert!(first.cursor >= head);
    let mut chain = CursorChain::new(Some(first.cursor), false);
    while chain.ticks() < 100 {
        let batch = lines.next_batch().await;
        assert!(
            batch
                .ticks
                .iter()
                .all(|t| t.symbol == "ACME" || t.symbol == "IONQ"),
            "{batch:?}"
        );
        accept(&mut chain, &batch);
    }
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_other_sites_pages_are_refused() {
    let server = TestServer::start(|_| {});
    for query in ["since=abc", "symbols=NOPE", "since=-1", "reconnect=maybe"] {
        let response = reqwest::get(server.url(&format!("/api/stream?{query}")))
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{query}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(body["error"].is_string(), "{query}: {body}");
    }
    let response = reqwest::Client::new()
        .get(server.url("/api/stream"))
        .header("origin", "https://elsewhere.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
}

#[tokio::test]
async fn a_quiet_feed_sends_heartbeats_and_a_metered_stream_its_wire_reports() {
    let server = TestServer::start(|config| {
        config.rate = 0.0;
        config.sse_heartbeat_ms = 200;
    });
    let mut lines = open(&server, "meter=5eed").await;
    let (mut heartbeats, mut reports) = (0, 0);
    while heartbeats < 3 || reports < 1 {
        match lines.next().await.expect("the stream is open") {
            ServerMessage::Heartbeat { .. } => heartbeats += 1,
            ServerMessage::Wire(report) => {
                assert!(report.down > 0 && report.requests == 1, "{report:?}");
                reports += 1;
            }
            // The opening quotes, published as the server starts, may come first.
            ServerMessage::Batch(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let metrics = server.metrics().await;
    assert!(
        metrics.contains(r#"tickscope_wire_bytes_total{transport="stream",direction="down"}"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn shutdown_ends_the_stream() {
    let server = TestServer::start(|config| config.rate = 0.0);
    let mut lines = open(&server, "since=0").await;
    lines.next_batch().await;
    let stopping = tokio::spawn(server.shut_down());
    let ended = tokio::time::timeout(PATIENCE, async { while lines.next().await.is_some() {} });
    assert!(ended.await.is_ok(), "the stream ended");
    let stopped = tokio::time::timeout(PATIENCE + Duration::from_secs(5), stopping).await;
    stopped
        .expect("the server stopped in time")
        .unwrap()
        .expect("run returned Ok");
}
