//! WebTransport over HTTP/3: one session, a control stream the page opens (the server's first
//! line names where the batches start; then heartbeats, pongs and wire reports), and a stream
//! per batch from the server. Batches may arrive out of order, since a lost packet holds up
//! only its own stream: each is timed when its stream ends, and put back in order by the
//! cursor it names (`after`) before the chain and the watchlist take it.
//!
//! The endpoint's certificate is the server's own and short-lived; the page pins it by hash
//! (`serverCertificateHashes`), read from `GET /api/webtransport` before each session.

use std::rc::Rc;

use futures::channel::mpsc;
use futures::{FutureExt, StreamExt, pin_mut};
use gloo_timers::future::TimeoutFuture;
use js_sys::{Array, Object, Promise, Reflect, Uint8Array};
use tickscope_shared::clock::ClockSample;
use tickscope_shared::cursor::Reorder;
use tickscope_shared::wire::{ClientMessage, ServerMessage, batch_after};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{ReadableStream, ReadableStreamDefaultReader, WritableStreamDefaultWriter};

use super::{
    Emit, FeedEvent, Reconnect, Stop, TransportKind, next_ping_ms, now_us, resume_query, resuming,
};
use crate::api;

#[wasm_bindgen]
extern "C" {
    /// The browser's `WebTransport` (Chrome 97+, Firefox 114+, Safari 26.4).
    #[wasm_bindgen(js_name = WebTransport)]
    type Session;

    #[wasm_bindgen(constructor, catch, js_class = "WebTransport")]
    fn new(url: &str, options: &JsValue) -> Result<Session, JsValue>;

    #[wasm_bindgen(method, getter)]
    fn ready(this: &Session) -> Promise;

    #[wasm_bindgen(method, getter)]
    fn closed(this: &Session) -> Promise;

    #[wasm_bindgen(method, getter, js_name = incomingUnidirectionalStreams)]
    fn incoming_unidirectional_streams(this: &Session) -> ReadableStream;

    #[wasm_bindgen(method, js_name = createBidirectionalStream)]
    fn create_bidirectional_stream(this: &Session) -> Promise;

    #[wasm_bindgen(method)]
    fn close(this: &Session);
}

/// The longest line or batch the page takes; a server never sends one this long.
const LINE_MAX: usize = 4 * 1024 * 1024;
/// Batches held while an earlier one is missing, before the session is given up.
const REORDER_MAX: usize = 4096;

/// Whether this browser has WebTransport.
pub fn supported() -> bool {
    Reflect::has(&js_sys::global(), &"WebTransport".into()).unwrap_or(false)
}

pub(super) async fn run(since: u64, stop: Stop, emit: Emit) {
    resuming(since, &stop, &emit, async |cursor, reconnect, attempt| {
        session(cursor, reconnect, attempt, &stop, &emit).await
    })
    .await;
}

fn text(error: JsValue) -> String {
    error
        .dyn_ref::<js_sys::Error>()
        .map(|error| String::from(error.message()))
        .or_else(|| error.as_string())
        .unwrap_or_else(|| format!("{error:?}"))
}

/// The options that pin the server's certificates by their SHA-256 hashes.
fn options(hashes: &[String]) -> JsValue {
    let pinned = Array::new();
    for hash in hashes {
        let bytes: Vec<u8> = (0..hash.len() / 2)
            .filter_map(|at| u8::from_str_radix(hash.get(2 * at..2 * at + 2)?, 16).ok())
            .collect();
        let entry = Object::new();
        let _ = Reflect::set(&entry, &"algorithm".into(), &"sha-256".into());
        let _ = Reflect::set(&entry, &"value".into(), &Uint8Array::from(&bytes[..]));
        pinned.push(&entry);
    }
    let options = Object::new();
    let _ = Reflect::set(&options, &"serverCertificateHashes".into(), &pinned);
    options.into()
}

/// What the session's tasks hand the main loop.
enum Arrived {
    /// A batch line, when its stream ended.
    Batch {
        line: String,
        at_us: i64,
    },
    Control(Vec<u8>),
    /// A task's stream broke or ended; why.
    Broken(String),
}

