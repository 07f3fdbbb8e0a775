//! One client of each kind: tickscope's WebSocket (also spoken by the Node `ws` peer),
//! Socket.IO (Engine.IO v4 over WebSocket), SSE, long polling and polling.
//!
//! Every client connects under a shared limit on handshakes in flight, reports once that it
//! is connected or that it failed, then reads until it is aborted or the server drops it.
//! Nothing reconnects: a dropped client is a failure the report shows.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use clap::ValueEnum;
use eventsource_stream::Eventsource;
use futures_util::{FutureExt, SinkExt, StreamExt};
use http_body_util::{BodyDataStream, BodyExt, Empty};
use hyper::body::Incoming;
use hyper::header::HOST;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde::de::IgnoredAny;
use tickscope_shared::cursor::CursorChain;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, MissedTickBehavior, interval_at, timeout};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use url::Url;

use crate::raw::{self, RawStream};
use crate::recorder::{LiteBatch, Recorder, now_us};
use crate::wire::{Counted, Io, WireCount};

/// Longest a single handshake (or first HTTP answer) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// A WebSocket that receives batches as text messages (tickscope, or the Node `ws` peer).
    Websocket,
    /// Socket.IO: Engine.IO v4 over WebSocket, events named "batch".
    Socketio,
    /// Server-Sent Events.
    Sse,
    /// HTTP streaming: one long response of JSON lines (`/api/stream`).
    Stream,
    /// Long polling: each answer is followed at once by the next request.
    LongPolling,
    /// Polling every `--interval-ms`.
    Polling,
    /// WebTransport over HTTP/3 (`--url` is the page's `/api/webtransport`, which names the
    /// session URL and the certificate hashes to pin): a QUIC stream per batch.
    Webtransport,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Websocket => "websocket",
            Transport::Socketio => "socket.io",
            Transport::Sse => "sse",
            Transport::Stream => "stream",
            Transport::LongPolling => "long-polling",
            Transport::Polling => "polling",
            Transport::Webtransport => "webtransport",
        }
    }
}

/// HTTPS and WSS: the connector trusting `--tls-ca`, and whether HTTP goes over HTTP/2.
#[derive(Clone)]
pub struct Tls {
    /// For https: ALPN `h2` with `--http2`, else `http/1.1`.
    http: tokio_rustls::TlsConnector,
    /// For wss: ALPN `http/1.1` (a WebSocket is an HTTP/1.1 upgrade).
    ws: tokio_rustls::TlsConnector,
    http2: bool,
}

impl Tls {
    /// Trusting the PEM certificates in `ca`; ALPN offers `h2` to HTTP clients when `http2`.
    pub fn new(ca: &std::path::Path, http2: bool) -> anyhow::Result<Self> {
        use anyhow::Context;
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        let mut roots = tokio_rustls::rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca)
            .with_context(|| format!("reading {}", ca.display()))?
        {
            roots.add(cert.with_context(|| format!("reading {}", ca.display()))?)?;
        }
        let provider = std::sync::Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let connector = |alpn: &[u8]| -> anyhow::Result<tokio_rustls::TlsConnector> {
            let mut config =
                tokio_rustls::rustls::ClientConfig::builder_with_provider(provider.clone())
                    .with_safe_default_protocol_versions()?
                    .with_root_certificates(roots.clone())
                    .with_no_client_auth();
            config.alpn_protocols = vec![alpn.to_vec()];
            Ok(tokio_rustls::TlsConnector::from(std::sync::Arc::new(
                config,
            )))
        };
        Ok(Self {
            http: connector(if http2 { b"h2" } else { b"http/1.1" })?,
            ws: connector(b"http/1.1")?,
            http2,
        })
    }
}

/// What every client of a run shares.
pub struct Shared {
    pub recorder: RefCell<Recorder>,
    /// Handshakes in flight.
    connecting: Semaphore,
    /// Clients that have connected or failed to, since the run began.
    settled: watch::Sender<usize>,
    connected: Cell<usize>,
    pub interval: Duration,
    /// WebSocket clients connect and then stay silent: no subscription, no ticks.
    pub idle: bool,
    /// Every byte on the clients' connections, both ways.
    pub wire: Rc<WireCount>,
    pub tls: Option<Tls>,
    /// WebTransport: the session URL and the certificate hashes to pin, read once from the
    /// page's `/api/webtransport` by the first client.
    webtransport: tokio::sync::OnceCell<(String, Vec<[u8; 32]>)>,
    /// WebTransport: how many clients share a UDP socket, and the sockets made so far.
    pub quic_clients_per_socket: usize,
    quic_sockets: RefCell<Vec<Rc<WtEndpoint>>>,
}

