//! Long polling: the server holds each request until there is something after its `since`,
//! or its timeout passes (RFC 6202 section 2).

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use tokio::time::{Instant, sleep_until};

use crate::AppState;
use crate::connection::limits::Kind;
use crate::connection::peer;
use crate::error::ApiError;
use crate::error::json_body;
use crate::feed::Subscription;
use crate::feed::encode::Framing;
use crate::metrics::Transport;
use crate::query::Params;

/// Long polling: holds the request until a matching tick after `since` exists, then answers
/// with everything since; at `timeout_ms` (or shutdown) answers with an empty batch. The
/// request waits on the feed's publish signal; nothing loops on a timer.
pub async fn long_poll(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    state
        .metrics
        .transport(Transport::LongPolling)
        .requests
        .inc();
    let params = Params::parse(req.query_string())?;
    let since = params.since()?;
    let filter = params.symbols(state.universe(), state.max_symbols())?;
    let timeout_ms = params
        .number("timeout_ms", state.config.long_poll_max_timeout_ms)?
        .unwrap_or(state.config.long_poll_timeout_ms);
    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
    let _slot = state
        .limits
        .admit(state.limits.client_ip(&req), Kind::LongPoll)?;
    let _client = state.metrics.client(Transport::LongPolling);
    // Dropped unanswered when the connection goes: counted if the peer vanished.
    let dead_peer = peer::Watch::new(&req, &state.metrics, Transport::LongPolling);

    let mut published = state.feed.subscribe();
    let mut subscription = Subscription::new(&state.feed, filter, since);
    let frame = loop {
        published.borrow_and_update();
        if let Some(frame) =
            subscription.next_frame(&state.feed, Framing::Json, state.max_batch_ticks())
        {
            break frame;
        }
        tokio::select! {
            changed = published.changed() => if changed.is_err() {
                break subscription.empty_frame(Framing::Json);
            },
            () = sleep_until(deadline) => {
                state.metrics.long_poll_timeouts.inc();
                break subscription.empty_frame(Framing::Json);
            }
            () = state.shutdown.cancelled() => break subscription.empty_frame(Framing::Json),
        }
    };
    dead_peer.answered();
    state
        .metrics
        .sent(Transport::LongPolling, frame.bytes.len());
    Ok(json_body(frame.bytes))
}