/// One session, until it breaks (`Err` with why) or the client stops (`Ok`).
async fn session(
    cursor: &mut u64,
    reconnect: &mut Option<Reconnect>,
    attempt: &mut u32,
    stop: &Stop,
    emit: &Emit,
) -> Result<(), String> {
    let info = api::webtransport()
        .await
        .map_err(|err| format!("where to connect: {err}"))?;
    let url = format!(
        "{}?{}",
        info.url,
        resume_query(*cursor, stop, reconnect.take())
    );
    emit(FeedEvent::Request { at_us: now_us() });
    let session = Session::new(&url, &options(&info.certificate_hashes)).map_err(text)?;
    let session = Rc::new(session);
    // Every way out closes the session, and its `closed` rejection is expected.
    let _close = CloseOnDrop(session.clone());
    JsFuture::from(session.ready())
        .await
        .map_err(|err| format!("WebTransport did not open: {}", text(err)))?;
    let pair = JsFuture::from(session.create_bidirectional_stream())
        .await
        .map_err(|err| format!("opening the control stream: {}", text(err)))?;
    let readable: ReadableStream = Reflect::get(&pair, &"readable".into())
        .map_err(text)?
        .unchecked_into();
    let writable: web_sys::WritableStream = Reflect::get(&pair, &"writable".into())
        .map_err(text)?
        .unchecked_into();
    let writer = writable.get_writer().map_err(text)?;
    *attempt = 0;
    emit(FeedEvent::Connected);
    emit(FeedEvent::Protocol("h3".into()));

    let (arrived, mut arrivals) = mpsc::unbounded::<Arrived>();
    leptos::task::spawn_local(read_control(readable, arrived.clone()));
    leptos::task::spawn_local(accept_batches(
        session.incoming_unidirectional_streams(),
        arrived.clone(),
    ));
    let closed = JsFuture::from(session.closed()).fuse();
    pin_mut!(closed);
    let stopped = stop.wait().fuse();
    pin_mut!(stopped);

    // Until the server names where the batches start, they are held.
    let mut reorder: Reorder<(tickscope_shared::wire::Batch, usize, i64)> =
        Reorder::new(None, REORDER_MAX);
    let mut control: Vec<u8> = Vec::new();
    let mut ping = TimeoutFuture::new(0).fuse();
    let mut pings = 0u32;
    let silence_ms = (TransportKind::WebTransport.stall_after_us() / 1000) as u32;
    let mut silence = TimeoutFuture::new(silence_ms).fuse();
    loop {
        futures::select! {
            () = silence => {
                *reconnect = Some(Reconnect::Silent);
                return Err(format!("silent feed: nothing for {} s", silence_ms / 1000));
            }
            gone = closed => {
                return Err(match gone {
                    Ok(_) => "the server closed the session".into(),
                    Err(err) => format!("the session closed: {}", text(err)),
                });
            }
            arrival = arrivals.next() => match arrival {
                Some(Arrived::Batch { line, at_us }) => {
                    silence = TimeoutFuture::new(silence_ms).fuse();
                    let after = batch_after(&line)
                        .ok_or_else(|| "a batch without the cursor it continues from".to_string())?;
                    let batch = match serde_json::from_str::<ServerMessage>(&line) {
                        Ok(ServerMessage::Batch(batch)) => batch,
                        _ => return Err("an unreadable batch".into()),
                    };
                    let ready = reorder
                        .push(after, batch.cursor, (batch, line.len(), at_us))
                        .map_err(|err| err.to_string())?;
                    deliver(ready, cursor, emit);
                }
                Some(Arrived::Control(bytes)) => {
                    control.extend(bytes);
                    while let Some(end) = control.iter().position(|&byte| byte == b'\n') {
                        let line: Vec<u8> = control.drain(..=end).collect();
                        let at_us = now_us();
                        match serde_json::from_slice::<ServerMessage>(&line[..end]) {
                            Ok(ServerMessage::Subscribed { cursor: start }) => {
                                deliver(reorder.start(start), cursor, emit);
                            }
                            Ok(ServerMessage::Pong { t, server_time }) => {
                                emit(FeedEvent::Clock(ClockSample {
                                    sent_us: t as i64,
                                    server_us: server_time,
                                    received_us: at_us,
                                }));
                                emit(FeedEvent::Heard { at_us, bytes: line.len() });
                            }
                            Ok(ServerMessage::Heartbeat { .. }) => {
                                emit(FeedEvent::Heard { at_us, bytes: line.len() });
                            }
                            Ok(ServerMessage::Wire(report)) => {
                                emit(FeedEvent::Wire(report));
                                emit(FeedEvent::Heard { at_us, bytes: line.len() });
                            }
                            Ok(ServerMessage::Batch(_)) => {}
                            Err(err) => return Err(format!("unreadable control line: {err}")),
                        }
                        silence = TimeoutFuture::new(silence_ms).fuse();
                    }
                    if control.len() > LINE_MAX {
                        return Err(format!("a control line of more than {LINE_MAX} bytes"));
                    }
                }
                Some(Arrived::Broken(why)) => return Err(why),
                None => return Err("the session's streams ended".into()),
            },
            () = ping => {
                let message = ClientMessage::Ping { t: now_us() as f64 };
                let mut line = serde_json::to_vec(&message).expect("a ping encodes");
                line.push(b'\n');
                write(&writer, &line).await?;
                pings += 1;
                ping = TimeoutFuture::new(next_ping_ms(pings)).fuse();
            }
            () = stopped => return Ok(()),
        }
    }
}