impl Shared {
    pub fn new(concurrency: usize, interval: Duration, idle: bool, tls: Option<Tls>) -> Self {
        Self {
            tls,
            recorder: RefCell::default(),
            connecting: Semaphore::new(concurrency.max(1)),
            settled: watch::channel(0).0,
            connected: Cell::new(0),
            interval,
            idle,
            wire: Rc::default(),
            webtransport: tokio::sync::OnceCell::new(),
            quic_clients_per_socket: 1,
            quic_sockets: RefCell::default(),
        }
    }

    pub fn settled(&self) -> watch::Receiver<usize> {
        self.settled.subscribe()
    }

    pub fn connected(&self) -> usize {
        self.connected.get()
    }

    fn settle(&self, outcome: Result<(), String>) {
        match outcome {
            Ok(()) => self.connected.set(self.connected.get() + 1),
            Err(error) => self.recorder.borrow_mut().connect_error(error),
        }
        self.settled.send_modify(|settled| *settled += 1);
    }

    fn record(&self, chain: &mut CursorChain, text: &str) {
        self.record_at(chain, text, now_us());
    }

    /// [`Shared::record`] for a batch received at `received` (Unix µs).
    fn record_at(&self, chain: &mut CursorChain, text: &str, received: i64) {
        let mut recorder = self.recorder.borrow_mut();
        match serde_json::from_str::<LiteBatch>(text) {
            Ok(batch) => recorder.batch(chain, &batch, received),
            Err(error) => recorder.disconnect(format!("unreadable batch: {error}")),
        }
    }
}

/// Runs client number `index` until it is aborted or dropped by the server.
pub async fn run(shared: Rc<Shared>, transport: Transport, url: Url, index: usize) {
    match transport {
        Transport::Websocket => websocket(&shared, url, false).await,
        Transport::Socketio => websocket(&shared, url, true).await,
        Transport::Sse => sse(&shared, url).await,
        Transport::Stream => stream(&shared, url).await,
        Transport::LongPolling => http(&shared, url, None).await,
        Transport::Webtransport => webtransport(&shared, url, index).await,
        Transport::Polling => {
            // Clients start spread evenly over the interval, as independent users would be.
            let phase = (index as f64 * 0.618_033_988_7).fract();
            http(&shared, url, Some(shared.interval.mul_f64(phase))).await;
        }
    }
}

/// A TCP connection to `url`'s server without Nagle's delay, counting its bytes, under TLS
/// for https and wss (ALPN `h2` for HTTP with `--http2`, else `http/1.1`); whether it speaks
/// HTTP/2.
async fn connect(shared: &Shared, url: &Url) -> Result<(Box<dyn Io>, bool), String> {
    let addr = url
        .socket_addrs(|| None)
        .map_err(|error| format!("address of {url}: {error}"))?;
    let stream = TcpStream::connect(&*addr)
        .await
        .map_err(|error| format!("connecting: {error}"))?;
    stream
        .set_nodelay(true)
        .map_err(|error| error.to_string())?;
    let counted = Counted::new(stream, shared.wire.clone());
    if !matches!(url.scheme(), "https" | "wss") {
        return Ok((Box::new(counted), false));
    }
    let tls = shared
        .tls
        .as_ref()
        .ok_or_else(|| format!("{url} needs --tls-ca"))?;
    let h2 = tls.http2 && url.scheme() == "https";
    let name = rustls_pki_types::ServerName::try_from(url.host_str().unwrap_or("localhost"))
        .map_err(|error| error.to_string())?
        .to_owned();
    let connector = if url.scheme() == "wss" {
        &tls.ws
    } else {
        &tls.http
    };
    let stream = connector
        .connect(name, counted)
        .await
        .map_err(|error| format!("TLS handshake: {error}"))?;
    let spoken = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    if h2 && !spoken {
        return Err("the server did not choose HTTP/2".into());
    }
    Ok((Box::new(stream), spoken))
}

