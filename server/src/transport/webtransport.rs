//! WebTransport over HTTP/3: a QUIC stream per batch, so a lost packet holds up only the batch
//! it carried.
//!
//! The endpoint listens on its own UDP port (`--webtransport-addr`) with a certificate the
//! server makes and rotates ([`crate::connection::certs`]); pages read its URL and the hashes to pin from
//! `GET /api/webtransport` ([`info`]).
//!
//! A session is opened to `/api/webtransport?since=N&symbols=...&meter=...&reconnect=...`
//! (the parameters of SSE and HTTP streaming) and checked as they are: origin, admission
//! limits, input. Refused before the session: 404 (another path), 403 (origin), 429 (limits).
//! Bad input is answered by closing the session with code 1008 and a reason.
//!
//! Then:
//! - the client opens one bidirectional stream, the control stream. The server's first line
//!   on it is `{"type":"subscribed","cursor":c}`; then heartbeats, pongs and, on a metered
//!   session, wire reports every second, one JSON message per line (HTTP streaming's).
//!   The client may send `{"type":"ping","t":..}` lines on it; the answer is a pong.
//! - each batch goes on a unidirectional stream of its own, one line
//!   `{"type":"batch","after":a,"cursor":c,...}` and the stream's end. Streams are independent,
//!   so batches may arrive out of order; `after` (the cursor it continues from) lets the
//!   client put them back (`tickscope_shared::cursor::Reorder`). Batches start once the
//!   control stream is open, after its first line.
//!
//! A session that takes no batch for `--slow-client-timeout-ms` is closed as too slow (1008);
//! one that is silent past `--ws-client-timeout-ms` (QUIC's idle timeout, with the server's
//! keep-alives every `--ws-heartbeat-ms`) is gone and counted as a dead peer. Shutdown closes
//! every session with 1001. Close codes are WebSocket's, sent as QUIC application codes.
//!
//! Wire bytes are QUIC's own count of the session's UDP payloads, both ways
//! ([`crate::connection::wire::Wire::quic`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use actix_web::{HttpRequest, HttpResponse, web};
use anyhow::Context;
use bytes::{Bytes, BytesMut};
use tickscope_shared::wire::{ClientMessage, ServerMessage, WebTransportInfo};
use tokio::sync::watch;
use tokio::time::{Instant, interval_at};
use tracing::{debug, info, warn};
use wtransport::config::ServerConfigBuilder;
use wtransport::config::states::WantsIdentity;
use wtransport::endpoint::IncomingSession;
use wtransport::endpoint::endpoint_side::Server;
use wtransport::error::ConnectionError;
use wtransport::{Connection, Endpoint, Identity, RecvStream, SendStream, ServerConfig, VarInt};

use crate::AppState;
use crate::config::Config;
use crate::connection::certs::Certificates;
use crate::connection::limits::{Kind, Slot};
use crate::connection::origin;
use crate::connection::wire::{self, Meter};
use crate::error::ApiError;
use crate::feed::Subscription;
use crate::feed::clock::now_us;
use crate::feed::encode::Framing;
use crate::metrics::Transport;
use crate::query::{InputError, Params};

use super::websocket::{self, MessageBudget};

/// The session's path.
pub const PATH: &str = "/api/webtransport";

/// Close codes, as WebSocket's (RFC 6455 section 7.4.1).
mod code {
    pub const AWAY: u32 = 1001;
    pub const POLICY: u32 = 1008;
    pub const TOO_BIG: u32 = 1009;
}

/// The endpoint, bound, with the certificates it presents.
pub struct Bound {
    endpoint: Endpoint<Server>,
    pub certificates: Arc<Certificates>,
    pub addr: SocketAddr,
    /// Where the endpoint, its connections and its sessions run ([`Runtime`]).
    pub handle: tokio::runtime::Handle,
}

