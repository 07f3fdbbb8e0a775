//! Resuming from a cursor: after a reconnect, and when switching transports, nothing is lost
//! or repeated; a cursor older than the window is flagged as a gap.

use tickscope_shared::cursor::{Accepted, CursorChain};

use crate::helpers::{TestServer, accept, next_sse_batch, next_ws_batch};

#[tokio::test]
async fn switching_transports_mid_stream_loses_nothing() {
    let server = TestServer::start(|config| config.rate = 1000.0);
    let mut chain = CursorChain::new(Some(0), true);
    for round in 0..3 {
        for _ in 0..3 {
            let cursor = chain.cursor().unwrap();
            accept(&mut chain, &server.poll(&format!("since={cursor}")).await);
        }
        for _ in 0..3 {
            let cursor = chain.cursor().unwrap();
            accept(
                &mut chain,
                &server.long_poll(&format!("since={cursor}")).await,
            );
        }
        let mut ws = server.ws_subscribe(None, chain.cursor()).await;
        for _ in 0..3 {
            accept(&mut chain, &next_ws_batch(&mut ws).await);
        }
        ws.close(None).await.expect("closing the WebSocket");
        let mut events = server
            .sse(&format!("since={}", chain.cursor().unwrap()), None)
            .await;
        for _ in 0..3 {
            accept(&mut chain, &next_sse_batch(&mut events).await);
        }
        drop(events);
        assert!(chain.ticks() > 0, "round {round} moved the chain");
    }
    assert_eq!(chain.gaps(), 0);
}

#[tokio::test]
async fn sse_resumes_from_last_event_id_over_the_url_cursor() {
    let server = TestServer::start(|config| config.rate = 1000.0);
    let mut chain = CursorChain::new(Some(0), true);
    let mut events = server.sse("since=0", None).await;
    for _ in 0..5 {
        accept(&mut chain, &next_sse_batch(&mut events).await);
    }
    drop(events);
    let resumed_at = server.wait_for_head(chain.cursor().unwrap() + 200).await;
    assert!(resumed_at > chain.cursor().unwrap() + 200);
    // The browser repeats the original URL (since=0) and adds the last id it saw.
    let mut events = server.sse("since=0", chain.cursor()).await;
    while chain.ticks() < 600 {
        accept(&mut chain, &next_sse_batch(&mut events).await);
    }
}

#[tokio::test]
async fn a_cursor_older_than_the_window_is_a_gap_with_a_snapshot() {
    let server = TestServer::start(|config| {
        config.rate = 2000.0;
        config.retention = 50;
    });
    server.wait_for_head(300).await;
    let check = |batch: &tickscope_shared::wire::Batch| {
        assert!(batch.gap, "gap flagged");
        assert_eq!(
            batch.ticks.len(),
            12,
            "the snapshot holds every symbol's latest quote"
        );
        assert!(batch.ticks.iter().all(|tick| tick.seq <= batch.cursor));
        let mut chain = CursorChain::new(Some(1), true);
        assert_eq!(
            chain.accept(batch),
            Ok(Accepted::Resynced {
                cursor: batch.cursor
            })
        );
    };
    check(&server.poll("since=1").await);
    check(&server.long_poll("since=1").await);
    let mut ws = server.ws_subscribe(None, Some(1)).await;
    let batch = next_ws_batch(&mut ws).await;
    check(&batch);
    // After the gap the stream goes on from the snapshot's cursor.
    let mut chain = CursorChain::new(Some(batch.cursor), true);
    accept(&mut chain, &next_ws_batch(&mut ws).await);
    let mut events = server.sse("since=1", None).await;
    check(&next_sse_batch(&mut events).await);
    // A cursor past the head (from another run of the server) is a gap too.
    let future = server.poll(&format!("since={}", u64::MAX)).await;
    assert!(future.gap);
}

#[tokio::test]
async fn a_cursor_from_before_a_restart_resumes_as_a_gap() {
    // The default seq base: the start time, so every run's seqs lie above the last run's.
    let first = TestServer::start(|config| {
        config.rate = 1000.0;
        config.seq_base = None;
    });
    let old_cursor = first.wait_for_head(1).await;
    let addr = first.addr;
    first.shut_down().await.expect("the first run stops");
    let second = TestServer::start_on(addr, |config| {
        config.rate = 1000.0;
        config.seq_base = None;
    });
    let batch = second.poll(&format!("since={old_cursor}")).await;
    assert!(batch.gap, "an earlier run's cursor is a gap: {batch:?}");
    assert!(batch.cursor > old_cursor, "seqs only grow across restarts");
    let mut chain = CursorChain::new(Some(old_cursor), true);
    let mut ws = second.ws_subscribe(None, Some(old_cursor)).await;
    let resynced = next_ws_batch(&mut ws).await;
    assert!(matches!(
        chain.accept(&resynced),
        Ok(Accepted::Resynced { .. })
    ));
    accept(&mut chain, &next_ws_batch(&mut ws).await);
}