async fn websocket(shared: &Shared, url: Url, socketio: bool) {
    let permit = shared.connecting.acquire().await;
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let handshake = async {
        let (stream, _) = connect(shared, &url).await?;
        tokio_tungstenite::client_async_with_config(url.as_str(), stream, Some(config))
            .await
            .map_err(|error| error.to_string())
    };
    let mut socket = match timeout(CONNECT_TIMEOUT, handshake).await {
        Ok(Ok((socket, _))) => socket,
        Ok(Err(error)) => return shared.settle(Err(format!("websocket handshake: {error}"))),
        Err(_) => return shared.settle(Err("websocket handshake timed out".into())),
    };
    let mut waiting = Some(permit);
    if !socketio {
        if !shared.idle {
            let subscribe = Message::text(r#"{"type":"subscribe"}"#);
            if let Err(error) = socket.send(subscribe).await {
                return shared.settle(Err(format!("sending the subscription: {error}")));
            }
        }
        waiting = None;
        shared.settle(Ok(()));
    }
    let mut chain = CursorChain::new(None, true);
    let why = loop {
        let message = match socket.next().await {
            None => break "the server closed the connection".to_owned(),
            Some(Err(error)) => break format!("websocket error: {error}"),
            Some(Ok(message)) => message,
        };
        let text = match message {
            Message::Text(text) => text,
            Message::Close(frame) => break format!("closed by the server: {frame:?}"),
            _ => continue,
        };
        if !socketio {
            shared.record(&mut chain, &text);
            continue;
        }
        // Engine.IO v4: "0" open, "2" ping, "4" message; Socket.IO inside: "40" connected,
        // "42" an event.
        let reply = match text.as_bytes() {
            [b'0', ..] => Some("40"),
            [b'2', ..] => Some("3"),
            [b'4', b'0', ..] => {
                if waiting.take().is_some() {
                    shared.settle(Ok(()));
                }
                None
            }
            [b'4', b'2', ..] => {
                record_event(shared, &mut chain, &text[2..]);
                None
            }
            _ => None,
        };
        if let Some(reply) = reply
            && let Err(error) = socket.send(Message::text(reply)).await
        {
            break format!("websocket send: {error}");
        }
    };
    if waiting.is_some() {
        shared.settle(Err(why));
    } else {
        shared.recorder.borrow_mut().disconnect(why);
    }
}

/// A Socket.IO event `["batch", {...}]`.
fn record_event(shared: &Shared, chain: &mut CursorChain, event: &str) {
    let received = now_us();
    let mut recorder = shared.recorder.borrow_mut();
    match serde_json::from_str::<(IgnoredAny, LiteBatch)>(event) {
        Ok((_, batch)) => recorder.batch(chain, &batch, received),
        Err(error) => recorder.disconnect(format!("unreadable event: {error}")),
    }
}

/// A client's HTTP connection, HTTP/1.1 or HTTP/2.
enum SendRequest {
    Http1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    Http2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

/// Runs HTTP/2's connection tasks on this thread's local set.
#[derive(Clone, Copy)]
struct LocalExec;

impl<F: Future + 'static> hyper::rt::Executor<F> for LocalExec {
    fn execute(&self, future: F) {
        tokio::task::spawn_local(future);
    }
}

/// One connection of its own, as a browser's would be, driven by a local task that ends when
/// the returned sender is dropped.
async fn http_connection(shared: &Shared, url: &Url) -> Result<SendRequest, String> {
    let (sender, driver) = connection_to_drive(shared, url).await?;
    if let Some(driver) = driver {
        tokio::task::spawn_local(driver);
    }
    Ok(sender)
}

/// An HTTP/1.1 connection's own future, for a client that drives it in its own task
/// ([`driven`]).
type Driver = futures_util::future::Fuse<Pin<Box<dyn Future<Output = ()>>>>;

/// [`http_connection`], with an HTTP/1.1 connection's future handed back to be driven by the
/// caller; HTTP/2's runs on a task of its own.
async fn connection_to_drive(
    shared: &Shared,
    url: &Url,
) -> Result<(SendRequest, Option<Driver>), String> {
    let (stream, h2) = connect(shared, url).await?;
    if h2 {
        let (sender, connection) =
            hyper::client::conn::http2::handshake(LocalExec, TokioIo::new(stream))
                .await
                .map_err(|error| format!("HTTP/2 handshake: {error}"))?;
        tokio::task::spawn_local(connection);
        return Ok((SendRequest::Http2(sender), None));
    }
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| format!("HTTP handshake: {error}"))?;
    let driver: Pin<Box<dyn Future<Output = ()>>> = Box::pin(async move {
        let _ = connection.await;
    });
    Ok((SendRequest::Http1(sender), Some(driver.fuse())))
}