/// Hands the batches now in order to the app.
fn deliver(ready: Vec<(tickscope_shared::wire::Batch, usize, i64)>, cursor: &mut u64, emit: &Emit) {
    for (batch, bytes, at_us) in ready {
        *cursor = batch.cursor;
        emit(FeedEvent::Batch {
            batch,
            bytes,
            at_us,
        });
    }
}

async fn write(writer: &WritableStreamDefaultWriter, bytes: &[u8]) -> Result<(), String> {
    JsFuture::from(writer.write_with_chunk(&Uint8Array::from(bytes)))
        .await
        .map(|_| ())
        .map_err(|err| format!("writing to the control stream: {}", text(err)))
}

/// Closes the session when the attempt ends, whichever way.
struct CloseOnDrop(Rc<Session>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        // `closed` rejects when the page closes the session; that is the expected end.
        let closed = JsFuture::from(self.0.closed());
        leptos::task::spawn_local(async move {
            let _ = closed.await;
        });
        self.0.close();
    }
}

/// One chunk of a stream: `Ok(None)` at its end.
async fn next_chunk(reader: &ReadableStreamDefaultReader) -> Result<Option<JsValue>, String> {
    let chunk = JsFuture::from(reader.read()).await.map_err(text)?;
    let done = Reflect::get(&chunk, &"done".into())
        .ok()
        .and_then(|done| done.as_bool())
        .unwrap_or(true);
    if done {
        return Ok(None);
    }
    Reflect::get(&chunk, &"value".into())
        .map(Some)
        .map_err(text)
}

async fn read_control(readable: ReadableStream, arrived: mpsc::UnboundedSender<Arrived>) {
    let reader: ReadableStreamDefaultReader = readable.get_reader().unchecked_into();
    loop {
        let arrival = match next_chunk(&reader).await {
            Ok(Some(value)) => Arrived::Control(Uint8Array::new(&value).to_vec()),
            Ok(None) => Arrived::Broken("the server ended the control stream".into()),
            Err(err) => Arrived::Broken(format!("the control stream broke: {err}")),
        };
        let end = matches!(arrival, Arrived::Broken(_));
        if arrived.unbounded_send(arrival).is_err() || end {
            return;
        }
    }
}

/// Takes every stream the server opens and reads each to its end: one batch line.
async fn accept_batches(incoming: ReadableStream, arrived: mpsc::UnboundedSender<Arrived>) {
    let streams: ReadableStreamDefaultReader = incoming.get_reader().unchecked_into();
    while let Ok(Some(stream)) = next_chunk(&streams).await {
        let stream: ReadableStream = stream.unchecked_into();
        let arrived = arrived.clone();
        leptos::task::spawn_local(async move {
            let reader: ReadableStreamDefaultReader = stream.get_reader().unchecked_into();
            let mut line = Vec::new();
            loop {
                match next_chunk(&reader).await {
                    Ok(Some(value)) => {
                        line.extend(Uint8Array::new(&value).to_vec());
                        if line.len() > LINE_MAX {
                            let _ = arrived.unbounded_send(Arrived::Broken(format!(
                                "a batch of more than {LINE_MAX} bytes"
                            )));
                            return;
                        }
                    }
                    Ok(None) => break,
                    // The session ended under it: the main loop hears that from `closed`.
                    Err(_) => return,
                }
            }
            let at_us = now_us();
            let line = String::from_utf8_lossy(&line).trim_end().to_owned();
            let _ = arrived.unbounded_send(Arrived::Batch { line, at_us });
        });
    }
}