/// WebTransport's own runtime, one thread per HTTP worker (`--workers`).
///
/// QUIC runs in user space: every packet of every session is numbered, encrypted, sent,
/// acknowledged and retransmitted by quinn's tasks, several times the CPU a WebSocket costs
/// per batch. On the runtime `main` runs (one thread, the simulator's) WebTransport could
/// use one core whatever the machine had, and a busy endpoint would delay the feed itself.
/// Here its connections spread over as many threads as the HTTP server has, and the feed
/// keeps its own thread.
///
/// Owned by [`crate::run`] and shut down when it returns (without waiting, so it may be
/// dropped where blocking is not allowed: the sessions have ended by then).
pub struct Runtime(Option<tokio::runtime::Runtime>);

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Binds `--webtransport-addr` with a fresh certificate, on a runtime of its own; `None` when
/// it is not set.
pub fn bind(config: &Config, threads: usize) -> anyhow::Result<Option<(Bound, Runtime)>> {
    let Some(addr) = config.webtransport_addr else {
        return Ok(None);
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name("webtransport")
        .enable_all()
        .build()
        .context("starting WebTransport's threads")?;
    let handle = runtime.handle().clone();
    // quinn takes the runtime it is made in: its socket and drivers go on these threads.
    let bound = {
        let _inside = handle.enter();
        bind_endpoint(config, addr, handle.clone())?
    };
    Ok(Some((bound, Runtime(Some(runtime)))))
}

fn bind_endpoint(
    config: &Config,
    addr: SocketAddr,
    handle: tokio::runtime::Handle,
) -> anyhow::Result<Bound> {
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let ip = addr.ip().to_string();
    if !addr.ip().is_unspecified() && !names.contains(&ip) {
        names.push(ip);
    }
    let certificates = Certificates::new(names, config.webtransport_cert_lifetime())?;
    let bound = ServerConfig::builder().with_bind_socket(udp_socket(addr)?);
    // `udp_socket` has bound the address; what fails here is quinn taking the socket on.
    let endpoint = Endpoint::server(server_config(bound, certificates.identity(), config)?)
        .with_context(|| format!("starting the WebTransport endpoint on {addr} (UDP)"))?;
    let addr = endpoint
        .local_addr()
        .context("reading the WebTransport endpoint's address")?;
    Ok(Bound {
        endpoint,
        certificates,
        addr,
        handle,
    })
}

/// The endpoint's configuration, bound as `bind` says: its own socket at the start, the
/// address alone for a new certificate (the endpoint keeps the socket it has).
fn server_config(
    bind: ServerConfigBuilder<WantsIdentity>,
    identity: Identity,
    config: &Config,
) -> anyhow::Result<ServerConfig> {
    Ok(bind
        .with_custom_transport(identity, bounded())
        .keep_alive_interval(Some(config.ws_heartbeat()))
        .max_idle_timeout(Some(config.ws_client_timeout()))
        .context("--ws-client-timeout-ms is too long for QUIC's idle timeout")?
        .build())
}

/// The endpoint's UDP socket at `addr`, with a receive buffer of [`RECEIVE_BUFFER`] bytes
/// where the kernel allows it. Every client's packets arrive on this one socket; with the
/// default buffer (208 KiB on Linux) a thousand sessions' acknowledgements after one fan-out
/// pass overflow it while the endpoint is busy, and each packet the kernel drops there is one
/// QUIC must detect as lost and send again. As quic-go, a smaller buffer is a warning with the
/// setting to raise, not an error.
fn udp_socket(addr: SocketAddr) -> anyhow::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
        .context("making the WebTransport endpoint's UDP socket")?;
    // The kernel caps the size at net.core.rmem_max without an error, and reports double
    // what it set (its bookkeeping overhead).
    let granted = socket
        .set_recv_buffer_size(RECEIVE_BUFFER)
        .and_then(|()| socket.recv_buffer_size())
        .map(|doubled| doubled / 2)
        .unwrap_or(0);
    if granted < RECEIVE_BUFFER {
        warn!(
            "WebTransport's UDP receive buffer is {} KiB, not the {} KiB asked: under load the \
             kernel drops packets QUIC must send again (raise it with \
             `sysctl -w net.core.rmem_max={RECEIVE_BUFFER}`)",
            granted / 1024,
            RECEIVE_BUFFER / 1024
        );
    }
    socket
        .bind(&addr.into())
        .with_context(|| format!("binding --webtransport-addr {addr} (UDP)"))?;
    Ok(socket.into())
}

/// The receive buffer asked for the endpoint's socket: room for some 4,000 small packets (a
/// packet of a few hundred bytes takes about 1 KiB of it), four acknowledgements from each of
/// a thousand sessions.
const RECEIVE_BUFFER: usize = 4 << 20;