/// Runs `work` with the connection's future polled first on every wake-up of the one task:
/// what the connection reads reaches `work` in the same wake-up. Through a connection task of
/// its own, an answer would wait for a second wake-up, behind every other client the publish
/// made ready, and the lag measured would be partly the load generator's.
async fn driven<T>(driver: &mut Option<Driver>, work: impl Future<Output = T>) -> T {
    let mut work = std::pin::pin!(work);
    std::future::poll_fn(|cx| {
        if let Some(driver) = driver.as_mut() {
            // Fused: once the connection has ended it stays pending, and `work` sees the end.
            let _ = Pin::new(driver).poll(cx);
        }
        work.as_mut().poll(cx)
    })
    .await
}

/// GET `url` on `sender`'s connection; non-2xx answers are errors.
async fn get(sender: &mut SendRequest, url: &Url) -> Result<Response<Incoming>, String> {
    let response = match sender {
        SendRequest::Http1(sender) => {
            let path = match url.query() {
                Some(query) => format!("{}?{query}", url.path()),
                None => url.path().to_owned(),
            };
            let host = url.host_str().unwrap_or("localhost");
            let request = Request::get(path)
                .header(HOST, host)
                .body(Empty::new())
                .map_err(|error| error.to_string())?;
            sender
                .ready()
                .await
                .map_err(|error| format!("HTTP: {error}"))?;
            sender.send_request(request).await
        }
        SendRequest::Http2(sender) => {
            // HTTP/2 names the scheme and authority in the request itself.
            let request = Request::get(url.as_str())
                .body(Empty::new())
                .map_err(|error| error.to_string())?;
            sender
                .ready()
                .await
                .map_err(|error| format!("HTTP/2: {error}"))?;
            sender.send_request(request).await
        }
    }
    .map_err(|error| format!("HTTP: {error}"))?;
    if !response.status().is_success() {
        return Err(format!("HTTP {}", response.status()));
    }
    Ok(response)
}

/// Opens a streamed response (SSE, HTTP streaming) over HTTP/2 and settles the client's
/// connection: the connection's sender (which must outlive the body) and the response, or
/// `None` once the failure is counted.
async fn open_streamed(
    shared: &Shared,
    url: &Url,
    what: &str,
) -> Option<(SendRequest, Response<Incoming>)> {
    opening(shared, what, async {
        let mut sender = http_connection(shared, url).await?;
        let response = get(&mut sender, url).await?;
        Ok((sender, response))
    })
    .await
}

/// Opens an HTTP/1.1 stream read straight off its socket ([`RawStream`]) and settles the
/// client's connection; `None` once the failure is counted.
async fn open_raw(shared: &Shared, url: &Url, what: &str, accept: &str) -> Option<RawStream> {
    opening(shared, what, async {
        let (io, _) = connect(shared, url).await?;
        RawStream::open(io, url, accept).await
    })
    .await
}

/// Runs `opened` in one of the connecting turns, within the connect timeout, and settles the
/// client's connection with the outcome; `None` once a failure is counted.
async fn opening<T>(
    shared: &Shared,
    what: &str,
    opened: impl Future<Output = Result<T, String>>,
) -> Option<T> {
    let permit = shared.connecting.acquire().await;
    let outcome = match timeout(CONNECT_TIMEOUT, opened).await {
        Ok(Ok(opened)) => Ok(opened),
        Ok(Err(error)) => Err(format!("{what}: {error}")),
        Err(_) => Err(format!("{what}: no answer")),
    };
    drop(permit);
    match outcome {
        Ok(opened) => {
            shared.settle(Ok(()));
            Some(opened)
        }
        Err(error) => {
            shared.settle(Err(error));
            None
        }
    }
}

