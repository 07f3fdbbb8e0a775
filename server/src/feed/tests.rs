use super::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tickscope_shared::wire::{Batch, Tick};

fn feed(retention: u64) -> Feed {
    let universe = Universe::generate(3, &mut StdRng::seed_from_u64(1));
    Feed::new(
        Arc::new(universe),
        retention,
        0,
        Counter::default(),
        Counter::default(),
    )
}

fn draft(symbol_id: u16, price: f64) -> TickDraft {
    TickDraft {
        symbol_id,
        price,
        bid: price - 0.01,
        ask: price + 0.01,
        volume: 100,
    }
}

fn seqs(slice: &BatchSlice) -> Vec<u64> {
    slice
        .ticks
        .iter()
        .map(|json| serde_json::from_str::<Tick>(json).unwrap().seq)
        .collect()
}

#[test]
fn publish_numbers_ticks_and_batches_resume_after_the_cursor() {
    let feed = feed(100);
    feed.publish(&[draft(0, 1.0), draft(1, 2.0), draft(2, 3.0)]);
    feed.publish(&[draft(0, 1.1)]);
    assert_eq!(feed.head(), 4);
    let slice = feed.batch_since(Some(1), &SymbolFilter::All, 100);
    assert_eq!(
        (slice.cursor, slice.gap, seqs(&slice)),
        (4, false, vec![2, 3, 4])
    );
    let at_head = feed.batch_since(Some(4), &SymbolFilter::All, 100);
    assert_eq!((at_head.cursor, at_head.ticks.len()), (4, 0));
    let live = feed.batch_since(None, &SymbolFilter::All, 100);
    assert_eq!((live.cursor, live.ticks.len()), (4, 0));
}

#[test]
fn filtered_batches_account_for_every_tick() {
    let feed = feed(100);
    feed.publish(&[draft(0, 1.0), draft(1, 2.0), draft(0, 1.1), draft(2, 3.0)]);
    let only_0 = SymbolFilter::only([0], 3);
    let slice = feed.batch_since(Some(0), &only_0, 100);
    assert_eq!((slice.cursor, seqs(&slice)), (4, vec![1, 3]));
}

#[test]
fn the_batch_limit_stops_at_the_last_tick_sent() {
    let feed = feed(100);
    feed.publish(&(0..10).map(|i| draft(i % 3, 1.0)).collect::<Vec<_>>());
    let slice = feed.batch_since(Some(0), &SymbolFilter::All, 4);
    assert_eq!(
        (slice.cursor, slice.more, seqs(&slice)),
        (4, true, vec![1, 2, 3, 4])
    );
    let mut sub = Subscription::new(&feed, SymbolFilter::All, Some(0));
    let mut all = Vec::new();
    while let Some(frame) = sub.next_frame(&feed, Framing::Json, 4) {
        let batch: Batch = serde_json::from_slice(&frame.bytes).unwrap();
        all.extend(batch.ticks.iter().map(|tick| tick.seq));
    }
    assert_eq!(all, (1..=10).collect::<Vec<_>>());
    assert_eq!(sub.cursor(), 10);
}

#[test]
fn clients_of_all_symbols_at_one_cursor_share_one_frame() {
    let frames_encoded = Counter::default();
    let universe = Universe::generate(3, &mut StdRng::seed_from_u64(1));
    let feed = Feed::new(
        Arc::new(universe),
        100,
        0,
        Counter::default(),
        frames_encoded.clone(),
    );
    feed.publish(&[draft(0, 1.0), draft(1, 2.0)]);
    let mut clients: Vec<_> = (0..50)
        .map(|_| Subscription::new(&feed, SymbolFilter::All, Some(0)))
        .collect();
    let frames: Vec<_> = clients
        .iter_mut()
        .map(|client| client.next_frame(&feed, Framing::WebSocket, 100).unwrap())
        .collect();
    assert_eq!(frames_encoded.get(), 1);
    assert!(
        frames
            .iter()
            .all(|frame| frame.bytes.as_ptr() == frames[0].bytes.as_ptr())
    );
    // A new publish is a new position; a filtered client frames its own batch.
    feed.publish(&[draft(2, 3.0)]);
    let next = clients[0]
        .next_frame(&feed, Framing::WebSocket, 100)
        .unwrap();
    assert_eq!((next.cursor, next.ticks), (3, 1));
    let mut filtered = Subscription::new(&feed, SymbolFilter::only([2], 3), Some(0));
    assert_eq!(
        filtered
            .next_frame(&feed, Framing::WebSocket, 100)
            .unwrap()
            .ticks,
        1
    );
    assert_eq!(frames_encoded.get(), 3);
}