/// What one client may make the server hold: quinn's defaults take 1.25 MB per stream on up
/// to 100 streams each way, with no limit for the connection. A session needs the HTTP/3
/// request stream and the control stream (bidirectional), and HTTP/3's control and QPACK
/// streams (unidirectional); what a client sends past these windows waits on its side.
fn bounded() -> wtransport::config::QuicTransportConfig {
    let mut transport = wtransport::config::QuicTransportConfig::default();
    transport
        .max_concurrent_bidi_streams(4u32.into())
        .max_concurrent_uni_streams(8u32.into())
        .stream_receive_window(STREAM_WINDOW.into())
        .receive_window((4 * STREAM_WINDOW).into())
        .datagram_receive_buffer_size(Some(16 * 1024));
    transport
}

/// The most a client may have in flight on one of its streams, in bytes.
const STREAM_WINDOW: u32 = 64 * 1024;

/// What `GET /api/webtransport` reads: the endpoint's port and certificates.
pub struct Endpointed {
    pub port: u16,
    pub certificates: Arc<Certificates>,
}

/// `GET /api/webtransport`: the session URL (`--webtransport-url`, the loopback address the
/// endpoint listens on, or else the host the page asked by), and the certificate hashes to pin; 404 when the server has no WebTransport endpoint.
pub async fn info(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let Some(endpoint) = &state.webtransport else {
        return Err(ApiError::NotFound(
            "this server has no WebTransport endpoint (start it with --webtransport-addr)".into(),
        ));
    };
    let url = match (
        &state.config.webtransport_url,
        state.config.webtransport_addr,
    ) {
        (Some(public), _) => format!("{public}{PATH}"),
        // On loopback, the address itself: a browser may try only ::1 for `localhost` over
        // QUIC, where the endpoint listens on 127.0.0.1 (there is no happy eyeballs for it).
        (None, Some(addr)) if addr.ip().is_loopback() => format!("https://{addr}{PATH}"),
        (None, _) => {
            let host = req.connection_info().host().to_owned();
            let name = match host.rsplit_once(':') {
                Some((name, port)) if port.bytes().all(|byte| byte.is_ascii_digit()) => name,
                _ => host.as_str(),
            };
            format!("https://{name}:{}{PATH}", endpoint.port)
        }
    };
    Ok(HttpResponse::Ok()
        .insert_header(("cache-control", "no-store"))
        .json(WebTransportInfo {
            url,
            certificate_hashes: endpoint.certificates.hashes(),
        }))
}

/// Accepts sessions until shutdown, and rotates the certificate on schedule.
pub async fn serve(bound: Bound, state: Arc<AppState>) {
    let Bound {
        endpoint,
        certificates,
        addr,
        handle: _,
    } = bound;
    info!(%addr, "WebTransport listening on https://{addr}{PATH} (UDP)");
    let shutdown = state.shutdown.clone();
    let pacing = Pacing::start(&state);
    loop {
        let (step, due) = certificates.next_step();
        let wait = due
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        tokio::select! {
            () = shutdown.cancelled() => break,
            incoming = endpoint.accept() => {
                tokio::spawn(session(incoming, state.clone(), pacing.clone()));
            }
            () = tokio::time::sleep(wait) => {
                match certificates.take(step) {
                    Ok(Some(identity)) => {
                        let bind = ServerConfig::builder().with_bind_address(addr);
                        match server_config(bind, identity, &state.config) {
                            Ok(config) => match endpoint.reload_config(config, false) {
                                Ok(()) => info!("WebTransport certificate rotated"),
                                Err(err) => warn!("presenting the new certificate: {err}"),
                            },
                            Err(err) => warn!("{err:#}"),
                        }
                    }
                    Ok(None) => debug!("WebTransport certificate's successor made"),
                    Err(err) => {
                        warn!("{err:#}; trying again in a minute");
                        tokio::time::sleep(Duration::from_secs(60)).await;
                    }
                }
            }
        }
    }
    // Sessions close themselves with 1001 on the same signal; the endpoint waits for them
    // a moment, then goes.
    let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
}

/// A session's parameters, from its URL's query.
struct Asked {
    since: Option<u64>,
    filter: crate::feed::symbols::SymbolFilter,
    meter: Option<Arc<Meter>>,
}