/// Whether a stream at `url` goes over HTTP/2 (`https` with `--http2`).
fn over_http2(shared: &Shared, url: &Url) -> bool {
    url.scheme() == "https" && shared.tls.as_ref().is_some_and(|tls| tls.http2)
}

/// SSE: batches are the events of no other type; heartbeats are skipped.
async fn sse(shared: &Shared, url: Url) {
    if over_http2(shared, &url) {
        return sse_http2(shared, url).await;
    }
    let Some(mut stream) = open_raw(shared, &url, "SSE", "text/event-stream").await else {
        return;
    };
    let mut body = Vec::new();
    let mut chain = CursorChain::new(None, true);
    let why = loop {
        match stream.next(&mut body).await {
            Ok(true) => {}
            Ok(false) => break "the server ended the stream".to_owned(),
            Err(error) => break format!("SSE: {error}"),
        }
        let received = now_us();
        raw::take_events(&mut body, |event| {
            if event.event == "message" {
                shared.record_at(&mut chain, &event.data, received);
            }
        });
    };
    shared.recorder.borrow_mut().disconnect(why);
}

/// SSE over HTTP/2, through hyper's client.
async fn sse_http2(shared: &Shared, url: Url) {
    let Some((_sender, response)) = open_streamed(shared, &url, "SSE").await else {
        return;
    };
    let mut events = BodyDataStream::new(response.into_body()).eventsource();
    let mut chain = CursorChain::new(None, true);
    let why = loop {
        match events.next().await {
            None => break "the server ended the stream".to_owned(),
            Some(Err(error)) => break format!("SSE: {error}"),
            Some(Ok(event)) if event.event == "heartbeat" => {}
            Some(Ok(event)) => shared.record(&mut chain, &event.data),
        }
    };
    shared.recorder.borrow_mut().disconnect(why);
}

/// HTTP streaming: batches are the lines that start as a batch; heartbeats and reports are
/// skipped.
async fn stream(shared: &Shared, url: Url) {
    let mut pending: Vec<u8> = Vec::new();
    let mut chain = CursorChain::new(None, true);
    let why = if over_http2(shared, &url) {
        let Some((_sender, response)) = open_streamed(shared, &url, "stream").await else {
            return;
        };
        let mut chunks = BodyDataStream::new(response.into_body());
        loop {
            match chunks.next().await {
                None => break "the server ended the stream".to_owned(),
                Some(Err(error)) => break format!("stream: {error}"),
                Some(Ok(chunk)) => pending.extend_from_slice(&chunk),
            }
            record_lines(shared, &mut chain, &mut pending);
        }
    } else {
        let Some(mut stream) = open_raw(shared, &url, "stream", "application/x-ndjson").await
        else {
            return;
        };
        loop {
            match stream.next(&mut pending).await {
                Ok(true) => {}
                Ok(false) => break "the server ended the stream".to_owned(),
                Err(error) => break format!("stream: {error}"),
            }
            record_lines(shared, &mut chain, &mut pending);
        }
    };
    shared.recorder.borrow_mut().disconnect(why);
}

/// Records every whole line of `pending` that is a batch, leaving a partial line.
fn record_lines(shared: &Shared, chain: &mut CursorChain, pending: &mut Vec<u8>) {
    const BATCH: &[u8] = br#"{"type":"batch","#;
    let received = now_us();
    let mut start = 0;
    while let Some(end) = pending[start..].iter().position(|&byte| byte == b'\n') {
        let line = &pending[start..start + end];
        if line.starts_with(BATCH) {
            shared.record_at(chain, &String::from_utf8_lossy(line), received);
        }
        start += end + 1;
    }
    pending.drain(..start);
}

