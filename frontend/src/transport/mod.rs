//! The six transport clients. Each runs as one local task that reports what it sees as
//! [`FeedEvent`]s and resumes from its cursor after any failure, with jittered backoff. A
//! [`FeedClient`] handle stops its task (and aborts what it has in flight) when dropped.

mod http;
mod sse;
mod stream;
mod websocket;
pub mod webtransport;

use std::cell::Cell;
use std::rc::Rc;

use futures::FutureExt;
use futures::channel::oneshot;
use futures::future::Shared;

use tickscope_shared::clock::ClockSample;
use tickscope_shared::wire::{Batch, WireReport};

use crate::backoff;

/// The transports a person can pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    Polling {
        interval_ms: u32,
    },
    LongPolling,
    WebSocket,
    Sse,
    /// HTTP streaming: `fetch` reading one long response of JSON lines.
    Stream,
    /// WebTransport over HTTP/3: a QUIC stream per batch.
    WebTransport,
}

impl TransportKind {
    /// Every choice the switch offers, in its order.
    pub const CHOICES: [TransportKind; 8] = [
        TransportKind::Polling { interval_ms: 250 },
        TransportKind::Polling { interval_ms: 1000 },
        TransportKind::Polling { interval_ms: 5000 },
        TransportKind::LongPolling,
        TransportKind::WebSocket,
        TransportKind::Sse,
        TransportKind::Stream,
        TransportKind::WebTransport,
    ];

    /// The six transports compare mode runs side by side (WebTransport when the server and
    /// the browser have it).
    pub const COMPARED: [TransportKind; 6] = [
        TransportKind::Polling { interval_ms: 1000 },
        TransportKind::LongPolling,
        TransportKind::WebSocket,
        TransportKind::Sse,
        TransportKind::Stream,
        TransportKind::WebTransport,
    ];

    pub fn label(self) -> String {
        match self {
            Self::Polling { interval_ms } if interval_ms < 1000 => {
                format!("Polling {interval_ms} ms")
            }
            Self::Polling { interval_ms } => format!("Polling {} s", interval_ms / 1000),
            Self::LongPolling => "Long polling".into(),
            Self::WebSocket => "WebSocket".into(),
            Self::Sse => "SSE".into(),
            Self::Stream => "HTTP streaming".into(),
            Self::WebTransport => "WebTransport".into(),
        }
    }

    /// The server's name for the transport (`transport=` on a clock exchange).
    pub fn wire_name(self) -> &'static str {
        match self {
            Self::Polling { .. } => "polling",
            Self::LongPolling => "long_polling",
            Self::WebSocket => "websocket",
            Self::Sse => "sse",
            Self::Stream => "stream",
            Self::WebTransport => "webtransport",
        }
    }

    /// A stable id for `data-testid`s and CSS classes.
    pub fn id(self) -> String {
        match self {
            Self::Polling { interval_ms } => format!("polling-{interval_ms}"),
            Self::LongPolling => "long-polling".into(),
            Self::WebSocket => "websocket".into(),
            Self::Sse => "sse".into(),
            Self::Stream => "stream".into(),
            Self::WebTransport => "webtransport".into(),
        }
    }

    /// Silence after which a connection counts as stalled: two of its intervals.
    pub fn stall_after_us(self) -> i64 {
        let interval_ms = match self {
            Self::Polling { interval_ms } => i64::from(interval_ms),
            // The server answers a long poll at the latest after 25 s.
            Self::LongPolling => 25_000,
            // Ticks flow many times a second; when they do not, pongs to the page's pings come
            // every 5 s on a WebSocket, and the server's heartbeat events every 15 s on SSE.
            // WebTransport's control stream carries pongs every 5 s too, and heartbeats.
            Self::WebSocket | Self::WebTransport => 5_000,
            // Heartbeats come every 15 s on both streamed responses.
            Self::Sse | Self::Stream => 15_000,
        };
        2 * interval_ms * 1000
    }
}