fn asked(query: &str, peer: SocketAddr, state: &AppState) -> Result<Asked, String> {
    let params = Params::parse(query).map_err(|err| err.0)?;
    let since = params.since().map_err(|err| err.0)?;
    let filter = params
        .symbols(state.universe(), state.max_symbols())
        .map_err(|err| err.0)?;
    if let Some(reason) = params.reconnect().map_err(|err| err.0)? {
        state.metrics.reconnected(Transport::WebTransport, reason);
    }
    let meter = match params.get("meter").map_err(|err| err.0)? {
        Some(name) => state
            .wire
            .session_meter(peer.ip(), name)
            .map_err(|err| err.to_string())?,
        None => None,
    };
    Ok(Asked {
        since,
        filter,
        meter,
    })
}

/// When the sessions send, decided as the WebSocket fan-out decides its passes: after a
/// publish, they wait until the oldest tick not yet sent is `--fanout-wait` times as old as
/// the last pass took (`Config::fanout_wait`), then all send. A batch is a stream and a packet
/// of its own however few ticks it carries, and the client's acknowledgement another packet;
/// the wait lets ticks close together share them. A pass is from the signal to the moment the
/// last session finished its batches.
#[derive(Clone)]
struct Pacing {
    /// The head seq when the sessions were last told to send.
    go: watch::Receiver<u64>,
    /// When a session last finished sending, in microseconds from `epoch`.
    finished: Arc<AtomicU64>,
    epoch: Instant,
}

impl Pacing {
    /// Starts the task that signals the passes; it ends with the feed or the server.
    fn start(state: &Arc<AppState>) -> Pacing {
        let mut published = state.feed.subscribe();
        let head = *published.borrow_and_update();
        let (signal, go) = watch::channel(head);
        let pacing = Pacing {
            go,
            finished: Arc::new(AtomicU64::new(0)),
            epoch: Instant::now(),
        };
        let (state, pace) = (state.clone(), pacing.clone());
        tokio::spawn(async move {
            let mut sent = head;
            let mut began = Duration::ZERO;
            loop {
                tokio::select! {
                    () = state.shutdown.cancelled() => break,
                    changed = published.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        let finished = Duration::from_micros(pace.finished.load(Ordering::Relaxed));
                        let last_pass = finished.saturating_sub(began);
                        super::fanout::wait_before_pass(&state, sent, last_pass).await;
                        sent = *published.borrow_and_update();
                        began = pace.epoch.elapsed();
                        signal.send_replace(sent);
                    }
                }
            }
        });
        pacing
    }

    /// Notes that a session has sent what the last signal let it.
    fn finished(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.finished.fetch_max(now, Ordering::Relaxed);
    }
}

/// One session, from the client's request to its end.
async fn session(incoming: IncomingSession, state: Arc<AppState>, pacing: Pacing) {
    let request = match incoming.await {
        Ok(request) => request,
        Err(err) => {
            debug!("WebTransport handshake failed: {err}");
            return;
        }
    };
    state
        .metrics
        .transport(Transport::WebTransport)
        .requests
        .inc();
    let (path, query) = request
        .path()
        .split_once('?')
        .unwrap_or((request.path(), ""));
    if path != PATH {
        request.not_found().await;
        return;
    }
    let query = query.to_owned();
    if let Err(refused) =
        origin::check_webtransport(request.origin(), request.authority(), &state.config)
    {
        debug!("{refused}");
        request.forbidden().await;
        return;
    }
    let peer = request.remote_address();
    let slot = match state.limits.admit(peer.ip(), Kind::Stream) {
        Ok(slot) => slot,
        Err(err) => {
            debug!("WebTransport session refused: {err}");
            request.too_many_requests().await;
            return;
        }
    };
    let asked = asked(&query, peer, &state);
    let connection = match request.accept().await {
        Ok(connection) => connection,
        Err(err) => {
            debug!("WebTransport session not accepted: {err}");
            return;
        }
    };
    match asked {
        Ok(asked) => run(connection, asked, slot, &state, pacing).await,
        Err(reason) => close(&connection, code::POLICY, &reason),
    }
}

fn close(connection: &Connection, code: u32, reason: &str) {
    let mut end = reason.len().min(1024);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    connection.close(VarInt::from_u32(code), &reason.as_bytes()[..end]);
}

/// The control stream: the client's lines in, the server's lines out.
struct Control {
    send: SendStream,
    recv: RecvStream,
    read: BytesMut,
}

/// How a session ended, when the server ends it.
enum End {
    Close(u32, String),
    /// The connection is gone (the client closed it, or QUIC gave up on it).
    Gone,
}

