//! Polling: the client asks again and again; each answer is at once, with whatever came after
//! its `since` (often nothing).

use actix_web::{HttpRequest, HttpResponse, web};

use crate::AppState;
use crate::error::ApiError;
use crate::error::json_body;
use crate::feed::encode::Framing;
use crate::metrics::Transport;
use crate::query::Params;

/// Polling: answers at once with whatever came after `since` (often nothing).
pub async fn poll(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let metrics = state.metrics.transport(Transport::Polling);
    metrics.requests.inc();
    let meter = crate::connection::wire::meter(&req).map(|meter| meter.name());
    state.limits.poll(state.limits.poller(&req), meter)?;
    let params = Params::parse(req.query_string())?;
    let since = params.since()?;
    let filter = params.symbols(state.universe(), state.max_symbols())?;
    let frame = state
        .feed
        .frame_since(since, &filter, Framing::Json, state.max_batch_ticks());
    if frame.ticks == 0 {
        state.metrics.empty_polls.inc();
    }
    state.metrics.sent(Transport::Polling, frame.bytes.len());
    Ok(json_body(frame.bytes))
}
