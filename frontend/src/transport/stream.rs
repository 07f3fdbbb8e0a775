//! HTTP streaming through `fetch`: one long response whose body the page reads chunk by chunk
//! from its `ReadableStream` and splits into lines, each a message as WebSocket sends them
//! (batch, heartbeat, wire). On an error or the end of the response the client opens a new
//! one from its cursor, with its own backoff.

use futures::{FutureExt, pin_mut};
use gloo_net::http::Request;
use gloo_timers::future::TimeoutFuture;
use tickscope_shared::wire::ServerMessage;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::ReadableStreamDefaultReader;

use super::{Emit, FeedEvent, Reconnect, Stop, TransportKind, now_us, stream_url, streamed};

/// The longest line the page waits for the end of; a server never sends one this long.
const LINE_MAX: usize = 4 * 1024 * 1024;

pub(super) async fn run(since: u64, stop: Stop, emit: Emit) {
    streamed(
        TransportKind::Stream,
        since,
        &stop,
        &emit,
        async |cursor, reconnect, attempt| stream(cursor, reconnect, attempt, &stop, &emit).await,
    )
    .await;
}

/// One response, until it breaks or ends (`Err`) or the client stops (`Ok`).
async fn stream(
    cursor: &mut u64,
    reconnect: &mut Option<Reconnect>,
    attempt: &mut u32,
    stop: &Stop,
    emit: &Emit,
) -> Result<(), String> {
    let url = stream_url("/api/stream", *cursor, stop, reconnect.take());
    emit(FeedEvent::Request { at_us: now_us() });
    let response = Request::get(&url)
        .abort_signal(Some(&stop.signal))
        .send()
        .await
        .map_err(|err| format!("{url}: {err}"))?;
    if !response.ok() {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        return Err(format!("{url}: HTTP {status}: {body}"));
    }
    let body = response
        .body()
        .ok_or_else(|| format!("{url}: the answer has no body"))?;
    let reader: ReadableStreamDefaultReader = body.get_reader().unchecked_into();
    *attempt = 0;
    emit(FeedEvent::Connected);

    let stopped = stop.wait().fuse();
    pin_mut!(stopped);
    // No batch and no heartbeat for two heartbeat intervals: the feed is dead even if the
    // connection still stands. Reconnect.
    let silence_ms = (TransportKind::Stream.stall_after_us() / 1000) as u32;
    let mut silence = TimeoutFuture::new(silence_ms).fuse();
    let mut pending: Vec<u8> = Vec::new();
    let outcome = loop {
        let read = JsFuture::from(reader.read()).fuse();
        pin_mut!(read);
        futures::select! {
            () = silence => {
                *reconnect = Some(Reconnect::Silent);
                break Err(format!("silent feed: nothing for {} s", silence_ms / 1000));
            }
            chunk = read => {
                let Ok(chunk) = chunk else {
                    break Err("the stream broke".into());
                };
                let done = js_sys::Reflect::get(&chunk, &"done".into())
                    .ok()
                    .and_then(|done| done.as_bool())
                    .unwrap_or(true);
                if done {
                    break Err("the server ended the stream".into());
                }
                let Ok(value) = js_sys::Reflect::get(&chunk, &"value".into()) else {
                    break Err("a chunk without bytes".into());
                };
                pending.extend(js_sys::Uint8Array::new(&value).to_vec());
                match lines(&mut pending, cursor, emit) {
                    Ok(true) => silence = TimeoutFuture::new(silence_ms).fuse(),
                    Ok(false) => {}
                    Err(err) => break Err(err),
                }
                if pending.len() > LINE_MAX {
                    break Err(format!("a line of more than {LINE_MAX} bytes"));
                }
            }
            () = stopped => break Ok(()),
        }
    };
    // Lets the connection go (a stopped client's fetch is aborted too). Cancelling a stream
    // the abort already broke rejects: that is expected, so it is caught here rather than
    // reported by the browser as an uncaught error.
    let cancelled = JsFuture::from(reader.cancel());
    leptos::task::spawn_local(async move {
        let _ = cancelled.await;
    });
    outcome
}

/// Handles every whole line in `pending`, keeping the rest; `true` when one was a sign of life
/// (a batch or a heartbeat).
fn lines(pending: &mut Vec<u8>, cursor: &mut u64, emit: &Emit) -> Result<bool, String> {
    let mut alive = false;
    while let Some(end) = pending.iter().position(|&byte| byte == b'\n') {
        let line: Vec<u8> = pending.drain(..=end).collect();
        let at_us = now_us();
        match serde_json::from_slice::<ServerMessage>(&line[..end]) {
            Ok(ServerMessage::Batch(batch)) => {
                alive = true;
                *cursor = batch.cursor;
                emit(FeedEvent::Batch {
                    batch,
                    bytes: line.len(),
                    at_us,
                });
            }
            Ok(ServerMessage::Heartbeat { .. }) => {
                alive = true;
                emit(FeedEvent::Heard { at_us, bytes: 0 });
            }
            Ok(ServerMessage::Wire(report)) => emit(FeedEvent::Wire(report)),
            Ok(ServerMessage::Pong { .. } | ServerMessage::Subscribed { .. }) => {}
            Err(err) => return Err(format!("unreadable line: {err}")),
        }
    }
    Ok(alive)
}