/// Which of the server's origins a transport's requests go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Via {
    /// The page's own origin: HTTP/2 when the server offers it over TLS.
    Page,
    /// The server's HTTP/1.1-only origin (`/api/origins`), for compare mode: a browser uses one
    /// protocol per origin, so HTTP/1.1 beside HTTP/2 needs a second one.
    Http1,
}

/// A running transport: its kind and the origin it goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Transport {
    pub kind: TransportKind,
    pub via: Via,
}

impl From<TransportKind> for Transport {
    fn from(kind: TransportKind) -> Self {
        Self {
            kind,
            via: Via::Page,
        }
    }
}

impl Transport {
    /// The HTTP transports of compare mode, over the HTTP/1.1-only origin.
    pub fn http1(kind: TransportKind) -> Self {
        Self {
            kind,
            via: Via::Http1,
        }
    }

    /// Compare mode's transports: those on the page's origin (WebTransport only when
    /// `webtransport`), and with `versions`, each HTTP one again over HTTP/1.1 beside it
    /// (WebSocket is on HTTP/1.1 already, WebTransport on HTTP/3).
    pub fn compared(versions: bool, webtransport: bool) -> Vec<Transport> {
        TransportKind::COMPARED
            .iter()
            .filter(|&&kind| webtransport || kind != TransportKind::WebTransport)
            .flat_map(|&kind| {
                let again = versions
                    && !matches!(kind, TransportKind::WebSocket | TransportKind::WebTransport);
                std::iter::once(Transport::from(kind)).chain(again.then(|| Transport::http1(kind)))
            })
            .collect()
    }

    pub fn label(self) -> String {
        match self.via {
            Via::Page => self.kind.label(),
            Via::Http1 => format!("{} · HTTP/1.1", self.kind.label()),
        }
    }

    /// A stable id for `data-testid`s and CSS classes.
    pub fn id(self) -> String {
        match self.via {
            Via::Page => self.kind.id(),
            Via::Http1 => format!("{}-http1", self.kind.id()),
        }
    }

    pub fn stall_after_us(self) -> i64 {
        self.kind.stall_after_us()
    }
}

/// What a transport client reports.
#[derive(Debug, Clone)]
pub enum FeedEvent {
    /// A batch arrived: `bytes` of payload, at `at_us` on the client's clock.
    Batch {
        batch: Batch,
        bytes: usize,
        at_us: i64,
    },
    /// An HTTP request went out.
    Request { at_us: i64 },
    /// A poll was answered; `timed_out` for a long poll answered empty at its timeout.
    Answer {
        at_us: i64,
        empty: bool,
        timed_out: bool,
    },
    /// A clock exchange for this transport's offset.
    Clock(ClockSample),
    /// The protocol this transport's requests went over, as the browser reports it
    /// (Resource Timing's `nextHopProtocol`: `http/1.1`, `h2`, `h3`).
    Protocol(String),
    /// The server's count of what this transport has put on the wire so far.
    Wire(WireReport),
    /// Something other than data came (a pong): the connection is alive.
    Heard { at_us: i64, bytes: usize },
    /// The connection is up (WebSocket open, SSE stream open, or a poll answered).
    Connected,
    /// The connection failed; the next attempt is in `retry_in_ms`.
    Reconnecting {
        attempt: u32,
        retry_in_ms: u32,
        reason: String,
    },
}

/// Receives a client's events.
pub type Emit = Rc<dyn Fn(FeedEvent)>;

/// Why a stream is opened again, told to the server (`reconnect=`) so `/metrics` counts the
/// reconnects clients make, silent feeds among them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reconnect {
    /// Nothing came, not even a heartbeat, for two heartbeat intervals.
    Silent,
    /// The connection failed or closed.
    Error,
}

impl Reconnect {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reconnect::Silent => "silent",
            Reconnect::Error => "error",
        }
    }
}

