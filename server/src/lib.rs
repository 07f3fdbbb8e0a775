//! tickscope's server: one simulated stock-ticker feed, served six ways.
//!
//! The folders follow the layers, each importing only those below it:
//! - [`feed`]: the simulator, the listed companies, the published ticks with their retained
//!   window, latest quotes and candles, and the batches framed once per cursor;
//! - [`transport`]: polling, long polling, WebSocket, Server-Sent Events, HTTP streaming and
//!   WebTransport, a file or folder each, with the fan-out that writes every publish to the
//!   push transports' sockets;
//! - [`connection`]: under every transport: the byte counting on each socket, TLS, dead
//!   peers, limits, origins, the WebSocket frame guard, certificates;
//! - [`routes`]: the REST endpoints and the route table;
//! - [`cluster`]: the generator and edge roles over NATS JetStream;
//! - [`config`], [`error`], [`query`] and [`metrics`]: the settings, the answers to bad input,
//!   decoding client input, and the Prometheus series.
//!
//! [`run`] takes a bound listener and a shutdown future, so `main` and the tests drive the
//! same code.

pub mod cluster;
pub mod config;
pub mod connection;
pub mod error;
pub mod feed;
pub mod metrics;
pub mod query;
pub mod routes;
pub mod transport;

use std::cell::OnceCell;
use std::future::Future;
use std::net::TcpListener;
use std::rc::Rc;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix_cors::Cors;
use actix_web::body::MessageBody;
use actix_web::dev::{Extensions, ServiceRequest, ServiceResponse};
use actix_web::middleware::{Condition, Next};
use actix_web::{App, HttpResponse, web};
use anyhow::{Context, anyhow};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::cluster::{Broker, ClusterMetrics, ClusterStatus};
pub use crate::config::{Config, Role};
use crate::connection::limits::Limits;
use crate::connection::wire::{Metered, Wire};
use crate::connection::{origin, peer, pieces, tls, wire};
use crate::feed::Feed;
use crate::feed::simulator::Simulator;
use crate::feed::symbols::Universe;
use crate::feed::{clock, simulator};
use crate::metrics::Metrics;
use crate::transport::websocket::upgrade;

/// What every handler shares.
pub struct AppState {
    pub config: Config,
    pub feed: Feed,
    pub metrics: Metrics,
    pub limits: Limits,
    /// Wire bytes per transport and the pages' meters.
    pub wire: Arc<Wire>,
    /// The broker side of a generator or an edge; `None` for `--role all`.
    pub cluster: Option<Arc<ClusterStatus>>,
    /// Cancelled when the server shuts down: WebSocket and SSE loops end, long polls answer.
    pub shutdown: CancellationToken,
    /// Unix microseconds when the server started.
    pub started_us: i64,
    /// The tasks of connections taken out of actix-http (WebSockets once upgraded, SSE and
    /// HTTP streaming over HTTP/1.1 once their head is written): shutdown waits for their
    /// ends before the workers stop.
    pub taken_over: TaskTracker,
    /// The WebTransport endpoint's port and certificates (`--webtransport-addr`).
    pub webtransport: Option<transport::webtransport::Endpointed>,
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
    mut config: Config,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    config.validate().map_err(|err| anyhow!(err))?;
    // The addresses actually bound (a test binds port 0): the page is told the HTTP/1.1 one,
    // and the origin checks know both as this server's own.
    config.addr = listener
        .local_addr()
        .context("reading the listener's address")?;
    let http1 = match config.http1_addr {
        Some(addr) => {
            let http1 =
                TcpListener::bind(addr).with_context(|| format!("binding --http1-addr {addr}"))?;
            config.http1_addr = Some(http1.local_addr().context("reading its address")?);
            Some(http1)
        }
        None => None,
    };
    // Bound before serving, so the page is told the port actually bound.
    let (webtransport, _webtransport_runtime) = match config.role {
        Role::Generator => (None, None),
        Role::All | Role::Edge => {
            match transport::webtransport::bind(&config, worker_threads(&config))? {
                Some((bound, runtime)) => (Some(bound), Some(runtime)),
                None => (None, None),
            }
        }
    };
    if let Some(bound) = &webtransport {
        config.webtransport_addr = Some(bound.addr);
    }
    let mut webtransport = webtransport;
    let mut shutdown = std::pin::pin!(shutdown);
    let stop = CancellationToken::new();
    let ready = Arc::new(OnceLock::new());
    let wire = Wire::new(
        &config.edge_name(),
        connection::forwarded::ClientAddr::new(&config.trusted_proxies),
    );
    let mut tasks = Vec::new();
    // The simulator is ready at once, before the first request.
    if config.role == Role::All {
        let source = Source::start(&config, &stop, &wire).await?;
        tasks = ready_state(&ready, source, &config, &stop, &wire, &mut webtransport);
    }
    let addr = config.addr;
    let server = http_server(listener, http1, &config, ready.clone(), wire.clone())?;
    let handle = server.handle();
    let mut server = std::pin::pin!(server);
    if ready.get().is_none() {
        // A generator or an edge waits on the broker, and an edge on its backfill; meanwhile
        // every request gets 503 "starting", so probes see a live process. Nothing hands over
        // between servers: the same server serves once the state is in place.
        info!(%addr, "starting: waiting for NATS");
        let started = tokio::select! {
            started = Source::start(&config, &stop, &wire) => Some(started),
            result = &mut server => {
                result.context("the HTTP server stopped")?;
                return Err(anyhow!("the HTTP server stopped while starting"));
            }
            () = &mut shutdown => None,
        };
        match started {
            Some(Ok(source)) => {
                tasks = ready_state(&ready, source, &config, &stop, &wire, &mut webtransport)
            }
            stopped_or_failed => {
                stop.cancel();
                let stopped = handle.stop(true);
                server.await.context("the HTTP server stopped")?;
                stopped.await;
                return match stopped_or_failed {
                    Some(Err(err)) => Err(err),
                    _ => {
                        info!("stopped before serving");
                        Ok(())
                    }
                };
            }
        }
    }
    let scheme = if config.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    match config.http1_addr {
        Some(http1) => {
            info!(%addr, %http1, "tickscope listening on {scheme}://{addr} (HTTP/1.1 only on {scheme}://{http1})")
        }
        None => info!(%addr, "tickscope listening on {scheme}://{addr}"),
    }