async fn run(connection: Connection, asked: Asked, _slot: Slot, state: &AppState, pacing: Pacing) {
    let _client = state.metrics.client(Transport::WebTransport);
    let Asked {
        since,
        filter,
        meter,
    } = asked;
    // Fixed now: a session without `since` starts at the head as it opens.
    let mut subscription = Subscription::new(&state.feed, filter, since);
    let mut published = pacing.go.clone();
    let mut control: Option<Control> = None;
    let mut charged = Charged::default();
    let slow = state.config.slow_client_timeout();
    let heartbeat_every = state.config.ws_heartbeat();
    let mut heartbeat = interval_at(Instant::now() + heartbeat_every, heartbeat_every);
    let mut report = interval_at(Instant::now() + wire::REPORT_EVERY, wire::REPORT_EVERY);
    let mut budget = MessageBudget::new(state.config.max_ws_messages_per_s);
    let max_line = usize::try_from(state.config.max_ws_message_bytes).unwrap_or(usize::MAX);
    let mut feed_gone = false;

    let end = loop {
        tokio::select! {
            () = state.shutdown.cancelled() => {
                break End::Close(code::AWAY, "server shutting down".into());
            }
            gone = connection.closed() => {
                if matches!(gone, ConnectionError::TimedOut) {
                    debug!("WebTransport client silent for too long");
                    state.metrics.transport(Transport::WebTransport).dead_peers.inc();
                }
                break End::Gone;
            }
            opened = connection.accept_bi(), if control.is_none() => {
                let Ok((send, recv)) = opened else { break End::Gone };
                let mut opened = Control { send, recv, read: BytesMut::new() };
                let first = ServerMessage::Subscribed { cursor: subscription.cursor() };
                if let Err(end) = opened.send(state, &first, slow).await {
                    break end;
                }
                control = Some(opened);
                // Seen before the feed is read, so a publish in between wakes the loop again.
                published.borrow_and_update();
                if let Err(end) = send_batches(&connection, state, &mut subscription).await {
                    break end;
                }
            }
            _ = connection.accept_uni() => {
                break End::Close(
                    code::POLICY,
                    "the client sends on its control stream only, not streams of its own".into(),
                );
            }
            read = read_some(control.as_mut()), if control.is_some() => {
                let Some(control) = control.as_mut() else { continue };
                match read {
                    Ok(true) => {}
                    Ok(false) | Err(_) => break End::Close(
                        code::POLICY,
                        "the control stream was closed".into(),
                    ),
                }
                if let Err(end) = control.answer(state, &mut budget, max_line, slow).await {
                    break end;
                }
            }
            changed = published.changed(), if control.is_some() && !feed_gone => {
                if changed.is_err() {
                    feed_gone = true;
                    continue;
                }
                published.borrow_and_update();
                if let Err(end) = send_batches(&connection, state, &mut subscription).await {
                    break end;
                }
                // One still sending at the next signal (its client slow to take streams)
                // ends no pass: the others' passes would wait on it.
                if matches!(published.has_changed(), Ok(false)) {
                    pacing.finished();
                }
            }
            _ = report.tick() => {
                charged.charge(&connection, state, meter.as_ref());
                let (Some(meter), Some(control)) = (&meter, control.as_mut()) else { continue };
                if let Err(end) = control.send(state, &ServerMessage::Wire(meter.report()), slow).await {
                    break end;
                }
            }
            _ = heartbeat.tick(), if control.is_some() => {
                let Some(control) = control.as_mut() else { continue };
                let beat = ServerMessage::Heartbeat { server_time: now_us() };
                if let Err(end) = control.send(state, &beat, slow).await {
                    break end;
                }
            }
        }
    };
    if let End::Close(code, reason) = end {
        close(&connection, code, &reason);
    }
    charged.charge(&connection, state, meter.as_ref());
}

/// Reads what the client sent on its control stream; `Ok(false)` at its end.
async fn read_some(control: Option<&mut Control>) -> std::io::Result<bool> {
    let Some(control) = control else {
        return std::future::pending().await;
    };
    let mut chunk = [0u8; 512];
    match control.recv.read(&mut chunk).await {
        Ok(Some(read)) => {
            control.read.extend_from_slice(&chunk[..read]);
            Ok(true)
        }
        Ok(None) => Ok(false),
        Err(err) => Err(std::io::Error::other(err)),
    }
}

