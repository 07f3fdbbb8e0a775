//! Polling and long polling: each answer carries a batch and the cursor to ask from next.
//! The clock offset for both comes from `/api/time` exchanges over the same HTTP path.

use std::sync::atomic::{AtomicU32, Ordering};

use futures::FutureExt;
use tickscope_shared::clock::ClockSample;
use wasm_bindgen::JsCast;

use super::{Emit, FeedEvent, Stop, TransportKind, back_off, now_us};
use crate::api;

/// Clock exchanges at the start of a session and then one per this many requests.
const CLOCK_EVERY: u32 = 20;

/// Polls every `interval_ms` (measured from one request's start to the next's).
pub(super) async fn poll(
    kind: TransportKind,
    interval_ms: u32,
    since: u64,
    stop: Stop,
    emit: Emit,
) {
    let mut cursor = since;
    let mut attempt = 0;
    let mut requests = 0u32;
    while !stop.is_set() {
        let started_us = now_us();
        if !ask(
            kind,
            Ask::Poll,
            &mut cursor,
            &mut attempt,
            &mut requests,
            &stop,
            &emit,
        )
        .await
        {
            return;
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
pub(super) async fn long_poll(kind: TransportKind, since: u64, stop: Stop, emit: Emit) {
    let mut cursor = since;
    let mut attempt = 0;
    let mut requests = 0u32;
    while !stop.is_set() {
        if !ask(
            kind,
            Ask::LongPoll,
            &mut cursor,
            &mut attempt,
            &mut requests,
            &stop,
            &emit,
        )
        .await
        {
            return;
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Ask {
    Poll,
    LongPoll,
}

/// One request from `cursor`, reported to the app, with the clock measured again every
/// [`CLOCK_EVERY`] requests; a failure waits out the backoff. `false` once stopped.
async fn ask(
    kind: TransportKind,
    ask: Ask,
    cursor: &mut u64,
    attempt: &mut u32,
    requests: &mut u32,
    stop: &Stop,
    emit: &Emit,
) -> bool {
    if requests.is_multiple_of(CLOCK_EVERY) {
        sync_clock(kind, stop, emit).await;
    }
    *requests += 1;
    emit(FeedEvent::Request { at_us: now_us() });
    let answer = match ask {
        Ask::Poll => api::poll(&stop.origin, *cursor, &stop.meter, &stop.signal).await,
        Ask::LongPoll => api::long_poll(&stop.origin, *cursor, &stop.meter, &stop.signal).await,
    };
    match answer {
        Ok(api::Answer {
            value: batch,
            bytes,
            wire,
            edge: _,
        }) => {
            *attempt = 0;
            let at_us = now_us();
            *cursor = batch.cursor;
            emit(FeedEvent::Connected);
            let empty = batch.ticks.is_empty();
            emit(FeedEvent::Answer {
                at_us,
                empty,
                // Only a long poll has a timeout; an empty answer to it is one.
                timed_out: ask == Ask::LongPoll && empty && !batch.gap,
            });
            emit(FeedEvent::Batch {
                batch,
                bytes,
                at_us,
            });
            if let Some(report) = wire {
                emit(FeedEvent::Wire(report));
            }
            true
        }
        Err(err) => {
            *attempt += 1;
            !stop.is_set() && back_off(*attempt, err, stop, emit).await
        }
    }
}

/// A few `/api/time` exchanges, charged to `kind`; the app keeps the one with the shortest
/// round trip.
pub(super) async fn sync_clock(kind: TransportKind, stop: &Stop, emit: &Emit) {
    static EXCHANGES: AtomicU32 = AtomicU32::new(0);
    for _ in 0..3 {
        let url = api::time_url(
            &stop.origin,
            kind.wire_name(),
            &stop.meter,
            EXCHANGES.fetch_add(1, Ordering::Relaxed),
        );
        let sent_us = now_us();
        let Ok(answer) = api::time(&url, &stop.signal).await else {
            return;
        };
        let received_us = now_us();
        let timing = on_the_wire(&url).await;
        if let Some((_, _, protocol)) = &timing
            && !protocol.is_empty()
        {
            emit(FeedEvent::Protocol(protocol.clone()));
        }
        let (sent_us, received_us) = timing
            .map_or((sent_us, received_us), |(sent, received, _)| {
                (sent, received)
            });
        emit(FeedEvent::Clock(ClockSample {
            sent_us,
            server_us: answer.value.server_time,
            received_us,
        }));
        if let Some(report) = answer.wire {
            emit(FeedEvent::Wire(report));
        }
    }
}

/// When the request to `url` went out and its answer's first byte came back, as the
/// browser's Resource Timing recorded them (client clock, Unix µs), and the protocol it went
/// over. That is the round trip on the wire, without the time the page took to start the fetch
/// and to run the code that reads the answer: in headless Chromium those made a loopback
/// exchange about 4 ms long, and its half the offset's error bound. `None` when the browser
/// recorded no entry.
///
/// Chromium may add the entry a task after the answer's body resolved (it did over HTTP/2),
/// so a missing one is looked for again after a few turns of the event loop.
async fn on_the_wire(url: &str) -> Option<(i64, i64, String)> {
    for _ in 0..4 {
        if let Some(timing) = resource_timing(url) {
            return Some(timing);
        }
        gloo_timers::future::TimeoutFuture::new(0).await;
    }
    None
}

/// `url` is a path on the page's origin, or a whole URL on another (whose answers carry
/// `Timing-Allow-Origin`, without which the browser records no times for them).
fn resource_timing(url: &str) -> Option<(i64, i64, String)> {
    let window = web_sys::window()?;
    let performance = window.performance()?;
    let name = if url.starts_with('/') {
        format!("{}{url}", window.location().origin().ok()?)
    } else {
        url.to_owned()
    };
    // gloo-net ends the URL it fetches with `&`, and the entry is named by that URL.
    let entries = performance.get_entries_by_type("resource");
    let entry = (0..entries.length())
        .rev()
        .filter_map(|i| {
            entries
                .get(i)
                .dyn_into::<web_sys::PerformanceResourceTiming>()
                .ok()
        })
        .find(|entry| entry.name().trim_end_matches('&') == name)?;
    // The browser keeps 250 entries and then records no more; the page reads none but these.
    if entries.length() >= 200 {
        performance.clear_resource_timings();
    }
    let (start, first_byte) = (entry.request_start(), entry.response_start());
    let unix_us = |at: f64| ((performance.time_origin() + at) * 1000.0) as i64;
    (start > 0.0 && first_byte >= start).then(|| {
        (
            unix_us(start),
            unix_us(first_byte),
            entry.next_hop_protocol(),
        )
    })
}