/// Long polling when `phase` is `None`; otherwise polling every interval, offset by `phase`.
async fn http(shared: &Shared, url: Url, phase: Option<Duration>) {
    let mut permit = Some(shared.connecting.acquire().await);
    let (mut sender, mut driver) =
        match timeout(CONNECT_TIMEOUT, connection_to_drive(shared, &url)).await {
            Ok(Ok(opened)) => opened,
            Ok(Err(error)) => return shared.settle(Err(error)),
            Err(_) => return shared.settle(Err("connecting timed out".into())),
        };
    let mut chain = CursorChain::new(None, true);
    let mut ticker = phase.map(|phase| {
        // The first poll (connecting) is at once; the rest a whole interval later at the
        // earliest, spread by `phase`.
        let mut ticker = interval_at(Instant::now() + shared.interval + phase, shared.interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ticker
    });
    let why = loop {
        let mut request = url.clone();
        if let Some(cursor) = chain.cursor() {
            request
                .query_pairs_mut()
                .append_pair("since", &cursor.to_string());
        }
        shared.recorder.borrow_mut().request();
        let answer = async {
            let response = get(&mut sender, &request).await?;
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|error| format!("HTTP body: {error}"))?;
            Ok::<_, String>(body.to_bytes())
        };
        let body = match driven(&mut driver, answer).await {
            Ok(body) => body,
            Err(error) => break error,
        };
        let text = String::from_utf8_lossy(&body);
        shared.record(&mut chain, &text);
        if permit.take().is_some() {
            shared.settle(Ok(()));
        }
        if let Some(ticker) = ticker.as_mut() {
            ticker.tick().await;
        }
    };
    if permit.is_some() {
        shared.settle(Err(why));
    } else {
        shared.recorder.borrow_mut().disconnect(why);
    }
}

/// A slow consumer: a WebSocket with a 4 KiB receive buffer that subscribes to everything
/// and then reads nothing, until it is aborted or the server drops it.
pub async fn stalled(url: Url) {
    let Ok(addr) = url.socket_addrs(|| None) else {
        return;
    };
    let Ok(socket) = TcpSocket::new_v4() else {
        return;
    };
    if socket.set_recv_buffer_size(4096).is_err() {
        return;
    }
    let Ok(stream) = socket.connect(addr[0]).await else {
        return;
    };
    let Ok((mut socket, _)) = tokio_tungstenite::client_async(url.as_str(), stream).await else {
        return;
    };
    if socket
        .send(Message::text(r#"{"type":"subscribe","since":0}"#))
        .await
        .is_ok()
    {
        std::future::pending::<()>().await;
    }
}

/// The client endpoint (UDP socket) for client number `index`, pinning the server's
/// certificates, and the session URL, from the page's `/api/webtransport` at `url`.
///
/// With `--quic-clients-per-socket 1` (the default) every client has a socket of its own, as
/// each browser has: in the network lab every client port is a user's own path. Larger
/// values let that many clients share one socket, so that on loopback the load generator
/// reads the server's packets in batches (one `recvmmsg` for many sessions) and stays off
/// the measurement's path; the server's work per session is the same either way.
async fn webtransport_endpoint(
    shared: &Shared,
    url: &Url,
    index: usize,
) -> Result<(Rc<WtEndpoint>, String), String> {
    let (session_url, hashes) = webtransport_info(shared, url).await?;
    let socket = index / shared.quic_clients_per_socket;
    // No await from here on: the clients of one socket take turns.
    let mut sockets = shared.quic_sockets.borrow_mut();
    if let Some(endpoint) = sockets.get(socket) {
        return Ok((endpoint.clone(), session_url.clone()));
    }
    let pinned = hashes
        .iter()
        .map(|hash| wtransport::tls::Sha256Digest::new(*hash));
    let config = wtransport::ClientConfig::builder()
        .with_bind_socket(quic_socket().map_err(|error| format!("making a UDP socket: {error}"))?)
        .with_server_certificate_hashes(pinned)
        .max_idle_timeout(Some(Duration::from_secs(30)))
        .map_err(|error| error.to_string())?
        .build();
    let endpoint =
        Rc::new(wtransport::Endpoint::client(config).map_err(|error| error.to_string())?);
    if shared.quic_clients_per_socket > 1 {
        sockets.resize(socket + 1, endpoint.clone());
    }
    Ok((endpoint, session_url.clone()))
}

type WtEndpoint = wtransport::Endpoint<wtransport::endpoint::endpoint_side::Client>;

/// A client's UDP socket, on any address of both IP versions (as `with_bind_default`), whose
/// receive buffer holds [`QUIC_RECEIVE_BUFFER`] bytes where the kernel allows it
/// (`net.core.rmem_max`): the default (208 KiB) overflows when fifty sessions' packets
/// arrive in one fan-out pass while the load is busy, and every packet dropped there is a
/// QUIC loss the server recovers from, a delay the load made and not the server.
fn quic_socket() -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_only_v6(false)?;
    // Best effort: the kernel caps the size at net.core.rmem_max without an error.
    let _ = socket.set_recv_buffer_size(QUIC_RECEIVE_BUFFER);
    let any = std::net::SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0));
    socket.bind(&any.into())?;
    Ok(socket.into())
}

