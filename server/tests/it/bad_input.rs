//! Bad input gets a clear error and hurts no other client.

use futures_util::{SinkExt, StreamExt};
use tickscope_shared::cursor::CursorChain;
use tickscope_shared::wire::ErrorBody;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};

use crate::helpers::{PATIENCE, TestServer, WsClient, accept, next_ws_batch};

#[tokio::test]
async fn bad_queries_get_400_with_a_json_error() {
    let server = TestServer::start(|config| config.rate = 100.0);
    let many = vec!["ACME"; 101].join(",");
    let cases: Vec<(String, &str)> = vec![
        ("/api/poll?since=abc".into(), "since must be a whole number"),
        ("/api/poll?since=-5".into(), "since must be a whole number"),
        ("/api/poll?since=1&since=2".into(), "more than once"),
        ("/api/poll?symbols=NOPE".into(), "unknown symbol \"NOPE\""),
        ("/api/poll?symbols=".into(), "symbols is empty"),
        ("/api/poll?symbols=ACME,ACME".into(), "listed twice"),
        (format!("/api/poll?symbols={many}"), "at most 100 symbols"),
        (
            "/api/long-poll?timeout_ms=60001".into(),
            "timeout_ms must be a whole number from 0 to 60000",
        ),
        ("/api/long-poll?timeout_ms=-1".into(), "timeout_ms must be"),
        ("/api/long-poll?since=x".into(), "since must be"),
        ("/api/sse?since=1e9".into(), "since must be"),
        ("/api/sse?symbols=acme".into(), "unknown symbol"),
        ("/api/snapshot?symbols=ZZZ".into(), "unknown symbol"),
        ("/api/history".into(), "symbol is required"),
        ("/api/history?symbol=ZZZ".into(), "unknown symbol"),
        (
            "/api/history?symbol=ACME&seconds=901".into(),
            "seconds must be a whole number from 0 to 900",
        ),
        ("/api/ws".into(), "WebSocket upgrade"),
    ];
    for (path, expected) in cases {
        let response = reqwest::get(server.url(&path)).await.unwrap();
        assert_eq!(response.status(), 400, "{path}");
        let body: ErrorBody = response
            .json()
            .await
            .unwrap_or_else(|err| panic!("{path}: {err}"));
        assert!(
            body.error.contains(expected),
            "{path}: {:?} lacks {expected:?}",
            body.error
        );
    }
    let response = reqwest::Client::new()
        .get(server.url("/api/sse"))
        .header("Last-Event-ID", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let response = reqwest::get(server.url("/api/nope")).await.unwrap();
    assert_eq!(response.status(), 404);
    let body: ErrorBody = response.json().await.unwrap();
    assert!(body.error.contains("no endpoint GET /api/nope"));
    // The server still serves.
    assert!(!server.poll("since=0").await.ticks.is_empty());
}

/// Sends `message` on a fresh connection and returns the close frame the server answers with.
async fn close_after(server: &TestServer, message: Message) -> (CloseCode, String) {
    let (mut ws, _) = connect_async(server.ws_url()).await.unwrap();
    ws.send(message).await.unwrap();
    wait_for_close(&mut ws).await
}

async fn wait_for_close(ws: &mut WsClient) -> (CloseCode, String) {
    loop {
        let message = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("a close in time");
        match message {
            Some(Ok(Message::Close(Some(frame)))) => return (frame.code, frame.reason.to_string()),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn bad_websocket_messages_close_only_that_connection() {
    let server = TestServer::start(|config| {
        config.rate = 200.0;
        config.max_ws_message_bytes = 256;
    });
    let mut bystander = server.ws_subscribe(None, Some(0)).await;
    let mut chain = CursorChain::new(Some(0), true);
    accept(&mut chain, &next_ws_batch(&mut bystander).await);

    let invalid_utf8 = Frame::message(vec![0xff, 0xfe, 0x80], OpCode::Data(Data::Text), true);
    let cases: Vec<(Message, CloseCode, &str)> = vec![
        (
            Message::binary(vec![1, 2, 3]),
            CloseCode::Unsupported,
            "binary messages are not supported",
        ),
        (
            Message::text("not json"),
            CloseCode::Policy,
            "invalid message",
        ),
        (
            Message::text(r#"{"type":"unsubscribe"}"#),
            CloseCode::Policy,
            "invalid message",
        ),
        (
            Message::text(r#"{"type":"subscribe","since":-1}"#),
            CloseCode::Policy,
            "invalid message",
        ),
        (
            Message::text(r#"{"type":"subscribe","symbols":["NOPE"]}"#),
            CloseCode::Policy,
            "unknown symbol",
        ),
        (
            Message::text(r#"{"type":"subscribe","symbols":[]}"#),
            CloseCode::Policy,
            "symbols is empty",
        ),
        (
            Message::text("x".repeat(300)),
            CloseCode::Size,
            "message over 256 bytes",
        ),
        (
            Message::Frame(invalid_utf8),
            CloseCode::Invalid,
            "not valid UTF-8",
        ),
    ];
    for (message, code, reason) in cases {
        let shown = format!("{message:?}").chars().take(60).collect::<String>();
        let (got_code, got_reason) = close_after(&server, message).await;
        assert_eq!(got_code, code, "{shown}");
        assert!(got_reason.contains(reason), "{shown}: {got_reason:?}");
    }
    let too_many: Vec<String> = (0..101).map(|i| format!("S{i}")).collect();
    let subscribe = serde_json::json!({"type": "subscribe", "symbols": too_many}).to_string();
    let server_big = TestServer::start(|config| config.rate = 0.0);
    let (code, reason) = close_after(&server_big, Message::text(subscribe)).await;
    assert_eq!(
        (code, reason.contains("at most 100 symbols")),
        (CloseCode::Policy, true)
    );

    // The bystander never noticed.
    for _ in 0..5 {
        accept(&mut chain, &next_ws_batch(&mut bystander).await);
    }
}

#[tokio::test]
async fn websocket_ping_gets_the_server_time() {
    let server = TestServer::start(|config| config.rate = 0.0);
    let (mut ws, _) = connect_async(server.ws_url()).await.unwrap();
    ws.send(Message::text(r#"{"type":"ping","t":12.5}"#))
        .await
        .unwrap();
    let reply = tokio::time::timeout(PATIENCE, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let pong: tickscope_shared::wire::ServerMessage =
        serde_json::from_str(reply.to_text().unwrap()).unwrap();
    match pong {
        tickscope_shared::wire::ServerMessage::Pong { t, server_time } => {
            assert_eq!(t, 12.5);
            assert!(server_time > 1_600_000_000_000_000, "Unix microseconds");
        }
        other => panic!("expected a pong, got {other:?}"),
    }
    // WebSocket-level pings are answered too.
    ws.send(Message::Ping(b"hi".to_vec().into())).await.unwrap();
    let reply = tokio::time::timeout(PATIENCE, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(reply, Message::Pong(b"hi".to_vec().into()));
}