    tokio::select! {
        result = &mut server => result.context("the HTTP server stopped")?,
        () = &mut shutdown => {
            info!("shutting down");
            stop.cancel();
            if let Some(state) = ready.get() {
                // Taken-over connections end as `stop` tells them (WebSockets with 1001 and
                // the close handshake), on the workers, which stop after.
                state.taken_over.close();
                let limit = Duration::from_millis(config.shutdown_timeout_ms);
                if tokio::time::timeout(limit, state.taken_over.wait()).await.is_err() {
                    tracing::warn!("streams still closing after the shutdown timeout");
                }
            }
            // `stop` sends its command at once; the server future must be polled to carry it out.
            let stopped = handle.stop(true);
            server.await.context("the HTTP server stopped")?;
            stopped.await;
        }
    }
    stop.cancel();
    for task in tasks {
        task.await.context("a feed task failed")?;
    }
    info!("stopped");
    Ok(())
}

/// `--workers`, with 0 as one per core.
fn worker_threads(config: &Config) -> usize {
    match config.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// Puts the started feed in place for every worker; returns its tasks.
fn ready_state(
    ready: &OnceLock<web::Data<AppState>>,
    source: Source,
    config: &Config,
    stop: &CancellationToken,
    wire: &Arc<Wire>,
    webtransport: &mut Option<transport::webtransport::Bound>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let Source {
        feed,
        metrics,
        cluster,
        mut tasks,
    } = source;
    let state = web::Data::new(AppState {
        limits: Limits::new(config),
        wire: wire.clone(),
        config: config.clone(),
        feed,
        metrics,
        cluster,
        shutdown: stop.clone(),
        started_us: clock::now_us(),
        taken_over: TaskTracker::new(),
        webtransport: webtransport
            .as_ref()
            .map(|bound| transport::webtransport::Endpointed {
                port: bound.addr.port(),
                certificates: bound.certificates.clone(),
            }),
    });
    if let Some(bound) = webtransport.take() {
        let handle = bound.handle.clone();
        tasks.push(handle.spawn(transport::webtransport::serve(
            bound,
            state.clone().into_inner(),
        )));
    }
    if ready.set(state).is_err() {
        unreachable!("the state is put in place once");
    }
    tasks
}

/// The HTTP server on `listener`, already accepting. Its routes need only the config; the
/// state they serve comes through [`Gate`] once it is in `ready`.
///
/// This is what `actix_web::HttpServer` builds, with one difference: each accepted socket is
/// wrapped in [`Metered`], which counts every byte on it for [`wire`]; `HttpServer` hands
/// actix-http the bare `TcpStream`.
fn http_server(
    listener: TcpListener,
    http1: Option<TcpListener>,
    config: &Config,
    ready: Arc<OnceLock<web::Data<AppState>>>,
    wire: Arc<Wire>,
) -> anyhow::Result<actix_web::dev::Server> {
    let workers = worker_threads(config);
    let dead_peer_timeout = Duration::from_millis(config.dead_peer_timeout_ms);
    let request_head_timeout = Duration::from_millis(config.request_head_timeout_ms);
    let acceptor = |alpn| match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => tls::acceptor(cert, key, alpn).map(Some),
        _ => Ok(None),
    };
    let builder = actix_server::Server::build();
    let graceful = builder.graceful_shutdown_signal();
    // One listener's connections: accepted, counted, under TLS offering `tls`'s protocols, then
    // served by actix-http with the app. Both listeners serve the same app and state.
    let connections = |listener: &TcpListener, tls: Option<tokio_rustls::TlsAcceptor>| {
        let addr = listener
            .local_addr()
            .context("reading the listener's address")?;
        let app_config = config.clone();
        let (ready, wire, graceful) = (ready.clone(), wire.clone(), graceful.clone());
        anyhow::Ok(move || {
            let app_config_fn = move |()| {
                // What `HttpServer` passes: this address as the host a request without a
                // Host header is taken to name.
                actix_web::dev::AppConfig::__priv_test_new(false, addr.to_string(), addr)
            };
            // Upgrade requests come with their connection, which a WebSocket keeps.
            let upgrade = upgrade::factory(actix_service::map_config(
                app(&app_config, ready.clone(), wire.clone()),
                app_config_fn,
            ));
            let app = app(&app_config, ready.clone(), wire.clone());
            let graceful = graceful.clone();
            let http = actix_http::HttpService::build()
                .graceful_shutdown_signal(move || {
                    let graceful = graceful.clone();
                    async move { graceful.notified().await }
                })
                .client_request_timeout(request_head_timeout)
                .client_disconnect_timeout(Duration::from_secs(1))
                .h1_allow_half_closed(true)
                // With bodies in pieces, a connection's write buffer keeps its first size
                // (`pieces`).
                .h1_write_buffer_size(pieces::PIECE)
                .local_addr(addr)
                .on_connect_ext(|io: &tls::Io, extensions| {
                    if let (Some(connection), Some(tcp)) = (io.connection(), io.tcp()) {
                        extensions.insert(connection.clone());
                        peer::on_connect(tcp, extensions);
                    }
                })
                .upgrade(upgrade)
                .finish(actix_service::map_config(app, app_config_fn));
            let (wire, tls) = (wire.clone(), tls.clone());
            use actix_service::ServiceFactoryExt;
            actix_service::fn_service(move |io: actix_web::rt::net::TcpStream| {
                let peer_addr = io.peer_addr().ok();
                // A feed's small writes go out at once, not held back for the peer's ACK
                // (Nagle).
                if let Err(err) = io.set_nodelay(true) {
                    tracing::debug!("setting TCP_NODELAY: {err}");
                }
                peer::detect_dead(&io, dead_peer_timeout);
                let io = Metered::new(io, wire.connection());
                let tls = tls.clone();
                async move {
                    match tls::Io::accept(io, tls.as_ref(), request_head_timeout).await {
                        Ok((io, protocol)) => Ok((io, protocol, peer_addr)),
                        Err(err) => {
                            // A client that is not speaking TLS, or gave up: its own affair.
                            tracing::debug!(?peer_addr, "TLS handshake failed: {err}");
                            Err(actix_http::error::DispatchError::Io(err))
                        }
                    }
                }
            })
            .and_then(http)
        })
    };
    let main = connections(&listener, acceptor(tls::BOTH)?)?;
    let mut builder = builder
        .workers(workers)
        .disable_signals()
        .shutdown_timeout(config.shutdown_timeout_ms.div_ceil(1000))
        .listen("tickscope", listener, main)
        .context("serving on the listener")?;
    if let Some(http1) = http1 {
        let factory = connections(&http1, acceptor(tls::HTTP1_ONLY)?)?;
        builder = builder
            .listen("tickscope-http1", http1, factory)
            .context("serving on the HTTP/1.1 listener")?;
    }
    let server = builder.run();
    info!(workers, "HTTP server started");
    Ok(server)
}

