//! Every HTTP call to the server: one function per endpoint. Nothing else in the app does
//! HTTP. Feed calls take the abort signal of their transport client, so stopping a client
//! cancels its request in flight.

use gloo_net::http::Request;
use serde::de::DeserializeOwned;
use tickscope_shared::wire::{Batch, History, ServerTime, Snapshot, SymbolList};

/// A failure a person can read: what was asked and what went wrong.
pub type ApiResult<T> = Result<T, String>;

/// GETs `url` and decodes its JSON, returning the body's size too.
async fn get_json<T: DeserializeOwned>(
    url: &str,
    abort: Option<&web_sys::AbortSignal>,
) -> ApiResult<(T, usize)> {
    let response = Request::get(url)
        .abort_signal(abort)
        .send()
        .await
        .map_err(|err| format!("{url}: {err}"))?;
    let status = response.status();
    let body = response
        .text()
        .await
        .map_err(|err| format!("{url}: {err}"))?;
    if !(200..300).contains(&status) {
        return Err(format!("{url}: HTTP {status}: {body}"));
    }
    let value = serde_json::from_str(&body).map_err(|err| format!("{url}: {err}"))?;
    Ok((value, body.len()))
}

pub async fn symbols() -> ApiResult<SymbolList> {
    Ok(get_json("/api/symbols", None).await?.0)
}

pub async fn snapshot() -> ApiResult<Snapshot> {
    Ok(get_json("/api/snapshot", None).await?.0)
}

pub async fn history(symbol: &str, seconds: u32) -> ApiResult<History> {
    Ok(get_json(
        &format!("/api/history?symbol={symbol}&seconds={seconds}"),
        None,
    )
    .await?
    .0)
}

pub async fn time(abort: &web_sys::AbortSignal) -> ApiResult<ServerTime> {
    Ok(get_json("/api/time", Some(abort)).await?.0)
}

pub async fn poll(since: u64, abort: &web_sys::AbortSignal) -> ApiResult<(Batch, usize)> {
    get_json(&format!("/api/poll?since={since}"), Some(abort)).await
}

pub async fn long_poll(since: u64, abort: &web_sys::AbortSignal) -> ApiResult<(Batch, usize)> {
    get_json(&format!("/api/long-poll?since={since}"), Some(abort)).await
}
