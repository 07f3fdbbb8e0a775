//! An edge behind a balancer: `/readyz`, which says whether this process can serve (a
//! balancer's health check), and the `tickscope-edge` header, which names the process that
//! answered and shows what the request looked like when it arrived, so a page can tell that a
//! proxy is in its path.

use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};
use serde::Serialize;
use tickscope_shared::wire::EdgeHeader;

use crate::connection::forwarded;
use crate::error::ApiError;
use crate::{AppState, Role};

/// Names the edge on every answer: [`EdgeHeader`], with the `Host` the request arrived with
/// and the header that shows a proxy carried it.
pub async fn name_the_edge(
    name: std::rc::Rc<str>,
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let edge = EdgeHeader {
        name: name.to_string(),
        host: req
            .headers()
            .get(header::HOST)
            .and_then(|host| host.to_str().ok())
            .map(str::to_owned),
        via: forwarded::evidence(req.headers()).map(str::to_owned),
    };
    let mut res = next.call(req).await?;
    if let Ok(value) = HeaderValue::from_str(&edge.to_header()) {
        res.headers_mut()
            .insert(HeaderName::from_static(EdgeHeader::HEADER), value);
    }
    Ok(res)
}

#[derive(Serialize)]
struct Ready {
    ready: bool,
    /// On an edge, `live` or `stale` (the generator silent for every edge alike).
    #[serde(skip_serializing_if = "Option::is_none")]
    feed: Option<&'static str>,
}

/// `GET /readyz`: 200 while this process can serve its role; 503 with the reason while it
/// cannot, so a balancer sends requests elsewhere. Before the state is ready (an edge
/// backfilling) the gate answers 503 "starting" for it; without NATS neither role can do its
/// work. A stale feed with NATS connected keeps an edge ready: the generator is silent for
/// every edge alike, and taking them all out would turn a paused feed (snapshots, history and
/// open streams still served, `/healthz` saying `stale`) into an outage. `/healthz` stays 200
/// throughout: the process is alive.
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let mut ready = Ready {
        ready: true,
        feed: None,
    };
    if let Some(status) = &state.cluster {
        let health = status.health(&state.feed);
        if health.broker == "disconnected" {
            return Err(ApiError::Unavailable {
                message: "not ready: NATS is disconnected".into(),
                retry_after: Duration::from_secs(1),
            });
        }
        if state.config.role == Role::Edge {
            ready.feed = Some(health.feed);
        }
    }
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(ready))
}
