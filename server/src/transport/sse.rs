//! Server-Sent Events: one HTTP response that streams batches as events.
//!
//! Each event is a batch with `id: <cursor>`, so a browser's `EventSource` that reconnects
//! sends `Last-Event-ID` and resumes where it stopped; the header wins over `since` in the URL,
//! which the browser repeats unchanged. `heartbeat` events keep an idle stream alive through
//! proxies and tell the page the feed is alive; on a metered stream (`meter=`), `wire` events
//! every second carry the page's wire costs ([`crate::wire`]). The response body takes the
//! batches from the feed itself ([`super::push`]); each stream's task, [`connection`], sends
//! the rest through a small channel and drops a client that takes no data for the
//! slow-client timeout. When the client goes away the channel closes and the task ends.
use std::convert::Infallible;
use std::rc::Rc;
use std::sync::Arc;

use actix_web::body::{BodyStream, MessageBody};
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use futures_util::stream;
use tokio::sync::mpsc;
use tokio::time::{Instant, interval_at};

use crate::AppState;
use crate::encode::Framing;
use crate::error::ApiError;
use crate::feed::Subscription;
use crate::limits::{self, Kind, Slot};
use crate::metrics::Transport;
use crate::origin;
use crate::peer;
use crate::query::{Params, parse_number};
use crate::wire::{self, Meter};

use super::push::{Outbox, PushBody};

/// Events buffered for a stream before its task waits for the client to read.
const STREAM_BUFFER: usize = 16;
/// How long a browser waits before reconnecting a dropped stream, in milliseconds.
const RECONNECT_MS: u32 = 1000;

/// `GET /api/sse?since=N&symbols=...`, honouring `Last-Event-ID`.
pub async fn stream(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    state.metrics.transport(Transport::Sse).requests.inc();
    origin::check(&req, &state.config.allowed_origins)?;
    let params = Params::parse(req.query_string())?;
    let since = match req.headers().get("last-event-id") {
        Some(value) => {
            let text = value.to_str().map_err(|_| {
                ApiError::BadRequest("Last-Event-ID must be a cursor (a whole number)".into())
            })?;
            Some(parse_number("Last-Event-ID", text.trim(), u64::MAX)?)
        }
        None => params.since()?,
    };
    let filter = params.symbols(state.universe(), state.max_symbols())?;
    let reconnect = params.reconnect()?;
    let slot = state.limits.admit(limits::peer(&req).ip(), Kind::Stream)?;
    if let Some(reason) = reconnect {
        state.metrics.reconnected(Transport::Sse, reason);
    }
    let dead_peer = peer::Watch::new(&req, &state.metrics, Transport::Sse);
    let meter = wire::Connection::of(&req).and_then(|connection| connection.meter());
    let state = state.into_inner();
    // Batches go straight from the feed into the response body (`push`); the retry line,
    // heartbeats and reports come from the connection's task through a small channel.
    let outbox = Outbox::new();
    outbox.subscribe(Subscription::new(&state.feed, filter, since));
    let (events, mut control) = mpsc::channel::<Bytes>(STREAM_BUFFER);
    let retry = Bytes::from(format!("retry: {RECONNECT_MS}\n\n"));
    events
        .try_send(retry)
        .expect("a new channel has room for the first line");
    let control = BodyStream::new(stream::poll_fn(move |cx| {
        control
            .poll_recv(cx)
            .map(|event| event.map(Ok::<_, Infallible>))
    }))
    .boxed();
    let body = PushBody::new(control, outbox.clone(), state.clone(), Framing::Sse);
    actix_web::rt::spawn(connection(state, outbox, events, slot, meter));
    let mut response = HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .body(body);
    dead_peer.attach(&mut response);
    Ok(response)
}

/// Keeps one stream alive (heartbeats, reports) until the client leaves, takes no data for
/// the slow-client timeout, or the server shuts down; the body takes the batches.
async fn connection(
    state: Arc<AppState>,
    outbox: Rc<Outbox>,
    events: mpsc::Sender<Bytes>,
    _slot: Slot,
    meter: Option<Arc<Meter>>,
) {
    let _client = state.metrics.client(Transport::Sse);
    let every = state.config.sse_heartbeat();
    let mut heartbeat = interval_at(Instant::now() + every, every);
    let mut report = interval_at(Instant::now() + wire::REPORT_EVERY, wire::REPORT_EVERY);
    // Often enough to drop a client that takes no data within a quarter of the timeout.
    let slow_every = state.config.slow_client_timeout() / 4;
    let mut slow_check = interval_at(Instant::now() + slow_every, slow_every);
    let mut shutting_down = std::pin::pin!(state.shutdown.cancelled());
    loop {
        tokio::select! {
            () = &mut shutting_down => break,
            () = events.closed() => break,
            _ = heartbeat.tick() => {
                if send(&state, &events, heartbeat_event()).await.is_err() {
                    break;
                }
            }
            _ = report.tick(), if meter.is_some() => {
                let Some(meter) = &meter else { continue };
                if send(&state, &events, wire_event(meter)).await.is_err() {
                    break;
                }
            }
            _ = slow_check.tick() => {
                if outbox.stalled_for(&state) > state.config.slow_client_timeout() {
                    state.metrics.transport(Transport::Sse).slow_dropped.inc();
                    break;
                }
            }
        }
    }
    // No batch after this; the stream ends once the body has handed over what is queued.
    outbox.close();
}

/// The client is gone (its stream's channel is closed) or is being dropped as too slow.
struct Gone;

/// Queues one event; a client that takes none for the slow-client timeout is dropped.
async fn send(state: &AppState, events: &mpsc::Sender<Bytes>, event: Bytes) -> Result<(), Gone> {
    let len = event.len();
    match tokio::time::timeout(state.config.slow_client_timeout(), events.send(event)).await {
        Ok(Ok(())) => {}
        Ok(Err(_closed)) => return Err(Gone),
        Err(_elapsed) => {
            state.metrics.transport(Transport::Sse).slow_dropped.inc();
            return Err(Gone);
        }
    }
    state.metrics.sent(Transport::Sse, len);
    Ok(())
}

/// A `wire` event: the stream's meter, for the page's cost figures. No `id` either.
fn wire_event(meter: &Meter) -> Bytes {
    let report = serde_json::to_string(&meter.report()).expect("a report always encodes");
    Bytes::from(format!("event: wire\ndata: {report}\n\n"))
}

/// A `heartbeat` event: pages see it (an `EventSource` hides comment lines), so a silent
/// feed can be told from an idle one; it carries no `id`, so the resume point stays put.
fn heartbeat_event() -> Bytes {
    Bytes::from(format!(
        "event: heartbeat\ndata: {{\"server_time\":{}}}\n\n",
        crate::clock::now_us()
    ))
}
