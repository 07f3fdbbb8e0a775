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
    let ten_thousand = vec!["A"; 10_000].join(",");
    let cases: Vec<(String, &str)> = vec![
        ("/api/poll?since=abc".into(), "since must be a whole number"),
        ("/api/poll?since=-5".into(), "since must be a whole number"),
        ("/api/poll?since=1&since=2".into(), "more than once"),
        ("/api/poll?symbols=NOPE".into(), "unknown symbol \"NOPE\""),
        ("/api/poll?symbols=".into(), "symbols is empty"),
        ("/api/poll?symbols=ACME,ACME".into(), "listed twice"),
        (format!("/api/poll?symbols={many}"), "at most 100 symbols"),
        (
            format!("/api/sse?symbols={ten_thousand}"),
            "at most 100 symbols",
        ),
        (
            "/api/poll?since=18446744073709551616".into(),
            "since must be a whole number",
        ),
        ("/api/poll?since=".into(), "since must be a whole number"),
        (
            "/api/long-poll?timeout_ms=99999999999999999999999".into(),
            "timeout_ms must be",
        ),
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
    close_after_all(server, vec![message]).await
}

/// Sends `messages` (frames, for fragments) on a fresh connection and returns the close frame.
async fn close_after_all(server: &TestServer, messages: Vec<Message>) -> (CloseCode, String) {
    let (mut ws, _) = connect_async(server.ws_url()).await.unwrap();
    for message in messages {
        // The server may close before the last is sent.
        if ws.send(message).await.is_err() {
            break;
        }
    }
    wait_for_close(&mut ws).await
}

/// A text message cut into fragments of `sizes` bytes, as frames.
fn fragments(text: &str, sizes: &[usize]) -> Vec<Message> {
    let mut rest = text.as_bytes();
    sizes
        .iter()
        .enumerate()
        .map(|(index, &size)| {
            let (part, tail) = rest.split_at(size.min(rest.len()));
            rest = tail;
            let opcode = if index == 0 {
                OpCode::Data(Data::Text)
            } else {
                OpCode::Data(Data::Continue)
            };
            Message::Frame(Frame::message(
                part.to_vec(),
                opcode,
                index + 1 == sizes.len(),
            ))
        })
        .collect()
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
    let more_cases: Vec<(Vec<Message>, CloseCode, &str)> = vec![
        (
            vec![Message::text(
                r#"{"type":"subscribe","symbols":["ACME","ACME"]}"#,
            )],
            CloseCode::Policy,
            "listed twice",
        ),
        (
            vec![Message::text(
                serde_json::json!({"type": "subscribe", "symbols": vec!["A"; 10_000]}).to_string(),
            )],
            CloseCode::Size,
            "message over 256 bytes",
        ),
        (
            fragments(&"y".repeat(400), &[200, 200]),
            CloseCode::Size,
            "message over 256 bytes",
        ),
    ];
    for (messages, code, reason) in more_cases {
        let (got_code, got_reason) = close_after_all(&server, messages).await;
        assert_eq!(got_code, code, "{reason}");
        assert!(got_reason.contains(reason), "{got_reason:?}");
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

#[tokio::test]
async fn a_fragmented_message_is_put_together() {
    let server = TestServer::start(|config| config.rate = 0.0);
    let (mut ws, _) = connect_async(server.ws_url()).await.unwrap();
    for fragment in fragments(r#"{"type":"subscribe","since":0}"#, &[10, 10, 100]) {
        ws.send(fragment).await.unwrap();
    }
    let batch = next_ws_batch(&mut ws).await;
    assert_eq!(batch.ticks.len(), 12, "the opening quotes");
}

#[tokio::test]
async fn a_flood_of_pings_closes_only_the_flooder() {
    let server = TestServer::start(|config| {
        config.rate = 200.0;
        config.max_ws_messages_per_s = 50;
    });
    let mut bystander = server.ws_subscribe(None, Some(0)).await;
    let mut chain = CursorChain::new(Some(0), true);
    accept(&mut chain, &next_ws_batch(&mut bystander).await);
    let flood = (0..500)
        .map(|i| Message::Ping(vec![i as u8].into()))
        .collect();
    let (code, reason) = close_after_all(&server, flood).await;
    assert_eq!(code, CloseCode::Policy);
    assert!(
        reason.contains("too many messages: at most 50 per second"),
        "{reason}"
    );
    let json_flood = (0..500)
        .map(|i| Message::text(format!(r#"{{"type":"ping","t":{i}}}"#)))
        .collect();
    let (code, _) = close_after_all(&server, json_flood).await;
    assert_eq!(code, CloseCode::Policy);
    for _ in 0..5 {
        accept(&mut chain, &next_ws_batch(&mut bystander).await);
    }
}

/// Reads what the server sends on `stream` until it closes the connection.
async fn read_until_closed(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection in time")
        .ok();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn half_open_connections_and_slow_request_heads_are_closed() {
    use tokio::io::AsyncWriteExt;
    let server = TestServer::start(|config| config.request_head_timeout_ms = 300);
    // Connected, then silent.
    let mut silent = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    // A request head trickling in a header at a time, never finished (slowloris).
    let mut slow = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET /api/poll HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let trickle = async {
        for i in 0..100 {
            if slow
                .write_all(format!("X-Slow-{i}: 1\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    // Meanwhile others are served.
    let (_, served) = tokio::join!(trickle, server.poll("since=0"));
    assert!(!served.ticks.is_empty());
    let answer = read_until_closed(&mut slow).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    let answer = read_until_closed(&mut silent).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer:?}"
    );
}
