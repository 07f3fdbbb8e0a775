//! `/api/lab`: the network lab's profile, read and switched from the page.
//!
//! With `--lab-control <socket>` (which `just lab` gives), the server runs behind the lab's
//! emulated link (`lab/`), and this route passes the page's choice to the lab's control
//! socket: one line (`get` or `set <profile>`) and one JSON line back. Without it, `GET`
//! answers `"active": null` (a 200, so a page's console stays clean) and the page shows no
//! network selector; `POST` answers 404.

use std::path::Path;
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use tickscope_shared::lab::{self, LabStatus};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::AppState;
use crate::connection::origin;
use crate::error::ApiError;

/// How long the lab has to answer.
const PATIENCE: Duration = Duration::from_secs(3);
/// Longest body of a switch.
const CHOICE_MAX: usize = 256;
/// Longest answer read from the lab.
const ANSWER_MAX: u64 = 4096;

#[derive(Deserialize)]
pub struct Choice {
    profile: String,
}

pub async fn status(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let Some(socket) = state.config.lab_control.as_deref() else {
        return Ok(HttpResponse::Ok().json(LabStatus::off()));
    };
    let active = ask(socket, "get").await?;
    Ok(HttpResponse::Ok().json(LabStatus::new(&active)))
}

/// Switches the profile: a page of another origin may not.
pub async fn switch(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    origin::check(&req, &state.config)?;
    let socket = socket(&state)?;
    if body.len() > CHOICE_MAX {
        return Err(ApiError::BadRequest(format!(
            "the body has {} bytes; a choice is {{\"profile\": \"<name>\"}}, under {CHOICE_MAX}",
            body.len()
        )));
    }
    let choice: Choice = serde_json::from_slice(&body).map_err(|error| {
        ApiError::BadRequest(format!(
            "the body must be {{\"profile\": \"<name>\"}}: {error}"
        ))
    })?;
    let name = choice.profile.as_str();
    if lab::profile(name).is_none() {
        let names: Vec<_> = lab::PROFILES.iter().map(|p| p.name).collect();
        return Err(ApiError::BadRequest(format!(
            "no profile {name:?}; there are {}",
            names.join(", ")
        )));
    }
    let active = ask(socket, &format!("set {name}")).await?;
    tracing::info!(profile = %active, "network lab profile switched");
    Ok(HttpResponse::Ok().json(LabStatus::new(&active)))
}

fn socket(state: &AppState) -> Result<&Path, ApiError> {
    state.config.lab_control.as_deref().ok_or_else(|| {
        ApiError::NotFound(
            "this server runs without the network lab; `just lab` starts one behind it".into(),
        )
    })
}

/// One request to the lab; the profile it names as active.
async fn ask(socket: &Path, line: &str) -> Result<String, ApiError> {
    let unreachable = |why: String| ApiError::Unavailable {
        message: format!("the network lab does not answer ({why})"),
        retry_after: Duration::from_secs(1),
    };
    let exchange = async {
        let mut stream = UnixStream::connect(socket).await?;
        stream.write_all(format!("{line}\n").as_bytes()).await?;
        let mut answer = String::new();
        BufReader::new((&mut stream).take(ANSWER_MAX))
            .read_line(&mut answer)
            .await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(PATIENCE, exchange)
        .await
        .map_err(|_| unreachable("no answer within 3 s".into()))?
        .map_err(|error| unreachable(error.to_string()))?;
    let value: serde_json::Value =
        serde_json::from_str(&answer).map_err(|error| unreachable(error.to_string()))?;
    match (value.get("active"), value.get("error")) {
        (Some(active), _) => Ok(active.as_str().unwrap_or_default().to_owned()),
        (_, Some(error)) => Err(ApiError::BadRequest(
            error.as_str().unwrap_or_default().to_owned(),
        )),
        _ => Err(unreachable(format!("unexpected answer {answer:?}"))),
    }
}