/// The app one worker serves.
fn app(
    config: &Config,
    ready: Arc<OnceLock<web::Data<AppState>>>,
    wire: Arc<Wire>,
) -> App<
    impl actix_web::dev::ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody + use<>>,
        Error = actix_web::Error,
        InitError = (),
    > + use<>,
> {
    let gate = Rc::new(Gate {
        ready,
        data: OnceCell::new(),
        role: config.role,
    });
    let cross_origin = !config.cors_origins.is_empty() || config.http1_addr.is_some();
    let edge_name: Rc<str> = config.edge_name().into();
    App::new()
        .wrap(actix_web::middleware::from_fn(move |req, next| {
            routes::edge::name_the_edge(edge_name.clone(), req, next)
        }))
        .wrap(actix_web::middleware::from_fn(pieces::in_pieces))
        .wrap(Condition::new(cross_origin, cors(config)))
        .wrap(Condition::new(
            cross_origin,
            actix_web::middleware::from_fn(timing_allowed),
        ))
        .wrap(actix_web::middleware::from_fn(move |req, next| {
            Gate::pass(gate.clone(), req, next)
        }))
        // Outermost: every request is charged its bytes, a 503 while starting too.
        .wrap_fn(move |req, service| wire::attribute(&wire, req, service))
        .configure(|cfg| routes::routes(cfg, config.role))
        .configure(|cfg| routes::static_files(cfg, config))
}

