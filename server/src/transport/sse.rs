//! Server-Sent Events: one HTTP response that streams batches as events.
//!
//! Each event is a batch with `id: <cursor>`, so a browser's `EventSource` that reconnects
//! sends `Last-Event-ID` and resumes where it stopped; the header wins over `since` in the URL,
//! which the browser repeats unchanged. `heartbeat` events keep an idle stream alive through
//! proxies and tell the page the feed is alive; on a metered stream (`meter=`), `wire` events
//! every second carry the page's wire costs ([`crate::connection::wire`]). How the events travel is
//! [`super::push`]'s: on HTTP/1.1 the worker's fan-out writes them to the socket, taken out of
//! actix-http; on HTTP/2 the response body takes them from the feed.
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;

use crate::AppState;
use crate::connection::origin;
use crate::connection::wire::Meter;
use crate::error::ApiError;
use crate::feed::encode::Framing;
use crate::metrics::Transport;
use crate::query::{Params, parse_number};

use super::push::{self, Streamed};

/// How long a browser waits before reconnecting a dropped stream, in milliseconds.
const RECONNECT_MS: u32 = 1000;

/// `GET /api/sse?since=N&symbols=...`, honouring `Last-Event-ID`.
pub async fn stream(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    state.metrics.transport(Transport::Sse).requests.inc();
    origin::check(&req, &state.config)?;
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
    push::open_streamed(
        &req,
        state,
        filter,
        since,
        reconnect,
        Bytes::from(format!("retry: {RECONNECT_MS}\n\n")),
        Streamed {
            transport: Transport::Sse,
            content_type: "text/event-stream",
            framing: Framing::Sse,
            heartbeat: heartbeat_event,
            wire: wire_event,
        },
    )
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
        crate::feed::clock::now_us()
    ))
}