#[test]
fn a_client_too_far_behind_gets_the_latest_quotes_conflated() {
    let feed = feed(100).conflate_after(5);
    feed.publish(
        &(0..12)
            .map(|i| draft(i % 3, f64::from(i)))
            .collect::<Vec<_>>(),
    );
    let near = feed.batch_since(Some(7), &SymbolFilter::All, 100);
    assert_eq!(
        (near.gap, near.conflated, seqs(&near)),
        (false, false, vec![8, 9, 10, 11, 12])
    );
    let far = feed.batch_since(Some(6), &SymbolFilter::All, 100);
    assert_eq!(
        (far.cursor, far.gap, far.conflated, seqs(&far)),
        (12, true, true, vec![10, 11, 12])
    );
    let json = encode::frame(Framing::Json, 0, &far);
    assert!(json.contains(r#""gap":true,"conflated":true"#), "{json}");
}

fn ingested(seq: u64, symbol_id: u16) -> IngestTick {
    let draft = draft(symbol_id, 1.0);
    IngestTick {
        seq,
        ts: 1,
        json: format!(r#"{{"seq":{seq}}}"#).into(),
        draft,
    }
}

#[test]
fn ingest_keeps_seqs_skips_repeats_and_restarts_the_window_at_a_hole() {
    let feed = feed(100);
    // The first ticks of a new edge start wherever the stream is: no hole.
    let first = feed.ingest(&[ingested(500, 0), ingested(501, 1), ingested(502, 2)]);
    assert_eq!(
        first,
        Ingested {
            added: 3,
            repeats: 0,
            holes: 0
        }
    );
    assert_eq!(feed.head(), 502);
    assert!(!feed.batch_since(Some(499), &SymbolFilter::All, 100).gap);
    // A repeat (a retried publish) is skipped; a jump is a hole.
    let next = feed.ingest(&[ingested(502, 2), ingested(503, 0), ingested(510, 1)]);
    assert_eq!(
        next,
        Ingested {
            added: 2,
            repeats: 1,
            holes: 1
        }
    );
    // Cursors before the hole are a gap, never a resume across it.
    for since in [499, 503, 508] {
        assert!(feed.batch_since(Some(since), &SymbolFilter::All, 100).gap);
    }
    let after = feed.batch_since(Some(509), &SymbolFilter::All, 100);
    assert_eq!(
        (after.gap, after.cursor, after.ticks.len()),
        (false, 510, 1)
    );
}

#[test]
fn a_cursor_a_little_ahead_waits_where_the_feed_allows_it() {
    let edge = feed(100).wait_ahead(10);
    edge.ingest(&[ingested(500, 0)]);
    let ahead = edge.batch_since(Some(505), &SymbolFilter::All, 100);
    assert_eq!(
        (ahead.gap, ahead.cursor, ahead.ticks.len()),
        (false, 505, 0)
    );
    assert!(edge.batch_since(Some(511), &SymbolFilter::All, 100).gap);
    let single = feed(100);
    single.publish(&[draft(0, 1.0)]);
    assert!(single.batch_since(Some(2), &SymbolFilter::All, 100).gap);
}

#[test]
fn a_cursor_outside_the_window_is_a_gap_with_the_latest_quotes() {
    let feed = feed(5);
    feed.publish(
        &(0..12)
            .map(|i| draft(i % 3, f64::from(i)))
            .collect::<Vec<_>>(),
    );
    // Retained: 8..=12, so since=7 still resumes and since=6 does not.
    assert!(!feed.batch_since(Some(7), &SymbolFilter::All, 100).gap);
    let gap = feed.batch_since(Some(6), &SymbolFilter::All, 100);
    assert_eq!(
        (gap.cursor, gap.gap, seqs(&gap)),
        (12, true, vec![10, 11, 12])
    );
    let future = feed.batch_since(Some(13), &SymbolFilter::All, 100);
    assert!(future.gap);
}