/// Per worker: lets requests through to the routes once the state is ready, with the state
/// as their app data; until then answers 503 "starting" with `Retry-After`.
struct Gate {
    ready: Arc<OnceLock<web::Data<AppState>>>,
    /// This worker's app data, made once from `ready`.
    data: OnceCell<Rc<Extensions>>,
    role: Role,
}

impl Gate {
    fn data(&self) -> Option<Rc<Extensions>> {
        let state = self.ready.get()?;
        let data = self.data.get_or_init(|| {
            let mut data = Extensions::new();
            data.insert(state.clone());
            Rc::new(data)
        });
        Some(data.clone())
    }

    async fn pass(
        gate: Rc<Gate>,
        mut req: ServiceRequest,
        next: Next<impl MessageBody + 'static>,
    ) -> Result<ServiceResponse, actix_web::Error> {
        let Some(data) = gate.data() else {
            let waiting = if gate.role == Role::Edge {
                "NATS and its backfill"
            } else {
                "NATS"
            };
            let response = HttpResponse::ServiceUnavailable()
                .insert_header((actix_web::http::header::RETRY_AFTER, "1"))
                .json(serde_json::json!({
                    "status": "starting",
                    "error": format!("starting: this {} is waiting for {waiting}", gate.role.as_str()),
                }));
            return Ok(req.into_response(response));
        };
        req.add_data_container(data);
        Ok(next.call(req).await?.map_into_boxed_body())
    }
}

