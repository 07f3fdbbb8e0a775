//! Every call to the server: one function per endpoint, nothing else here does I/O.

use gloo_net::http::Request;
use tickscope_shared::wire::{Batch, Snapshot, SymbolList};

/// An error a person can read: what failed and why.
pub type ApiResult<T> = Result<T, String>;

async fn get_json<T: serde::de::DeserializeOwned>(url: &str) -> ApiResult<T> {
    let response = Request::get(url)
        .send()
        .await
        .map_err(|err| format!("{url}: {err}"))?;
    if !response.ok() {
        return Err(format!("{url}: HTTP {}", response.status()));
    }
    response
        .json::<T>()
        .await
        .map_err(|err| format!("{url}: {err}"))
}

pub async fn symbols() -> ApiResult<SymbolList> {
    get_json("/api/symbols").await
}

pub async fn snapshot() -> ApiResult<Snapshot> {
    get_json("/api/snapshot").await
}

pub async fn poll(since: u64) -> ApiResult<Batch> {
    get_json(&format!("/api/poll?since={since}")).await
}