/// The receive buffer asked for each client UDP socket, as the server asks for its own.
const QUIC_RECEIVE_BUFFER: usize = 4 << 20;

/// The session URL and the certificate hashes to pin, read once for the run.
async fn webtransport_info<'a>(
    shared: &'a Shared,
    url: &Url,
) -> Result<&'a (String, Vec<[u8; 32]>), String> {
    shared
        .webtransport
        .get_or_try_init(|| async {
            let mut sender = http_connection(shared, url).await?;
            let response = get(&mut sender, url).await?;
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|error| error.to_string())?
                .to_bytes();
            let info: tickscope_shared::wire::WebTransportInfo =
                serde_json::from_slice(&body).map_err(|error| format!("{url}: {error}"))?;
            let hashes = info
                .certificate_hashes
                .iter()
                .filter_map(|hash| {
                    let bytes: Vec<u8> = (0..hash.len() / 2)
                        .filter_map(|at| u8::from_str_radix(hash.get(2 * at..2 * at + 2)?, 16).ok())
                        .collect();
                    bytes.try_into().ok()
                })
                .collect();
            Ok((info.url, hashes))
        })
        .await
}

/// The most a batch's stream may carry.
const MAX_BATCH_STREAM: usize = 4 << 20;

/// WebTransport: a live session (no `since`, as the WebSocket client subscribes), its control
/// stream (whose first line names where the batches start), and a stream per batch, put back
/// in order by the cursor each names before the chain checks it; each batch is timed when its
/// stream ended (the server ends it with its line).
///
/// One task reads everything: the streams being read are futures it polls itself, so a batch
/// costs no task or channel of the load generator's own.
async fn webtransport(shared: &Shared, url: Url, index: usize) {
    use tickscope_shared::cursor::Reorder;
    use tickscope_shared::wire::{ServerMessage, batch_after};
    let permit = shared.connecting.acquire().await;
    let opened = async {
        let (endpoint, session_url) = webtransport_endpoint(shared, &url, index).await?;
        let connection = endpoint
            .connect(session_url)
            .await
            .map_err(|error| format!("WebTransport: {error}"))?;
        let (send, recv) = connection
            .open_bi()
            .await
            .map_err(|error| error.to_string())?
            .await
            .map_err(|error| error.to_string())?;
        Ok::<_, String>((endpoint, connection, send, recv))
    };
    // The endpoint (the client's UDP socket) lives as long as its session.
    let (_endpoint, connection, _send, recv) = match timeout(CONNECT_TIMEOUT, opened).await {
        Ok(Ok(opened)) => {
            drop(permit);
            shared.settle(Ok(()));
            opened
        }
        Ok(Err(error)) => return shared.settle(Err(error)),
        Err(_) => return shared.settle(Err("WebTransport: no answer".into())),
    };
    let accept = |connection: wtransport::Connection| async move {
        let accepted = connection.accept_uni().await;
        (connection, accepted)
    };
    // Made once and made again only when they yield: polling one afresh costs locks and
    // channels, and a `select!` polls every branch each time any of them wakes.
    let mut accepting = std::pin::pin!(accept(connection.clone()));
    let read_control = |mut recv: wtransport::RecvStream, mut buffer: Vec<u8>| async move {
        let read = recv.read(&mut buffer).await;
        (recv, buffer, read)
    };
    let mut controlling = std::pin::pin!(read_control(recv, vec![0u8; 4096]));
    let mut reading = futures_util::stream::FuturesUnordered::new();
    let mut chain = CursorChain::new(None, true);
    let mut reorder: Reorder<(String, i64)> = Reorder::new(None, 4096);
    let mut pending: Vec<u8> = Vec::new();
    let mut charged = (0u64, 0u64);
    let mut count = interval_at(Instant::now(), Duration::from_millis(250));
    count.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let why = loop {
        let ready = tokio::select! {
            (connection, accepted) = &mut accepting => {
                let Ok(stream) = accepted else {
                    break format!("WebTransport: {}", connection.closed().await);
                };
                reading.push(async move {
                    let mut stream = stream;
                    let read = stream.quic_stream_mut().read_to_end(MAX_BATCH_STREAM).await;
                    (read, now_us())
                });
                accepting.set(accept(connection));
                continue;
            }
            Some((read, at)) = reading.next() => {
                let Ok(bytes) = read else {
                    break "a batch stream that did not end whole".to_owned();
                };
                let Some(line) = bytes.strip_suffix(b"\n") else {
                    break "a batch stream that is not one line".to_owned();
                };
                let line = String::from_utf8_lossy(line).into_owned();
                let Some(after) = batch_after(&line) else {
                    break "a batch without the cursor it continues from".to_owned();
                };
                let Ok(batch) = serde_json::from_str::<LiteBatch>(&line) else {
                    break "an unreadable batch".to_owned();
                };
                match reorder.push(after, batch.cursor, (line, at)) {
                    Ok(ready) => ready,
                    Err(error) => break error.to_string(),
                }
            }
            (recv, buffer, read) = &mut controlling => {
                let Ok(Some(read)) = read else {
                    break "the control stream ended".to_owned();
                };
                pending.extend_from_slice(&buffer[..read]);
                controlling.set(read_control(recv, buffer));
                let mut ready = Vec::new();
                while let Some(end) = pending.iter().position(|&byte| byte == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    if let Ok(ServerMessage::Subscribed { cursor }) =
                        serde_json::from_slice::<ServerMessage>(&line[..end])
                    {
                        ready.extend(reorder.start(cursor));
                    }
                }
                ready
            }
            _ = count.tick() => {
                let stats = connection.quic_connection().stats();
                let (down, up) = (stats.udp_rx.bytes, stats.udp_tx.bytes);
                shared.wire.down.set(shared.wire.down.get() + down - charged.0);
                shared.wire.up.set(shared.wire.up.get() + up - charged.1);
                charged = (down, up);
                continue;
            }
        };
        for (line, at) in ready {
            shared.record_at(&mut chain, &line, at);
        }
    };
    shared.recorder.borrow_mut().disconnect(why);
}

