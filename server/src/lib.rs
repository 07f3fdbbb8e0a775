//! tickscope's server: one simulated stock-ticker feed, served four ways.
//!
//! - [`config`]: the settings, from flags and `TICKSCOPE_*` variables;
//! - [`symbols`]: the listed companies and symbol filters;
//! - [`simulator`]: the one task that makes ticks (Poisson arrivals, GBM prices);
//! - [`feed`]: publishing, the retained window, latest quotes, candles, and [`feed::Subscription`],
//!   a client's cursor into it;
//! - [`encode`]: batches written from pre-encoded ticks;
//! - [`http`]: the REST endpoints, polling and long polling; [`ws`]: WebSocket; [`sse`]:
//!   Server-Sent Events;
//! - [`query`] and [`error`]: decoding client input and answering its errors;
//! - [`metrics`]: the Prometheus series.
//!
//! [`run`] takes a bound listener and a shutdown future, so `main` and the tests drive the
//! same code.

pub mod clock;
pub mod config;
pub mod encode;
pub mod error;
pub mod feed;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod origin;
pub mod query;
pub mod simulator;
pub mod sse;
pub mod symbols;
pub mod ws;

use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;

use std::time::Duration;

use actix_cors::Cors;
use actix_web::middleware::Condition;
use actix_web::{App, HttpServer, web};
use anyhow::{Context, anyhow};
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use crate::config::Config;
use crate::feed::Feed;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::simulator::Simulator;
use crate::symbols::Universe;

/// What every handler shares.
pub struct AppState {
    pub config: Config,
    pub feed: Feed,
    pub metrics: Metrics,
    pub limits: Limits,
    /// Cancelled when the server shuts down: WebSocket and SSE loops end, long polls answer.
    pub shutdown: CancellationToken,
    /// Unix microseconds when the server started.
    pub started_us: i64,
}

impl AppState {
    pub fn universe(&self) -> &Universe {
        self.feed.universe()
    }

    pub fn max_batch_ticks(&self) -> usize {
        self.config.max_batch_ticks as usize
    }

    pub fn max_symbols(&self) -> usize {
        self.config.max_symbols as usize
    }
}

/// Serves on `listener` until `shutdown` resolves, then shuts down gracefully: WebSocket
/// clients get close 1001, held long polls are answered, SSE streams end, and open requests
/// get `shutdown_timeout_ms` to finish.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    config.validate().map_err(|err| anyhow!(err))?;
    let mut rng = Simulator::seeded_rng(config.seed);
    let universe = Arc::new(Universe::generate(config.symbols, &mut rng));
    let metrics = Metrics::new();
    let feed = Feed::new(
        universe.clone(),
        config.retention,
        config
            .seq_base
            .unwrap_or_else(|| clock::now_us().max(0) as u64),
        metrics.ticks_published.clone(),
        metrics.frames_encoded.clone(),
    )
    .conflate_after(config.conflate_after_ticks);
    let stop = CancellationToken::new();
    let simulator = Simulator::new(&universe, config.rate, config.speed, rng);
    let simulation = tokio::spawn(simulator::run(simulator, feed.clone(), stop.clone()));

    let workers = match config.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let shutdown_timeout_s = config.shutdown_timeout_ms.div_ceil(1000);
    let request_head_timeout_ms = config.request_head_timeout_ms;
    let state = web::Data::new(AppState {
        limits: Limits::new(&config),
        config,
        feed,
        metrics,
        shutdown: stop.clone(),
        started_us: clock::now_us(),
    });
    let addr = listener
        .local_addr()
        .context("reading the listener's address")?;
    let server = HttpServer::new(move || {
        App::new()
            .wrap(Condition::new(
                !state.config.cors_origins.is_empty(),
                cors(&state.config.cors_origins),
            ))
            .app_data(state.clone())
            .configure(http::routes)
            .configure(|cfg| http::static_files(cfg, &state.config.static_dir))
    })
    .workers(workers)
    // A feed's small writes go out at once, not held back for the peer's ACK (Nagle).
    .tcp_nodelay(true)
    .client_request_timeout(Duration::from_millis(request_head_timeout_ms))
    .disable_signals()
    .shutdown_timeout(shutdown_timeout_s)
    .listen(listener)
    .context("serving on the listener")?
    .run();
    info!(%addr, workers, "tickscope listening on http://{addr}");

    let handle = server.handle();
    let mut server = std::pin::pin!(server);
    tokio::select! {
        result = &mut server => result.context("the HTTP server stopped")?,
        () = shutdown => {
            info!("shutting down");
            stop.cancel();
            // `stop` sends its command at once; the server future must be polled to carry it out.
            let stopped = handle.stop(true);
            server.await.context("the HTTP server stopped")?;
            stopped.await;
        }
    }
    stop.cancel();
    simulation.await.context("the simulator task failed")?;
    info!("stopped");
    Ok(())
}

/// CORS for the HTTP API: GET from the configured origins only (`*` for any).
fn cors(origins: &[String]) -> Cors {
    let cors = Cors::default()
        .allowed_methods(["GET"])
        .allowed_header(actix_web::http::header::CONTENT_TYPE)
        .expose_headers([actix_web::http::header::RETRY_AFTER])
        .max_age(3600);
    if origins.iter().any(|origin| origin == "*") {
        return cors.allow_any_origin();
    }
    origins
        .iter()
        .fold(cors, |cors, origin| cors.allowed_origin(origin))
}
