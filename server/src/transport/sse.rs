//! Server-Sent Events: one HTTP response that streams batches as events.
//!
//! Each event is a batch with `id: <cursor>`, so a browser's `EventSource` that reconnects
//! sends `Last-Event-ID` and resumes where it stopped; the header wins over `since` in the URL,
//! which the browser repeats unchanged. `heartbeat` events keep an idle stream alive through
//! proxies and tell the page the feed is alive; on a metered stream (`meter=`), `wire` events
//! every second carry the page's wire costs ([`crate::wire`]). Each stream is one task running [`connection`], which writes into a small channel
//! the response body reads from; when the client goes away the channel closes and the task
//! ends.

use std::convert::Infallible;
use std::sync::Arc;

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
    let subscription = Subscription::new(&state.feed, filter, since);
    let dead_peer = peer::Watch::new(&req, &state.metrics, Transport::Sse);
    let meter = wire::Connection::of(&req).and_then(|connection| connection.meter());
    let (events, mut body) = mpsc::channel::<Bytes>(STREAM_BUFFER);
    actix_web::rt::spawn(connection(
        state.into_inner(),
        subscription,
        events,
        slot,
        meter,
    ));
    let body = stream::poll_fn(move |cx| {
        body.poll_recv(cx)
            .map(|event| event.map(Ok::<_, Infallible>))
    });
    let mut response = HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body);
    dead_peer.attach(&mut response);
    Ok(response)
}

/// Feeds one stream until the client leaves or the server shuts down.
async fn connection(
    state: Arc<AppState>,
    mut subscription: Subscription,
    events: mpsc::Sender<Bytes>,
    _slot: Slot,
    meter: Option<Arc<Meter>>,
) {
    let _client = state.metrics.client(Transport::Sse);
    let mut published = state.feed.subscribe();
    let every = state.config.sse_heartbeat();
    let mut heartbeat = interval_at(Instant::now() + every, every);
    let mut report = interval_at(Instant::now() + wire::REPORT_EVERY, wire::REPORT_EVERY);
    let retry = Bytes::from(format!("retry: {RECONNECT_MS}\n\n"));
    if send(&state, &events, retry).await.is_err() {
        return;
    }
    let mut shutting_down = std::pin::pin!(state.shutdown.cancelled());
    loop {
        published.borrow_and_update();
        if send_pending(&state, &events, &mut subscription)
            .await
            .is_err()
        {
            break;
        }
        tokio::select! {
            () = &mut shutting_down => break,
            () = events.closed() => break,
            changed = published.changed() => if changed.is_err() { break },
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
        }
    }
}

/// The client is gone (its stream's channel is closed) or is being dropped as too slow.
struct Gone;

/// Sends every batch the subscription is behind on, one event each.
async fn send_pending(
    state: &AppState,
    events: &mpsc::Sender<Bytes>,
    subscription: &mut Subscription,
) -> Result<(), Gone> {
    while let Some(frame) =
        subscription.next_frame(&state.feed, Framing::Sse, state.max_batch_ticks())
    {
        send(state, events, frame.text.into_bytes()).await?;
    }
    Ok(())
}

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