/// The server's `tickscope_wire_bytes_total` for `transport`, (down, up), from its
/// `/metrics`; `None` for a server without it (the peers), or when it cannot be read.
pub async fn server_wire(url: &Url, transport: Transport, tls: Option<&Tls>) -> Option<(u64, u64)> {
    let name = match transport {
        Transport::Websocket => "websocket",
        Transport::Sse => "sse",
        Transport::Stream => "stream",
        Transport::LongPolling => "long_polling",
        Transport::Polling => "polling",
        Transport::Webtransport => "webtransport",
        Transport::Socketio => return None,
    };
    let mut metrics = url.clone();
    let scheme = if matches!(url.scheme(), "https" | "wss") {
        "https"
    } else {
        "http"
    };
    metrics.set_scheme(scheme).ok()?;
    metrics.set_path("/metrics");
    metrics.set_query(None);
    // Over a connection of the server's `other` account; not counted as the clients' bytes.
    let scratch = Shared::new(1, Duration::ZERO, false, tls.cloned());
    let mut sender = http_connection(&scratch, &metrics).await.ok()?;
    let response = get(&mut sender, &metrics).await.ok()?;
    let body = response.into_body().collect().await.ok()?.to_bytes();
    let text = String::from_utf8_lossy(&body);
    let series = |direction: &str| -> Option<u64> {
        let prefix = format!(
            "tickscope_wire_bytes_total{{transport=\"{name}\",direction=\"{direction}\"}} "
        );
        text.lines()
            .find_map(|line| line.strip_prefix(&prefix)?.parse().ok())
    };
    Some((series("down")?, series("up")?))
}
