//! Server-Sent Events through the browser's `EventSource`. On an error the client closes the
//! source and reconnects itself with its cursor, so the backoff and the connection state are
//! its own rather than the browser's silent retry.

use futures::channel::mpsc;
use futures::{FutureExt, StreamExt, pin_mut};
use tickscope_shared::wire::{Batch, WireReport};
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::{EventSource, MessageEvent};

use gloo_timers::future::TimeoutFuture;

use super::{Emit, FeedEvent, Reconnect, Stop, TransportKind, now_us, stream_url, streamed};

/// What the source's callbacks hand to the client task.
enum Signal {
    Open,
    Data(String),
    Heartbeat,
    Wire(String),
    Error,
}

pub(super) async fn run(since: u64, stop: Stop, emit: Emit) {
    streamed(
        TransportKind::Sse,
        since,
        &stop,
        &emit,
        async |cursor, reconnect, attempt| stream(cursor, reconnect, attempt, &stop, &emit).await,
    )
    .await;
}

/// One stream, until it breaks (`Err`) or the client stops (`Ok`). `reconnect` says why the
/// last one ended, and gets why this one did.
async fn stream(
    cursor: &mut u64,
    reconnect: &mut Option<Reconnect>,
    attempt: &mut u32,
    stop: &Stop,
    emit: &Emit,
) -> Result<(), String> {
    let url = stream_url("/api/sse", *cursor, stop, reconnect.take());
    let source =
        EventSource::new(&url).map_err(|err| format!("cannot open the event stream: {err:?}"))?;
    let (signals, mut received) = mpsc::unbounded::<Signal>();
    let on_open = {
        let signals = signals.clone();
        Closure::<dyn FnMut()>::new(move || {
            let _ = signals.unbounded_send(Signal::Open);
        })
    };
    let on_message = {
        let signals = signals.clone();
        Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            if let Some(data) = event.data().as_string() {
                let _ = signals.unbounded_send(Signal::Data(data));
            }
        })
    };
    let on_heartbeat = {
        let signals = signals.clone();
        Closure::<dyn FnMut()>::new(move || {
            let _ = signals.unbounded_send(Signal::Heartbeat);
        })
    };
    let on_wire = {
        let signals = signals.clone();
        Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            if let Some(data) = event.data().as_string() {
                let _ = signals.unbounded_send(Signal::Wire(data));
            }
        })
    };
    let on_error = Closure::<dyn FnMut()>::new(move || {
        let _ = signals.unbounded_send(Signal::Error);
    });
    source.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    source.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    source.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    source
        .add_event_listener_with_callback("heartbeat", on_heartbeat.as_ref().unchecked_ref())
        .map_err(|err| format!("cannot listen for heartbeats: {err:?}"))?;
    source
        .add_event_listener_with_callback("wire", on_wire.as_ref().unchecked_ref())
        .map_err(|err| format!("cannot listen for wire reports: {err:?}"))?;

    let stopped = stop.wait().fuse();
    pin_mut!(stopped);
    // No batch and no heartbeat for two heartbeat intervals: the feed is dead even if the
    // browser still holds the stream open. Reconnect.
    let silence_ms = (TransportKind::Sse.stall_after_us() / 1000) as u32;
    let mut silence = TimeoutFuture::new(silence_ms).fuse();
    let outcome = loop {
        futures::select! {
            () = silence => {
                *reconnect = Some(Reconnect::Silent);
                break Err(format!("silent feed: nothing for {} s", silence_ms / 1000));
            }
            signal = received.next() => match signal {
                Some(Signal::Open) => {
                    *attempt = 0;
                    emit(FeedEvent::Connected);
                }
                Some(Signal::Heartbeat) => {
                    silence = TimeoutFuture::new(silence_ms).fuse();
                    emit(FeedEvent::Heard { at_us: now_us(), bytes: 0 });
                }
                Some(Signal::Wire(data)) => {
                    if let Ok(report) = serde_json::from_str::<WireReport>(&data) {
                        emit(FeedEvent::Wire(report));
                    }
                }
                Some(Signal::Data(data)) => {
                    silence = TimeoutFuture::new(silence_ms).fuse();
                    let at_us = now_us();
                    match serde_json::from_str::<Batch>(&data) {
                        Ok(batch) => {
                            *cursor = batch.cursor;
                            emit(FeedEvent::Batch { batch, bytes: data.len(), at_us });
                        }
                        Err(err) => break Err(format!("unreadable event: {err}")),
                    }
                }
                Some(Signal::Error) | None => break Err("the event stream broke".into()),
            },
            () = stopped => break Ok(()),
        }
    };
    source.close();
    // The callbacks live until here, so the source never calls a dropped closure.
    drop((on_open, on_message, on_heartbeat, on_wire, on_error));
    outcome
}
