//! The HTTP endpoints: reference data, clock, health, metrics, the built browser app, and the
//! routes of the six transports ([`crate::transport`]), the network lab's switch ([`lab`]),
//! and what a balancer in front needs ([`edge`]: readiness, the edge's name on each answer).

pub mod edge;
pub mod lab;

use actix_web::http::header::{self, ContentType};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use tickscope_shared::wire::{History, Origins, ServerTime, SymbolList};

use crate::cluster::ClusterHealth;
use crate::error::{ApiError, json_body};
use crate::feed::CANDLE_HISTORY_S;
use crate::feed::clock::now_us;
use crate::feed::encode;
use crate::query::{InputError, Params};
use crate::{AppState, Config, Role, transport};

/// Registers every `/api` route, `/healthz`, `/readyz` and `/metrics`; a generator serves no
/// clients, so it has only the last three.
pub fn routes(cfg: &mut web::ServiceConfig, role: Role) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(edge::readyz))
        .route("/metrics", web::get().to(metrics));
    if role == Role::Generator {
        cfg.service(web::scope("/api").default_service(web::to(generator_api)));
        return;
    }
    cfg.service(
        web::scope("/api")
            .route("/symbols", web::get().to(symbols))
            .route("/snapshot", web::get().to(snapshot))
            .route("/history", web::get().to(history))
            .route("/time", web::get().to(time))
            .route("/origins", web::get().to(origins))
            .route("/poll", web::get().to(transport::polling::poll))
            .route(
                "/long-poll",
                web::get().to(transport::long_polling::long_poll),
            )
            .route("/ws", web::get().to(transport::websocket::handshake))
            .route("/sse", web::get().to(transport::sse::stream))
            .route("/stream", web::get().to(transport::stream::stream))
            .route(
                "/webtransport",
                web::get().to(transport::webtransport::info),
            )
            .route("/lab", web::get().to(crate::routes::lab::status))
            .route("/lab", web::post().to(crate::routes::lab::switch))
            .default_service(web::to(api_not_found)),
    );
}

/// Serves the built app from `--static-dir` at `/`, or, when it has not been built, a page that
/// says how to build it. A generator serves no app.
pub fn static_files(cfg: &mut web::ServiceConfig, config: &Config) {
    let dir = &config.static_dir;
    if config.role == Role::Generator {
        return;
    }
    if dir.join("index.html").is_file() {
        cfg.service(actix_files::Files::new("/", dir).index_file("index.html"));
    } else {
        cfg.route("/", web::get().to(app_not_built));
    }
}

async fn app_not_built() -> HttpResponse {
    HttpResponse::Ok().content_type(ContentType::html()).body(
        "<!doctype html><title>tickscope</title><h1>tickscope</h1>\
         <p>The server is running, but the browser app has not been built. \
         Run <code>just run</code> (or <code>trunk build --release</code>) and reload. \
         The API is under <a href=\"/api/snapshot\">/api</a>.</p>",
    )
}

async fn generator_api() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(
        "this is a generator (--role generator): it publishes to NATS and serves no clients; \
         connect to an edge"
            .into(),
    ))
}

async fn api_not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "no endpoint {} {}; see docs/API.md for the API",
        req.method(),
        req.path()
    )))
}

async fn symbols(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(SymbolList {
        symbols: state.universe().infos(),
    })
}

async fn snapshot(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let params = Params::parse(req.query_string())?;
    let filter = params.symbols(state.universe(), state.max_symbols())?;
    let (cursor, quotes) = state.feed.snapshot(&filter);
    Ok(json_body(encode::snapshot(cursor, &quotes)))
}

async fn history(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let params = Params::parse(req.query_string())?;
    let symbol = params
        .get("symbol")?
        .ok_or_else(|| InputError("symbol is required, for example ?symbol=ACME".into()))?;
    let id = state.universe().id(symbol).ok_or_else(|| {
        InputError(format!(
            "unknown symbol {symbol:?}; GET /api/symbols lists the known ones"
        ))
    })?;
    let seconds = params
        .number("seconds", u64::from(CANDLE_HISTORY_S))?
        .unwrap_or(300) as u32;
    Ok(HttpResponse::Ok().json(History {
        symbol: symbol.to_owned(),
        seconds,
        candles: state.feed.history(id, seconds),
    }))
}

async fn time() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(ServerTime {
            server_time: now_us(),
        })
}

/// The HTTP/1.1-only origin (`--http1-addr`) on the host the request named, so a page reached
/// by `localhost` or by an address gets an origin its certificate and its browser accept alike.
async fn origins(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let host = req.connection_info().host().to_owned();
    let name = match host.rsplit_once(':') {
        // Not the colons of an IPv6 address without a port (`[::1]`).
        Some((name, port)) if !port.contains(']') => name,
        _ => host.as_str(),
    };
    let http1 = state
        .config
        .http1_addr
        .map(|addr| format!("https://{name}:{}", addr.port()));
    let webtransport = state
        .webtransport
        .as_ref()
        .map(|endpoint| format!("https://{name}:{}", endpoint.port));
    HttpResponse::Ok().json(Origins {
        http1,
        webtransport,
    })
}

#[derive(Serialize)]
struct Health {
    /// `ok`; on an edge `stale` while the generator is silent; on a generator `disconnected`
    /// while NATS is away. The process serves on in every case.
    status: &'static str,
    cursor: u64,
    symbols: usize,
    uptime_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<ClusterHealth>,
}

async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    let cluster = state
        .cluster
        .as_ref()
        .map(|status| status.health(&state.feed));
    let status = match &cluster {
        Some(health) if health.feed == "stale" => "stale",
        Some(health) if health.broker == "disconnected" && health.role == "generator" => {
            "disconnected"
        }
        _ => "ok",
    };
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(Health {
            status,
            cursor: state.feed.head(),
            symbols: state.universe().len(),
            uptime_s: (now_us() - state.started_us) as f64 / 1e6,
            cluster,
        })
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    if let Some(status) = &state.cluster {
        // Staleness and backlog are read off the clock and the feed: bring them up to date.
        status.health(&state.feed);
    }
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(state.metrics.render())
}