impl Control {
    /// Writes one message as a line, within the slow-client timeout.
    async fn send(
        &mut self,
        state: &AppState,
        message: &ServerMessage,
        slow: Duration,
    ) -> Result<(), End> {
        let mut line = serde_json::to_vec(message).expect("a message always encodes");
        line.push(b'\n');
        state.metrics.sent(Transport::WebTransport, line.len());
        let sent = tokio::time::timeout(
            slow,
            self.send.quic_stream_mut().write_chunk(Bytes::from(line)),
        )
        .await;
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(End::Gone),
            Err(_elapsed) => Err(too_slow(state)),
        }
    }

    /// Answers every whole line read so far.
    async fn answer(
        &mut self,
        state: &AppState,
        budget: &mut MessageBudget,
        max_line: usize,
        slow: Duration,
    ) -> Result<(), End> {
        while let Some(end) = self.read.iter().position(|&byte| byte == b'\n') {
            let line = self.read.split_to(end + 1);
            if !budget.take(Instant::now()) {
                let max = state.config.max_ws_messages_per_s;
                return Err(End::Close(
                    code::POLICY,
                    format!("too many messages: at most {max} per second"),
                ));
            }
            let text = std::str::from_utf8(&line[..end])
                .map_err(|_| End::Close(code::POLICY, "a line that is not valid UTF-8".into()))?;
            match websocket::decode(text)
                .map_err(|InputError(err)| End::Close(code::POLICY, err))?
            {
                ClientMessage::Ping { t } => {
                    let pong = ServerMessage::Pong {
                        t,
                        server_time: now_us(),
                    };
                    self.send(state, &pong, slow).await?;
                }
                ClientMessage::Subscribe { .. } => {
                    return Err(End::Close(
                        code::POLICY,
                        "a session's subscription is its URL's (since, symbols); open another \
                         session to change it"
                            .into(),
                    ));
                }
            }
        }
        if self.read.len() > max_line {
            return Err(End::Close(
                code::TOO_BIG,
                format!("a line over {max_line} bytes"),
            ));
        }
        Ok(())
    }
}

fn too_slow(state: &AppState) -> End {
    debug!("WebTransport client took no data for too long; dropping it");
    state
        .metrics
        .transport(Transport::WebTransport)
        .slow_dropped
        .inc();
    End::Close(code::POLICY, "too slow".into())
}

/// Sends every batch the subscription is behind on, each on a unidirectional stream of its own.
async fn send_batches(
    connection: &Connection,
    state: &AppState,
    subscription: &mut Subscription,
) -> Result<(), End> {
    let slow = state.config.slow_client_timeout();
    while let Some(frame) =
        subscription.next_frame(&state.feed, Framing::WebTransport, state.max_batch_ticks())
    {
        let payload = frame.bytes;
        state.metrics.sent(Transport::WebTransport, payload.len());
        let sent = tokio::time::timeout(slow, async {
            let mut stream = connection.open_uni().await?.await?;
            let quic = stream.quic_stream_mut();
            quic.write_chunk(payload).await?;
            // Finished, not waited on: the stream's data goes on being sent and retransmitted.
            quic.finish()?;
            anyhow::Ok(())
        })
        .await;
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(End::Gone),
            Err(_elapsed) => return Err(too_slow(state)),
        }
    }
    Ok(())
}

/// The session's QUIC byte counts already charged to the wire totals.
#[derive(Default)]
struct Charged {
    down: u64,
    up: u64,
}

impl Charged {
    fn charge(&mut self, connection: &Connection, state: &AppState, meter: Option<&Arc<Meter>>) {
        let stats = connection.quic_connection().stats();
        let (down, up) = (stats.udp_tx.bytes, stats.udp_rx.bytes);
        state.wire.quic(
            meter,
            down.saturating_sub(self.down),
            up.saturating_sub(self.up),
        );
        (self.down, self.up) = (down.max(self.down), up.max(self.up));
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn the_endpoints_socket_has_the_receive_buffer_asked_or_the_most_the_kernel_allows() {
        let max = std::fs::read_to_string("/proc/sys/net/core/rmem_max").expect("rmem_max");
        let max: usize = max.trim().parse().expect("a number");
        let socket = udp_socket("127.0.0.1:0".parse().expect("an address")).expect("a socket");
        // The kernel reports double what it set.
        let size = socket2::SockRef::from(&socket)
            .recv_buffer_size()
            .expect("SO_RCVBUF")
            / 2;
        assert_eq!(size, RECEIVE_BUFFER.min(max));
    }
}
