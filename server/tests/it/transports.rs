//! Each transport delivers the feed with cursors that chain: nothing lost, nothing repeated.

use std::collections::HashSet;

use tickscope_shared::cursor::CursorChain;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{TestServer, accept, metric, next_sse_batch, next_ws_batch};

/// Enough ticks to cross many batches at the test rate.
const WANTED: u64 = 400;

fn fast_feed() -> TestServer {
    TestServer::start(|config| config.rate = 2000.0)
}

#[tokio::test]
async fn polling_delivers_a_continuous_chain() {
    let server = fast_feed();
    let mut chain = CursorChain::new(Some(0), true);
    let mut polls = 0;
    while chain.ticks() < WANTED {
        let batch = server
            .poll(&format!("since={}", chain.cursor().unwrap()))
            .await;
        accept(&mut chain, &batch);
        polls += 1;
    }
    assert!(polls > 1, "the chain crossed several polls");
    assert_eq!(chain.gaps(), 0);
}

#[tokio::test]
async fn long_polling_delivers_a_continuous_chain() {
    let server = fast_feed();
    let mut chain = CursorChain::new(Some(0), true);
    while chain.ticks() < WANTED {
        let query = format!("since={}&timeout_ms=10000", chain.cursor().unwrap());
        let batch = server.long_poll(&query).await;
        assert!(
            !batch.ticks.is_empty(),
            "a long poll answers with data, not empty, while ticks flow"
        );
        accept(&mut chain, &batch);
    }
}

#[tokio::test]
async fn websocket_delivers_a_continuous_chain() {
    let server = fast_feed();
    let mut ws = server.ws_subscribe(None, Some(0)).await;
    let mut chain = CursorChain::new(Some(0), true);
    while chain.ticks() < WANTED {
        accept(&mut chain, &next_ws_batch(&mut ws).await);
    }
}

#[tokio::test]
async fn sse_delivers_a_continuous_chain() {
    let server = fast_feed();
    let mut events = server.sse("since=0", None).await;
    let mut chain = CursorChain::new(Some(0), true);
    while chain.ticks() < WANTED {
        accept(&mut chain, &next_sse_batch(&mut events).await);
    }
}

#[tokio::test]
async fn live_only_subscriptions_start_at_the_head() {
    let server = fast_feed();
    let head = server.wait_for_head(50).await;
    let mut ws = server.ws_subscribe(None, None).await;
    let mut chain = CursorChain::new(None, true);
    let batch = next_ws_batch(&mut ws).await;
    accept(&mut chain, &batch);
    assert!(
        batch.ticks[0].seq > head,
        "no old ticks for a live-only subscription"
    );
    accept(&mut chain, &next_ws_batch(&mut ws).await);
}

#[tokio::test]
async fn symbol_filters_deliver_only_those_symbols_in_order() {
    let server = fast_feed();
    let wanted: HashSet<&str> = ["ACME", "IONQ"].into();
    let mut ws = server.ws_subscribe(Some(&["ACME", "IONQ"]), Some(0)).await;
    let mut events = server.sse("since=0&symbols=ACME,IONQ", None).await;
    let mut ws_chain = CursorChain::new(Some(0), false);
    let mut sse_chain = CursorChain::new(Some(0), false);
    let mut poll_chain = CursorChain::new(Some(0), false);
    while ws_chain.ticks() < 100 || sse_chain.ticks() < 100 || poll_chain.ticks() < 100 {
        let polled = server
            .long_poll(&format!(
                "since={}&symbols=ACME,IONQ",
                poll_chain.cursor().unwrap()
            ))
            .await;
        for (chain, batch) in [
            (&mut ws_chain, next_ws_batch(&mut ws).await),
            (&mut sse_chain, next_sse_batch(&mut events).await),
            (&mut poll_chain, polled),
        ] {
            assert!(
                batch
                    .ticks
                    .iter()
                    .all(|tick| wanted.contains(tick.symbol.as_str()))
            );
            accept(chain, &batch);
        }
    }
}

#[tokio::test]
async fn websocket_clients_at_one_cursor_share_one_frame_per_publish() {
    let server = TestServer::start(|config| config.rate = 100.0);
    let start = server.wait_for_head(20).await;
    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.push((
            server.ws_subscribe(None, Some(start)).await,
            CursorChain::new(Some(start), true),
        ));
    }
    let until = start + 60;
    for (ws, chain) in &mut clients {
        while chain.cursor() < Some(until) {
            accept(chain, &next_ws_batch(ws).await);
        }
    }
    let text = server.metrics().await;
    let sent = metric(
        &text,
        r#"tickscope_messages_sent_total{transport="websocket"}"#,
    );
    let encoded = metric(&text, "tickscope_frames_encoded_total");
    assert!(sent >= 20, "every client got at least one message: {sent}");
    // Each client catches up from `start` on its own and then follows the head with the others;
    // per position, one frame serves all twenty.
    assert!(
        encoded * 4 <= sent,
        "{encoded} frames encoded for {sent} messages sent"
    );
}

/// A second `subscribe` replaces the first at once, even on a feed that publishes nothing
/// more: the backlog from its older cursor comes without waiting for a publish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_resubscribe_from_an_older_cursor_is_served_at_once() {
    let server = TestServer::start(|config| {
        config.rate = 0.0;
        // No ping within the test's patience, so nothing but the resubscribe can wake the
        // connection's body.
        config.ws_heartbeat_ms = 60_000;
        config.ws_client_timeout_ms = 120_000;
    });
    let head = server.snapshot().await.cursor;
    assert!(head > 0, "the opening quotes are published");
    // Live only: nothing comes, since nothing is published.
    let mut ws = server.ws_subscribe(None, None).await;
    let again = serde_json::json!({"type": "subscribe", "since": 0}).to_string();
    ws.send(Message::text(again)).await.expect("resubscribing");
    let batch = next_ws_batch(&mut ws).await;
    assert_eq!(batch.cursor, head, "everything from 0 to the head");
    assert_eq!(batch.ticks.len() as u64, head);
    server.shut_down().await.expect("clean shutdown");
}

/// A WebSocket the client closes is let go at once, even while the feed is paused and no
/// publish comes to clear it: the server ends the TCP connection after the close handshake.
#[tokio::test]
async fn a_closed_websocket_is_let_go_while_the_feed_is_paused() {
    let server = TestServer::start(|config| config.rate = 0.0);
    for _ in 0..3 {
        let mut ws = server.ws_subscribe(None, None).await;
        ws.send(Message::Close(None)).await.unwrap();
        let ended = tokio::time::timeout(crate::helpers::PATIENCE, async {
            // The server's close, then the end of the connection.
            while let Some(Ok(_)) = ws.next().await {}
        })
        .await;
        assert!(
            ended.is_ok(),
            "the server ends a closed WebSocket's connection"
        );
    }
    assert_eq!(
        metric(
            &server.metrics().await,
            r#"tickscope_clients{transport="websocket"}"#
        ),
        0
    );
}