/// A running transport client; dropping it stops the client.
pub struct FeedClient {
    stopped: Rc<Cell<bool>>,
    abort: web_sys::AbortController,
    /// Dropped with the client, which wakes every [`Stop::wait`].
    _stop: oneshot::Sender<()>,
}

impl FeedClient {
    /// Starts `kind` from cursor `since`, its requests going to `origin` (empty: the page's).
    pub fn start(kind: TransportKind, origin: &str, since: u64, emit: Emit) -> Self {
        let stopped = Rc::new(Cell::new(false));
        let abort = web_sys::AbortController::new().expect("AbortController exists in browsers");
        let (stop_tx, stop_rx) = oneshot::channel();
        // Nothing a stopped client still had in flight reaches the app.
        let emit: Emit = {
            let stopped = stopped.clone();
            Rc::new(move |event| {
                if !stopped.get() {
                    emit(event);
                }
            })
        };
        let stop = Stop {
            stopped: stopped.clone(),
            signal: abort.signal(),
            dropped: stop_rx.shared(),
            meter: new_meter().into(),
            origin: origin.into(),
        };
        leptos::task::spawn_local(async move {
            match kind {
                TransportKind::Polling { interval_ms } => {
                    http::poll(kind, interval_ms, since, stop, emit).await
                }
                TransportKind::LongPolling => http::long_poll(kind, since, stop, emit).await,
                TransportKind::WebSocket => websocket::run(since, stop, emit).await,
                TransportKind::Sse => sse::run(since, stop, emit).await,
                TransportKind::Stream => stream::run(since, stop, emit).await,
                TransportKind::WebTransport => webtransport::run(since, stop, emit).await,
            }
        });
        Self {
            stopped,
            abort,
            _stop: stop_tx,
        }
    }
}

impl Drop for FeedClient {
    fn drop(&mut self) {
        self.stopped.set(true);
        self.abort.abort();
    }
}

/// What a client task checks to know it should end.
#[derive(Clone)]
pub(crate) struct Stop {
    stopped: Rc<Cell<bool>>,
    /// Aborts the client's in-flight HTTP request.
    pub(crate) signal: web_sys::AbortSignal,
    dropped: Shared<oneshot::Receiver<()>>,
    /// The name of this client's meter on the server (`meter=` on each of its requests), so
    /// the server counts what it costs on the wire.
    pub(crate) meter: Rc<str>,
    /// The origin its requests go to (`https://host:port`), or empty for the page's own.
    pub(crate) origin: Rc<str>,
}

/// A new meter name: 64 random bits in hex.
fn new_meter() -> String {
    let half = || (js_sys::Math::random() * 4_294_967_296.0) as u64;
    format!("{:016x}", half() << 32 | half())
}

impl Stop {
    pub(crate) fn is_set(&self) -> bool {
        self.stopped.get()
    }

    /// Resolves when the client is stopped.
    pub(crate) async fn wait(&self) {
        let _ = self.dropped.clone().await;
    }
}

/// Waits out the backoff before attempt `attempt`, telling the app; `false` if stopped.
pub(crate) async fn back_off(attempt: u32, reason: String, stop: &Stop, emit: &Emit) -> bool {
    let retry_in_ms = backoff::delay_ms(attempt, js_sys::Math::random());
    emit(FeedEvent::Reconnecting {
        attempt,
        retry_in_ms,
        reason,
    });
    gloo_timers::future::TimeoutFuture::new(retry_in_ms).await;
    !stop.is_set()
}

/// Runs `connection` until the client stops, opening it again after each failure once the
/// backoff has passed. `connection` gets the attempt count, to reset once it is up; it returns
/// `Ok` when the client stopped and `Err` with the reason when the connection broke.
pub(crate) async fn reconnecting(
    stop: &Stop,
    emit: &Emit,
    mut connection: impl AsyncFnMut(&mut u32) -> Result<(), String>,
) {
    let mut attempt = 0;
    while !stop.is_set() {
        match connection(&mut attempt).await {
            Ok(()) => return,
            Err(reason) => {
                attempt += 1;
                if stop.is_set() || !back_off(attempt, reason, stop, emit).await {
                    return;
                }
            }
        }
    }
}

