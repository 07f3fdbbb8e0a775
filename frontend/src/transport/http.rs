//! Polling and long polling: each answer carries a batch and the cursor to ask from next.
//! The clock offset for both comes from `/api/time` exchanges over the same HTTP path.

use futures::FutureExt;
use tickscope_shared::clock::ClockSample;

use super::{Emit, FeedEvent, Stop, back_off, now_us};
use crate::api;

/// Clock exchanges at the start of a session and then one per this many requests.
const CLOCK_EVERY: u32 = 20;

/// Polls every `interval_ms` (measured from one request's start to the next's).
pub(super) async fn poll(interval_ms: u32, since: u64, stop: Stop, emit: Emit) {
    let mut cursor = since;
    let mut attempt = 0;
    let mut requests = 0u32;
    while !stop.is_set() {
        let started_us = now_us();
        if requests.is_multiple_of(CLOCK_EVERY) {
            sync_clock(&stop, &emit).await;
        }
        requests += 1;
        emit(FeedEvent::Request { at_us: now_us() });
        match api::poll(cursor, &stop.signal).await {
            Ok((batch, bytes)) => {
                attempt = 0;
                let at_us = now_us();
                cursor = batch.cursor;
                emit(FeedEvent::Connected);
                emit(FeedEvent::Answer {
                    at_us,
                    empty: batch.ticks.is_empty(),
                    timed_out: false,
                });
                emit(FeedEvent::Batch {
                    batch,
                    bytes,
                    at_us,
                });
            }
            Err(err) => {
                attempt += 1;
                if stop.is_set() || !back_off(attempt, err, &stop, &emit).await {
                    return;
                }
                continue;
            }
        }
        let elapsed_ms = ((now_us() - started_us) / 1000).max(0) as u32;
        let wait = gloo_timers::future::TimeoutFuture::new(interval_ms.saturating_sub(elapsed_ms));
        futures::select! {
            () = wait.fuse() => {}
            () = stop.wait().fuse() => return,
        }
    }
}

/// Long polls back to back: the next request leaves as soon as the last is answered.
pub(super) async fn long_poll(since: u64, stop: Stop, emit: Emit) {
    let mut cursor = since;
    let mut attempt = 0;
    let mut requests = 0u32;
    while !stop.is_set() {
        if requests.is_multiple_of(CLOCK_EVERY) {
            sync_clock(&stop, &emit).await;
        }
        requests += 1;
        emit(FeedEvent::Request { at_us: now_us() });
        match api::long_poll(cursor, &stop.signal).await {
            Ok((batch, bytes)) => {
                attempt = 0;
                let at_us = now_us();
                cursor = batch.cursor;
                emit(FeedEvent::Connected);
                let empty = batch.ticks.is_empty();
                emit(FeedEvent::Answer {
                    at_us,
                    empty,
                    timed_out: empty && !batch.gap,
                });
                emit(FeedEvent::Batch {
                    batch,
                    bytes,
                    at_us,
                });
            }
            Err(err) => {
                attempt += 1;
                if stop.is_set() || !back_off(attempt, err, &stop, &emit).await {
                    return;
                }
            }
        }
    }
}

/// A few `/api/time` exchanges; the app keeps the one with the shortest round trip.
pub(super) async fn sync_clock(stop: &Stop, emit: &Emit) {
    for _ in 0..3 {
        let sent_us = now_us();
        let Ok(time) = api::time(&stop.signal).await else {
            return;
        };
        emit(FeedEvent::Clock(ClockSample {
            sent_us,
            server_us: time.server_time,
            received_us: now_us(),
        }));
    }
}
