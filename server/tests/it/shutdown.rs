//! Graceful shutdown: WebSocket clients get 1001, held long polls are answered, SSE ends.

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::helpers::{PATIENCE, TestServer, next_sse_batch, next_ws_batch};

#[tokio::test]
async fn shutdown_closes_every_transport_cleanly() {
    let server = TestServer::start(|config| config.rate = 0.0);
    let mut ws = server.ws_subscribe(None, Some(0)).await;
    next_ws_batch(&mut ws).await;
    let mut events = server.sse("since=0", None).await;
    next_sse_batch(&mut events).await;
    let head = server.snapshot().await.cursor;
    // The feed is paused, so this long poll is surely held.
    let held = tokio::spawn({
        let url = server.url(&format!(
            "/api/long-poll?since={head}&timeout_ms=60000&symbols=GRNT"
        ));
        async move { reqwest::get(url).await }
    });
    // The long poll is held once the server counts it.
    loop {
        let metrics = server.metrics().await;
        if metrics.contains(r#"tickscope_clients{transport="long_polling"} 1"#) {
            break;
        }
        tokio::task::yield_now().await;
    }

    let stopping = tokio::spawn(server.shut_down());

    let close = loop {
        let message = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("a close in time");
        match message {
            Some(Ok(Message::Close(frame))) => break frame.expect("a close frame with a code"),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(close.code, CloseCode::Away);

    let response = tokio::time::timeout(PATIENCE, held)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: tickscope_shared::wire::Batch = response.json().await.unwrap();
    assert!(!body.gap && body.cursor >= head);

    let ended =
        tokio::time::timeout(PATIENCE, async { while events.next().await.is_some() {} }).await;
    assert!(ended.is_ok(), "the SSE stream ended");

    stopping.await.unwrap().expect("run returned Ok");
}
