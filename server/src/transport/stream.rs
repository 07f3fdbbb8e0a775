//! HTTP streaming: one long response of newline-delimited JSON, which a page reads with
//! `fetch` and a `ReadableStream` (Centrifugo's fallback for networks whose proxies break
//! WebSocket).
//!
//! Each line is a message as WebSocket sends it: `{"type":"batch",...}` (a batch with its
//! cursor), `{"type":"heartbeat","server_time":..}` every `--sse-heartbeat-ms` (and at once,
//! so the page knows the stream is up before the first tick), and on a metered stream
//! (`meter=`) `{"type":"wire",...}` every second. A client resumes by opening a new stream
//! with `since=<last cursor>`. The limits, origin check and slow-client rule are SSE's: the
//! body takes batches from the feed itself ([`super::push`]) and
//! [`push::keep_streaming`] keeps the rest.

use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use tickscope_shared::wire::ServerMessage;

use crate::AppState;
use crate::connection::origin;
use crate::connection::wire::Meter;
use crate::error::ApiError;
use crate::feed::encode::Framing;
use crate::metrics::Transport;
use crate::query::Params;

use super::push::{self, Streamed};

/// The media type of the stream: one JSON document per line.
pub const CONTENT_TYPE: &str = "application/x-ndjson";

/// `GET /api/stream?since=N&symbols=...`.
pub async fn stream(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    state.metrics.transport(Transport::Stream).requests.inc();
    origin::check(&req, &state.config)?;
    let params = Params::parse(req.query_string())?;
    let since = params.since()?;
    let filter = params.symbols(state.universe(), state.max_symbols())?;
    let reconnect = params.reconnect()?;
    push::open_streamed(
        &req,
        state,
        filter,
        since,
        reconnect,
        heartbeat_line(),
        Streamed {
            transport: Transport::Stream,
            content_type: CONTENT_TYPE,
            framing: Framing::Ndjson,
            heartbeat: heartbeat_line,
            wire: wire_line,
        },
    )
}

fn line(message: &ServerMessage) -> Bytes {
    let mut text = serde_json::to_string(message).expect("a message always encodes");
    text.push('\n');
    Bytes::from(text)
}

/// A heartbeat line with the server's clock: the feed is alive even when no tick comes.
fn heartbeat_line() -> Bytes {
    line(&ServerMessage::Heartbeat {
        server_time: crate::feed::clock::now_us(),
    })
}

/// A wire line: the stream's meter, for the page's cost figures.
fn wire_line(meter: &Meter) -> Bytes {
    line(&ServerMessage::Wire(meter.report()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_messages_with_a_newline() {
        let heartbeat = heartbeat_line();
        let text = std::str::from_utf8(&heartbeat).unwrap();
        let (json, rest) = text.split_once('\n').unwrap();
        assert_eq!(rest, "");
        assert!(matches!(
            serde_json::from_str::<ServerMessage>(json).unwrap(),
            ServerMessage::Heartbeat { server_time } if server_time > 0
        ));
    }
}
