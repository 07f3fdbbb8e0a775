//! Every HTTP call to the server: one function per endpoint. Nothing else in the app does
//! HTTP. Feed calls take the abort signal of their transport client, so stopping a client
//! cancels its request in flight.

use gloo_net::http::Request;
use serde::de::DeserializeOwned;
use tickscope_shared::lab::LabStatus;
use tickscope_shared::wire::{
    Batch, EdgeHeader, ErrorBody, History, Origins, ServerTime, Snapshot, SymbolList,
    WebTransportInfo, WireReport,
};

/// A failure a person can read: what was asked and what went wrong.
pub type ApiResult<T> = Result<T, String>;

/// A feed answer: its value, the body's size, and the meter's report if the request named one.
pub struct Answer<T> {
    pub value: T,
    pub bytes: usize,
    pub wire: Option<WireReport>,
    pub edge: Option<EdgeHeader>,
}

/// GETs `url` and decodes its JSON, with the body's size and the meter's report.
async fn get_json<T: DeserializeOwned>(
    url: &str,
    abort: Option<&web_sys::AbortSignal>,
) -> ApiResult<Answer<T>> {
    let response = Request::get(url)
        .abort_signal(abort)
        .send()
        .await
        .map_err(|err| format!("{url}: {err}"))?;
    let status = response.status();
    let wire = response
        .headers()
        .get(WireReport::HEADER)
        .and_then(|value| WireReport::from_header(&value));
    let edge = response
        .headers()
        .get(EdgeHeader::HEADER)
        .and_then(|value| EdgeHeader::from_header(&value));
    let body = response
        .text()
        .await
        .map_err(|err| format!("{url}: {err}"))?;
    if !(200..300).contains(&status) {
        return Err(format!("{url}: HTTP {status}: {body}"));
    }
    let value = serde_json::from_str(&body).map_err(|err| format!("{url}: {err}"))?;
    Ok(Answer {
        value,
        bytes: body.len(),
        wire,
        edge,
    })
}

/// Why a WebSocket handshake to `url` (in its http(s) form) did not open, as far as a page
/// can learn it: the browser reports no status for a refused handshake, so the same URL is
/// asked again without the upgrade. The server admits the request as it would a handshake, so
/// its refusals (429, 503) come back as they are; a 400 "takes a WebSocket upgrade" means the
/// server is reachable and would have upgraded, and the Upgrade header did not reach it.
pub async fn websocket_refusal(url: &str) -> String {
    let response = match Request::get(url).send().await {
        Ok(response) => response,
        Err(err) => {
            return format!(
                "the WebSocket did not open, and the server does not answer over HTTP either ({err})"
            );
        }
    };
    let status = response.status();
    let error = response
        .json::<ErrorBody>()
        .await
        .map(|body| body.error)
        .unwrap_or_default();
    if status == 400 && error.contains("takes a WebSocket upgrade") {
        "this path does not carry WebSocket upgrades: HTTP 400 at the handshake. The server \
         answers over HTTP, but the Upgrade header does not reach it: a proxy on the way drops \
         it (nginx needs proxy_http_version 1.1 and the Upgrade and Connection headers, see \
         docs/DEPLOY.md). Another transport works on this path."
            .into()
    } else {
        format!("the server refused the WebSocket handshake: HTTP {status}: {error}")
    }
}

/// The symbols, and the `tickscope-edge` header of their answer: which edge answered, and
/// what the request looked like when it got there.
pub async fn symbols() -> ApiResult<(SymbolList, Option<EdgeHeader>)> {
    let answer = get_json("/api/symbols", None).await?;
    Ok((answer.value, answer.edge))
}

pub async fn snapshot() -> ApiResult<Snapshot> {
    Ok(get_json("/api/snapshot", None).await?.value)
}

pub async fn history(symbol: &str, seconds: u32) -> ApiResult<History> {
    Ok(get_json(
        &format!("/api/history?symbol={symbol}&seconds={seconds}"),
        None,
    )
    .await?
    .value)
}

/// The URL of clock exchange number `exchange` on `origin` (empty: the page's) for
/// `transport` (its wire name), charged to it and to `meter`. The number makes it unique, so
/// its Resource Timing entry can be found.
pub fn time_url(origin: &str, transport: &str, meter: &str, exchange: u32) -> String {
    format!("{origin}/api/time?transport={transport}&meter={meter}&exchange={exchange}")
}

/// A clock exchange at `url`, from [`time_url`].
pub async fn time(url: &str, abort: &web_sys::AbortSignal) -> ApiResult<Answer<ServerTime>> {
    get_json(url, Some(abort)).await
}

/// Where the server's WebTransport endpoint is and the certificate hashes to pin; an error
/// (404) when it has none.
pub async fn webtransport() -> ApiResult<WebTransportInfo> {
    Ok(get_json("/api/webtransport", None).await?.value)
}

/// The server's other origins (its HTTP/1.1-only one), for compare mode.
pub async fn origins() -> ApiResult<Origins> {
    Ok(get_json("/api/origins", None).await?.value)
}

/// A poll from `since` on `origin` (empty: the page's), charged to `meter`.
pub async fn poll(
    origin: &str,
    since: u64,
    meter: &str,
    abort: &web_sys::AbortSignal,
) -> ApiResult<Answer<Batch>> {
    get_json(
        &format!("{origin}/api/poll?since={since}&meter={meter}"),
        Some(abort),
    )
    .await
}

/// A long poll from `since` on `origin` (empty: the page's), charged to `meter`.
pub async fn long_poll(
    origin: &str,
    since: u64,
    meter: &str,
    abort: &web_sys::AbortSignal,
) -> ApiResult<Answer<Batch>> {
    get_json(
        &format!("{origin}/api/long-poll?since={since}&meter={meter}"),
        Some(abort),
    )
    .await
}

/// The network lab's state, or `None` when the server runs without one.
pub async fn lab() -> ApiResult<Option<LabStatus>> {
    let response = Request::get("/api/lab")
        .send()
        .await
        .map_err(|err| format!("/api/lab: {err}"))?;
    let status = lab_answer(response).await?;
    Ok(status.active.is_some().then_some(status))
}

/// Switches the network lab to `profile`.
pub async fn switch_lab(profile: &str) -> ApiResult<LabStatus> {
    let response = Request::post("/api/lab")
        .json(&serde_json::json!({ "profile": profile }))
        .map_err(|err| format!("/api/lab: {err}"))?
        .send()
        .await
        .map_err(|err| format!("/api/lab: {err}"))?;
    lab_answer(response).await
}

async fn lab_answer(response: gloo_net::http::Response) -> ApiResult<LabStatus> {
    let status = response.status();
    let body = response
        .text()
        .await
        .map_err(|err| format!("/api/lab: {err}"))?;
    if !(200..300).contains(&status) {
        return Err(format!("/api/lab: HTTP {status}: {body}"));
    }
    serde_json::from_str(&body).map_err(|err| format!("/api/lab: {err}"))
}