/// A streamed transport's URL at `path` on its origin, with its [`resume_query`].
pub(crate) fn stream_url(
    path: &str,
    cursor: u64,
    stop: &Stop,
    reconnect: Option<Reconnect>,
) -> String {
    format!(
        "{}{path}?{}",
        stop.origin,
        resume_query(cursor, stop, reconnect)
    )
}

/// The query a stream or session opens with: from `cursor`, on the client's meter, saying why
/// the last one ended when it did.
pub(crate) fn resume_query(cursor: u64, stop: &Stop, reconnect: Option<Reconnect>) -> String {
    let meter = &stop.meter;
    match reconnect {
        Some(reason) => format!("since={cursor}&meter={meter}&reconnect={}", reason.as_str()),
        None => format!("since={cursor}&meter={meter}"),
    }
}

/// Clock pings (WebSocket, WebTransport's control stream): a quick burst at the start, so a
/// round trip without queueing is found early, then one every few seconds to follow drift.
/// The wait before the next ping after `sent` of them.
pub(crate) fn next_ping_ms(sent: u32) -> u32 {
    const EVERY_MS: u32 = 5_000;
    const BURST: u32 = 4;
    const BURST_EVERY_MS: u32 = 200;
    if sent < BURST {
        BURST_EVERY_MS
    } else {
        EVERY_MS
    }
}

/// How often a streamed transport's clock offset is measured again while it runs.
const STREAM_CLOCK_EVERY_MS: u32 = 5_000;

/// Runs a streamed HTTP transport (SSE, HTTP streaming): `open` holds one response until it
/// breaks (`Err`, with why in its `Option<Reconnect>`) or the client stops (`Ok`), and is
/// called again from the cursor it reached after each failure. The stream carries no replies,
/// so the offset comes from `/api/time`, measured again every few seconds beside the stream to
/// find a quiet round trip and follow drift.
pub(crate) async fn streamed(
    kind: TransportKind,
    since: u64,
    stop: &Stop,
    emit: &Emit,
    open: impl AsyncFnMut(&mut u64, &mut Option<Reconnect>, &mut u32) -> Result<(), String>,
) {
    leptos::task::spawn_local({
        let (stop, emit) = (stop.clone(), emit.clone());
        async move {
            while !stop.is_set() {
                http::sync_clock(kind, &stop, &emit).await;
                let wait = gloo_timers::future::TimeoutFuture::new(STREAM_CLOCK_EVERY_MS);
                futures::select! {
                    () = wait.fuse() => {}
                    () = stop.wait().fuse() => return,
                }
            }
        }
    });
    resuming(since, stop, emit, open).await;
}

/// Runs `open` (one connection, until it breaks with `Err` or the client stops) from `since`,
/// and again from the cursor it reached after each failure, saying why the last one ended.
pub(crate) async fn resuming(
    since: u64,
    stop: &Stop,
    emit: &Emit,
    mut open: impl AsyncFnMut(&mut u64, &mut Option<Reconnect>, &mut u32) -> Result<(), String>,
) {
    let mut cursor = since;
    let mut reconnect = None;
    reconnecting(stop, emit, async |attempt| {
        let result = open(&mut cursor, &mut reconnect, attempt).await;
        if result.is_err() {
            reconnect.get_or_insert(Reconnect::Error);
        }
        result
    })
    .await;
}

/// The client's clock in Unix microseconds, at sub-millisecond resolution.
pub fn now_us() -> i64 {
    let performance = web_sys::window()
        .and_then(|window| window.performance())
        .expect("the app runs in a window with performance timing");
    ((performance.time_origin() + performance.now()) * 1000.0) as i64
}
