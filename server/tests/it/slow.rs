//! Slow consumers: a client that stops reading is conflated, then dropped as too slow, while
//! everyone else goes on untouched; nothing it did receive hides a loss. WebSocket and SSE.

use futures_util::{SinkExt, StreamExt};
use tickscope_shared::cursor::CursorChain;
use tickscope_shared::wire::ServerMessage;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::helpers::{PATIENCE, TestServer, accept, next_sse_batch, next_ws_batch};

/// A WebSocket client with a 4 KiB receive window, subscribed from cursor 0.
async fn tiny_window_subscriber(
    server: &TestServer,
) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(server.addr).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(server.ws_url(), stream)
        .await
        .unwrap();
    ws.send(Message::text(r#"{"type":"subscribe","since":0}"#))
        .await
        .unwrap();
    ws
}

fn dropped(metrics: &str) -> bool {
    metrics
        .lines()
        .any(|line| line == r#"tickscope_slow_clients_dropped_total{transport="websocket"} 1"#)
}

#[tokio::test]
async fn a_stalled_websocket_client_is_dropped_and_no_one_else_notices() {
    let server = TestServer::start(|config| {
        config.rate = 5000.0;
        config.slow_client_timeout_ms = 500;
        config.conflate_after_ticks = 500;
    });
    let mut live = server.ws_subscribe(None, Some(0)).await;
    let mut live_chain = CursorChain::new(Some(0), true);

    // A client with a tiny receive window that subscribes and then reads nothing.
    let mut stalled = tiny_window_subscriber(&server).await;

    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !dropped(&server.metrics().await) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stalled client is dropped in time"
        );
        accept(&mut live_chain, &next_ws_batch(&mut live).await);
    }
    for _ in 0..20 {
        accept(&mut live_chain, &next_ws_batch(&mut live).await);
    }

    // What the stalled client did get still adds up: every batch continues its chain or is a
    // flagged gap, and the connection ends.
    let mut chain = CursorChain::new(Some(0), true);
    let ended = tokio::time::timeout(PATIENCE, async {
        while let Some(Ok(message)) = stalled.next().await {
            match message {
                Message::Text(text) => {
                    if let ServerMessage::Batch(batch) =
                        serde_json::from_str::<ServerMessage>(&text).unwrap()
                    {
                        accept(&mut chain, &batch);
                    }
                }
                Message::Close(Some(frame)) => {
                    assert_eq!(
                        (frame.code, frame.reason.as_str()),
                        (CloseCode::Policy, "too slow")
                    );
                    return;
                }
                _ => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the stalled client's connection ends");
    assert!(chain.ticks() > 0);
}

#[tokio::test]
async fn a_stalled_sse_client_is_dropped_and_no_one_else_notices() {
    let server = TestServer::start(|config| {
        config.rate = 5000.0;
        config.slow_client_timeout_ms = 500;
        config.conflate_after_ticks = 500;
    });
    let mut live = server.sse("since=0", None).await;
    let mut live_chain = CursorChain::new(Some(0), true);

    // A client with a tiny receive window that opens a stream and then reads nothing.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(server.addr).await.unwrap();
    stalled
        .write_all(b"GET /api/sse?since=0 HTTP/1.1\r\nHost: tickscope.test\r\n\r\n")
        .await
        .unwrap();

    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !sse_dropped(&server.metrics().await) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stalled SSE client is dropped in time"
        );
        accept(&mut live_chain, &next_sse_batch(&mut live).await);
    }
    for _ in 0..20 {
        accept(&mut live_chain, &next_sse_batch(&mut live).await);
    }
    drop(stalled);
}

fn sse_dropped(metrics: &str) -> bool {
    metrics
        .lines()
        .any(|line| line == r#"tickscope_slow_clients_dropped_total{transport="sse"} 1"#)
}

/// A client whose socket fills while it pauses, shorter than the slow-client timeout, gets
/// every batch once it reads again: the frame its full socket took only part of is finished,
/// and nothing is lost or repeated.
#[tokio::test]
async fn a_websocket_client_that_pauses_loses_nothing_when_its_socket_fills() {
    let server = pausing_server();
    let mut paused = tiny_window_subscriber(&server).await;

    let held_at = held_once_full(&server, "websocket").await;

    let mut chain = CursorChain::new(Some(0), true);
    while chain.cursor().is_none_or(|cursor| cursor < held_at + 1000) {
        let message = tokio::time::timeout(PATIENCE, paused.next())
            .await
            .expect("a message in time")
            .expect("the connection is open")
            .expect("a whole, valid frame");
        if let Message::Text(text) = message
            && let ServerMessage::Batch(batch) = serde_json::from_str(&text).unwrap()
        {
            accept(&mut chain, &batch);
        }
    }
    assert_eq!(chain.gaps(), 0, "a pause within the timeout is not a gap");
    assert!(!dropped(&server.metrics().await));
}

/// A server whose clients may pause for long: fast ticks, no conflation, 30 s before a
/// client is too slow.
fn pausing_server() -> TestServer {
    TestServer::start(|config| {
        config.rate = 5000.0;
        config.slow_client_timeout_ms = 30_000;
        config.conflate_after_ticks = 1_000_000;
    })
}

/// Waits, reading nothing, until the server has found a `transport` client's socket full
/// (`tickscope_backpressured_writes_total`); the feed's head then.
async fn held_once_full(server: &TestServer, transport: &str) -> u64 {
    let series = format!("tickscope_backpressured_writes_total{{transport=\"{transport}\"}} ");
    let backpressured = |metrics: String| {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(series.as_str()))
            .map_or(0, |count| count.parse::<u64>().unwrap())
    };
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while backpressured(server.metrics().await) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the paused client's socket fills"
        );
    }
    server.snapshot().await.cursor
}

/// SSE over HTTP/1.1 goes out as WebSocket does, from the worker's fan-out straight to the
/// socket: a client whose 4 KiB window fills while it pauses gets every event once it reads
/// again, the one its socket took only part of finished, nothing lost or repeated. The
/// stream is the connection's to its end (no chunks; the head says it closes).
#[tokio::test]
async fn an_sse_client_that_pauses_loses_nothing_when_its_socket_fills() {
    use eventsource_stream::Eventsource;
    use tokio::io::AsyncBufReadExt;

    let server = pausing_server();
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET /api/sse?since=0 HTTP/1.1\r\nHost: tickscope\r\n\r\n")
        .await
        .unwrap();
    let mut reader = tokio::io::BufReader::new(stream);
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).await.unwrap();
        if line == "\r\n" {
            break;
        }
        head.push(line.trim_end().to_ascii_lowercase());
    }
    assert_eq!(head[0], "http/1.1 200 ok", "{head:?}");
    assert!(head.contains(&"connection: close".to_owned()), "{head:?}");
    assert!(
        !head
            .iter()
            .any(|line| line.starts_with("transfer-encoding")),
        "{head:?}"
    );

    let held_at = held_once_full(&server, "sse").await;

    let mut events = Box::pin(
        tokio_util::io::ReaderStream::new(reader)
            .eventsource()
            .map(|event| event.expect("a whole event")),
    );
    let mut chain = CursorChain::new(Some(0), true);
    while chain.cursor().is_none_or(|cursor| cursor < held_at + 1000) {
        accept(&mut chain, &next_sse_batch(&mut events).await);
    }
    assert_eq!(chain.gaps(), 0, "a pause within the timeout is not a gap");
    assert!(!sse_dropped(&server.metrics().await));
}