/// Where the served feed comes from, by role, and the tasks that keep it going.
struct Source {
    feed: Feed,
    metrics: Metrics,
    cluster: Option<Arc<ClusterStatus>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Source {
    /// `all`: the simulator into the feed. `generator`: the same, forwarded to NATS. `edge`:
    /// the feed followed from NATS, backfilled before this returns.
    async fn start(config: &Config, stop: &CancellationToken, wire: &Wire) -> anyhow::Result<Self> {
        let mut rng = Simulator::seeded_rng(config.seed);
        let generated = Universe::generate(config.symbols, &mut rng);
        let mut metrics = Metrics::new();
        wire.register(metrics.registry());
        let seq_base = config
            .seq_base
            .unwrap_or_else(|| clock::now_us().max(0) as u64);
        let new_feed = |universe: Universe, seq_base: u64, metrics: &Metrics| {
            Feed::new(
                Arc::new(universe),
                config.retention,
                seq_base,
                metrics.ticks_published.clone(),
                metrics.frames_encoded.clone(),
            )
            .conflate_after(config.conflate_after_ticks)
        };
        if config.role == Role::All {
            let feed = new_feed(generated, seq_base, &metrics);
            let simulator = Simulator::new(feed.universe(), config.rate, config.speed, rng);
            // The opening quotes are in the feed before the first request.
            let tasks = vec![tokio::spawn(simulator::start(
                simulator,
                feed.clone(),
                stop.clone(),
            ))];
            return Ok(Self {
                feed,
                metrics,
                cluster: None,
                tasks,
            });
        }
        let status = Arc::new(ClusterStatus::new(
            config,
            ClusterMetrics::register(&mut metrics),
        ));
        let broker = Broker::connect(config, status.clone()).await?;
        let mut tasks = Vec::new();
        let feed = if config.role == Role::Generator {
            let start = cluster::start_generator(&broker, config, generated, stop).await?;
            // A seq base given on the command line wins; otherwise go on after the stream.
            let seq_base = match (config.seq_base, start.last_seq) {
                (None, Some(last)) => last,
                _ => seq_base,
            };
            let feed = new_feed(start.universe, seq_base, &metrics);
            let mut simulator = Simulator::new(feed.universe(), config.rate, config.speed, rng);
            simulator.resume_prices(&start.prices);
            tasks.push(tokio::spawn(cluster::forward(
                feed.clone(),
                broker.clone(),
                status.clone(),
                stop.clone(),
            )));
            tasks.push(tokio::spawn(cluster::heartbeat(
                feed.clone(),
                broker.clone(),
                status.clone(),
                stop.clone(),
            )));
            // Started in its task, after `forward` has taken the feed's head: the opening
            // quotes go to NATS like every tick.
            tasks.push(tokio::spawn({
                let (feed, stop) = (feed.clone(), stop.clone());
                async move { simulator::start(simulator, feed, stop).await }
            }));
            feed
        } else {
            let universe = cluster::start_edge(&broker, stop).await?;
            // Before the first tick the head is 0: every client cursor waits or is a gap.
            let feed = new_feed(universe, 0, &metrics).wait_ahead(config.retention);
            let (from, to) = cluster::backfill_range(&broker, config.retention, stop).await?;
            info!(from, to, "backfilling from the stream");
            tasks.push(tokio::spawn(cluster::follow(
                feed.clone(),
                broker.clone(),
                status.clone(),
                from,
                stop.clone(),
            )));
            tasks.push(tokio::spawn(cluster::watch_heartbeat(
                broker.clone(),
                status.clone(),
                stop.clone(),
            )));
            cluster::caught_up(&feed, &status, to, stop).await;
            info!(head = feed.head(), "backfilled; serving");
            feed
        };
        Ok(Self {
            feed,
            metrics,
            cluster: Some(status),
            tasks,
        })
    }
}

/// CORS for the HTTP API: GET from the origins of `--cors-origins` (`*` for any), and with
/// `--http1-addr` from the server's sibling port (`origin::sibling`), exposing the meter's
/// report. A request from any other origin goes on without CORS headers (the browser keeps the
/// answer from the page); streams check origins themselves (`origin::check`).
fn cors(config: &Config) -> Cors {
    let cors = Cors::default()
        .allowed_methods(["GET"])
        .allowed_header(actix_web::http::header::CONTENT_TYPE)
        .expose_headers([
            actix_web::http::header::RETRY_AFTER,
            actix_web::http::header::HeaderName::from_static(
                tickscope_shared::wire::WireReport::HEADER,
            ),
            actix_web::http::header::HeaderName::from_static(
                tickscope_shared::wire::EdgeHeader::HEADER,
            ),
        ])
        .block_on_origin_mismatch(false)
        .max_age(3600);
    if config.cors_origins.iter().any(|origin| origin == "*") {
        return cors.allow_any_origin();
    }
    let config = config.clone();
    cors.allowed_origin_fn(move |origin, head| {
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        let host = head
            .headers()
            .get(actix_web::http::header::HOST)
            .and_then(|host| host.to_str().ok());
        config
            .cors_origins
            .iter()
            .any(|listed| listed.eq_ignore_ascii_case(origin))
            || host.is_some_and(|host| origin::sibling(origin, host, &config))
    })
}

/// Lets a page the answer is shared with (CORS) read its Resource Timing too, which the page
/// times clock exchanges by and reads each transport's HTTP version from.
async fn timing_allowed(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let mut res = next.call(req).await?;
    let headers = res.headers_mut();
    if let Some(origin) = headers
        .get(actix_web::http::header::ACCESS_CONTROL_ALLOW_ORIGIN)
        .cloned()
    {
        headers.insert(
            actix_web::http::header::HeaderName::from_static("timing-allow-origin"),
            origin,
        );
    }
    Ok(res)
}
