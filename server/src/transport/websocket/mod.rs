//! WebSocket: one full-duplex connection; the client subscribes, the server pushes batches.
//!
//! The handshake goes through the app like any request (origin check, limits, the wire
//! meter); its 101 answer carries a [`Takeover`], and [`crate::transport::websocket::upgrade`], which actix-http
//! hands every upgrade request with its connection, writes the answer and [`spawn`]s [`run`]
//! on the socket itself: no actix-http dispatcher, no response body and no actix-ws session
//! between the feed and the socket.
//!
//! Batches go out as uWebSockets sends a publish: each worker has one [`Fanout`] task, which
//! on every publish writes each subscribed connection's waiting batches straight to its
//! socket, each one `send` of a frame (header and message) shared by every client at the same
//! cursor. A publish wakes no connection's task. Only when a socket does not take a frame
//! whole does the fan-out hand the rest to the connection's task, which finishes it, catches
//! up, and hands the socket back; a write the client does not take within the slow-client
//! timeout drops it as too slow (1008).
//!
//! Each connection's task is a single `select!` loop over the client's frames, a write handed
//! over, the heartbeat, the meter's reports and shutdown, which breaks with the close reason
//! to send. Bad input closes only that connection, with a code and a reason:
//! 1003 for binary messages, 1007 for text that is not UTF-8, 1008 for a message that is not a
//! valid request, 1009 for one over the size limit (refused at the header that declares it,
//! [`crate::connection::frame_guard`]), 1002 for a broken frame; 1001 when the server shuts down. A
//! connection the server closes is shut down a short grace later ([`CLOSE_GRACE`]).

pub mod upgrade;

use std::future::poll_fn;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use actix_codec::{Decoder, Encoder};
use actix_http::ws::{CloseCode, CloseReason, Codec, Frame, Item, Message, ProtocolError};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use bytes::{Bytes, BytesMut};
use tickscope_shared::wire::{ClientMessage, ServerMessage};
use tokio::time::{Instant, interval_at};
use tracing::debug;

use crate::AppState;
use crate::connection::frame_guard::{FrameScanner, Refusal};
use crate::connection::limits::{Kind, Slot};
use crate::connection::origin;
use crate::connection::peer;
use crate::connection::tls;
use crate::error::ApiError;
use crate::feed::Subscription;
use crate::feed::clock::now_us;
use crate::feed::encode::Framing;
use crate::metrics::Transport;
use crate::query::{InputError, Params, symbol_filter};

use super::fanout::{Conn, Ended, Fanout, Stop, handed_over, tick};
use crate::connection::wire::{self, Meter};

/// Put on a request by [`crate::transport::websocket::upgrade`], which takes the connection over once the handshake
/// is answered: only such a request can become a WebSocket.
pub struct Upgrading;

/// What the handshake hands over with its 101 answer, for [`run`].
pub struct Takeover {
    state: Arc<AppState>,
    slot: Slot,
    meter: Option<Arc<Meter>>,
    dead_peer: peer::Watch,
}

/// `GET /api/ws`: checks the request and answers 101 with the connection's [`Takeover`];
/// [`crate::transport::websocket::upgrade`] writes the answer and runs the connection.
pub async fn handshake(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    state.metrics.transport(Transport::WebSocket).requests.inc();
    origin::check(&req, &state.config)?;
    let reconnect = Params::parse(req.query_string())?.reconnect()?;
    // Admission first: a page whose handshake failed asks again without the upgrade (a
    // browser shows it no status) and learns from the answer whether the server refused it
    // (429, 503) or the path dropped its Upgrade header (400).
    let slot = state
        .limits
        .admit(state.limits.client_ip(&req), Kind::Stream)?;
    let mut response = actix_http::ws::handshake(req.head()).map_err(|err| {
        ApiError::BadRequest(format!("this endpoint takes a WebSocket upgrade: {err}"))
    })?;
    if !req.extensions().contains::<Upgrading>() {
        return Err(ApiError::BadRequest(
            "a WebSocket opens over HTTP/1.1 (this server has no WebSocket over HTTP/2)".into(),
        ));
    }
    if let Some(reason) = reconnect {
        state.metrics.reconnected(Transport::WebSocket, reason);
    }
    // Upgraded: what the client sends from now on is this connection's, as it comes.
    if let Some(wire) = wire::Connection::of(&req) {
        wire.stream();
    }
    let takeover = Takeover {
        dead_peer: peer::Watch::new(&req, &state.metrics, Transport::WebSocket),
        meter: wire::meter(&req),
        state: state.into_inner(),
        slot,
    };
    let mut response = HttpResponse::from(response.finish().map_into_boxed_body());
    response.extensions_mut().insert(takeover);
    Ok(response)
}

/// A connection's socket after the upgrade, as its task reads it: the bytes read and not yet
/// decoded, the scan that refuses an oversized frame at its header, and the message being put
/// together from fragments.
struct Socket {
    conn: Rc<Conn>,
    read: BytesMut,
    scanner: FrameScanner,
    codec: Codec,
    /// A fragmented message so far: text or not, and its bytes.
    message: Option<(bool, BytesMut)>,
    max_bytes: usize,
}

/// What a client's bytes came to.
enum Incoming {
    Message(Received),
    /// Not a whole frame yet.
    More,
}

/// A whole message from the client.
enum Received {
    Text(Bytes),
    Binary,
    Ping(Bytes),
    Pong,
    Close,
}

/// How long a client gets, after the server's close frame, to close the connection itself.
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// What a client may still send after the server's close and have it read.
const DRAIN_AFTER_CLOSE: usize = 16 * 1024;

impl Socket {
    fn new(conn: Rc<Conn>, leftover: &[u8], max_bytes: u64) -> Self {
        let max = usize::try_from(max_bytes).unwrap_or(usize::MAX);
        Self {
            conn,
            read: BytesMut::from(leftover),
            scanner: FrameScanner::new(max_bytes),
            codec: Codec::new().max_size(max),
            message: None,
            max_bytes: max,
        }
    }

    /// Reads what the client sent; `Ok(false)` when it has closed its side.
    async fn read(&mut self) -> std::io::Result<bool> {
        let before = self.read.len();
        let read = self.conn.read(&mut self.read).await?;
        // Refused at the header, before the frame is held (`frame_guard`).
        if let Err(refusal) = self.scanner.scan(&self.read[before..]) {
            return Err(std::io::Error::other(refusal));
        }
        Ok(read > 0)
    }

    /// The next whole message in what was read.
    fn next(&mut self) -> Result<Incoming, ProtocolError> {
        loop {
            let Some(frame) = self.codec.decode(&mut self.read)? else {
                // Decoded whole: the connection keeps no buffer until it sends again.
                if self.read.is_empty() {
                    self.read = BytesMut::new();
                }
                return Ok(Incoming::More);
            };
            let whole = match frame {
                Frame::Text(text) => Received::Text(text),
                Frame::Binary(_) => Received::Binary,
                Frame::Ping(bytes) => Received::Ping(bytes),
                Frame::Pong(_) => Received::Pong,
                Frame::Close(_) => Received::Close,
                Frame::Continuation(item) => match self.fragment(item)? {
                    Some(whole) => whole,
                    None => continue,
                },
            };
            return Ok(Incoming::Message(whole));
        }
    }

    /// Adds a fragment to the message being put together; the message once it is whole.
    fn fragment(&mut self, item: Item) -> Result<Option<Received>, ProtocolError> {
        let (first, text, bytes, last) = match item {
            Item::FirstText(bytes) => (true, true, bytes, false),
            Item::FirstBinary(bytes) => (true, false, bytes, false),
            Item::Continue(bytes) => (false, false, bytes, false),
            Item::Last(bytes) => (false, false, bytes, true),
        };
        match (&mut self.message, first) {
            (None, true) => self.message = Some((text, BytesMut::from(&bytes[..]))),
            (Some(_), true) => return Err(ProtocolError::ContinuationStarted),
            (None, false) => return Err(ProtocolError::ContinuationNotStarted),
            (Some((_, so_far)), false) => {
                if so_far.len() + bytes.len() > self.max_bytes {
                    return Err(ProtocolError::Overflow);
                }
                so_far.extend_from_slice(&bytes);
            }
        }
        if !last {
            return Ok(None);
        }
        let (text, whole) = self
            .message
            .take()
            .expect("a message is being put together");
        Ok(Some(if text {
            Received::Text(whole.freeze())
        } else {
            Received::Binary
        }))
    }

    /// Sends a control message or a text the server makes (a pong, a report), then catches
    /// up on what the fan-out passed over meanwhile.
    async fn send(&mut self, state: &AppState, message: Message) -> Result<(), Stop> {
        self.conn.hold();
        self.send_only(message, state.config.slow_client_timeout())
            .await?;
        self.conn.release(state).await
    }

    /// Sends a message the server makes, holding the socket (the close keeps it).
    async fn send_only(&mut self, message: Message, timeout: Duration) -> Result<(), Stop> {
        let mut frame = BytesMut::new();
        self.codec
            .encode(message, &mut frame)
            .map_err(|_| Stop::Gone)?;
        self.conn.write(&frame, timeout).await
    }
}

/// Runs [`run`] as a task of its own on this worker, tracked by [`AppState::taken_over`] so
/// shutdown waits for its close.
pub fn spawn(io: tls::Io, leftover: Vec<u8>, takeover: Takeover) {
    let tracker = takeover.state.taken_over.clone();
    tracker.spawn_local(async move { run(io, &leftover, takeover).await });
}

/// Serves one client from the upgrade on (`leftover`: what it sent after the handshake's
/// head) until it leaves, misbehaves, goes silent, or the server shuts down.
pub async fn run(io: tls::Io, leftover: &[u8], takeover: Takeover) {
    let Takeover {
        state,
        slot,
        meter,
        dead_peer,
    } = takeover;
    let _slot: Slot = slot;
    let _client = state.metrics.client(Transport::WebSocket);
    let waker = poll_fn(|cx| Poll::Ready(cx.waker().clone())).await;
    let conn = Conn::new(io, waker, Transport::WebSocket, Framing::WebSocket);
    let _ended = Ended(conn.clone());
    let mut socket = Socket::new(conn.clone(), leftover, state.config.max_ws_message_bytes);
    // Declared after the socket, so dropped before it: it reads the socket's TCP state.
    let _dead_peer = dead_peer;
    // Only a metered page gets reports: the connections of other clients keep no timer for
    // them.
    let mut report = meter
        .is_some()
        .then(|| interval_at(Instant::now() + wire::REPORT_EVERY, wire::REPORT_EVERY));
    let heartbeat_every = state.config.ws_heartbeat();
    let mut heartbeat = interval_at(Instant::now() + heartbeat_every, heartbeat_every);
    let mut last_heard = Instant::now();
    let mut budget = MessageBudget::new(state.config.max_ws_messages_per_s);
    let mut client_closed = false;
    let shutdown = state.shutdown.clone();
    let mut shutting_down = std::pin::pin!(shutdown.cancelled());
    // What came with the handshake's head is read first.
    let mut pending = !socket.read.is_empty();

    let close: Option<CloseReason> = loop {
        if pending {
            pending = false;
            // Boxed, as every rare branch below: the task's future, which every connection
            // holds for its life, stays the size of the waiting it does.
            let answered = Box::pin(answer_all(
                &state,
                &mut socket,
                &mut budget,
                &mut client_closed,
            ))
            .await;
            if let Err(close) = answered {
                break close;
            }
        }
        tokio::select! {
            biased;
            () = &mut shutting_down => {
                break Some(reason(CloseCode::Away, "server shutting down"));
            }
            () = handed_over(&conn) => {
                if let Err(stop) = Box::pin(conn.take_over(&state)).await {
                    break close_for(&state, stop);
                }
            }
            read = socket.read() => {
                last_heard = Instant::now();
                match read {
                    Ok(true) => pending = true,
                    Ok(false) => break None,
                    Err(err) => match err.get_ref().and_then(|inner| inner.downcast_ref::<Refusal>()) {
                        Some(refusal) => break Some(refused(*refusal)),
                        None => break None,
                    },
                }
            }
            _ = tick(&mut report) => {
                let Some(meter) = &meter else { continue };
                let text = serde_json::to_string(&ServerMessage::Wire(meter.report()))
                    .expect("a report always encodes");
                state.metrics.sent(Transport::WebSocket, text.len());
                if let Err(stop) = Box::pin(socket.send(&state, Message::Text(text.into()))).await {
                    break close_for(&state, stop);
                }
            }
            _ = heartbeat.tick() => {
                if last_heard.elapsed() > state.config.ws_client_timeout() {
                    debug!("websocket client silent for too long; dropping it");
                    state.metrics.transport(Transport::WebSocket).silent_dropped.inc();
                    break None;
                }
                if let Err(stop) = Box::pin(socket.send(&state, Message::Ping(Bytes::new()))).await {
                    break close_for(&state, stop);
                }
            }
        }
    };
    if let Some(close) = close {
        Box::pin(close_connection(socket, close, client_closed)).await;
    }
}

/// Ends a connection the server closes with `close`: the close frame, unless the client
/// started the close, then a moment for the client to end its side.
async fn close_connection(mut socket: Socket, close: CloseReason, client_closed: bool) {
    let conn = socket.conn.clone();
    // From here on the task alone writes. A frame left part way would corrupt the close, so
    // a connection with one is dropped without it; a frame handed over and not begun is let
    // go.
    conn.drop_handed();
    // A slow client may not take even the close frame; it is dropped either way.
    if conn.torn()
        || socket
            .send_only(Message::Close(Some(close)), Duration::from_secs(1))
            .await
            .is_err()
        || client_closed
    {
        return;
    }
    // A close the server started: the client gets a moment to read it and close its side.
    // Up to a few KiB of what it still sends are read and let go, looking for that end; past
    // them the socket is left unread, so TCP holds back a client that keeps sending, and the
    // connection ends when the moment is over.
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        let mut drain = BytesMut::with_capacity(1024);
        let mut left = DRAIN_AFTER_CLOSE;
        while left > 0 {
            drain.clear();
            match conn.read(&mut drain).await {
                Ok(read) if read > 0 => left = left.saturating_sub(read),
                _ => return,
            }
        }
        std::future::pending::<()>().await;
    })
    .await;
    conn.shutdown().await;
}

/// Answers every whole message read so far. `Err` with the close to send (none for a client
/// gone) when the connection ends; `client_closed` says the client started it.
async fn answer_all(
    state: &Arc<AppState>,
    socket: &mut Socket,
    budget: &mut MessageBudget,
    client_closed: &mut bool,
) -> Result<(), Option<CloseReason>> {
    loop {
        let message = match socket.next() {
            Ok(Incoming::More) => return Ok(()),
            Ok(Incoming::Message(message)) => message,
            Err(err) => return Err(Some(protocol_close(state, &err))),
        };
        if !budget.take(Instant::now()) {
            let max = state.config.max_ws_messages_per_s;
            return Err(Some(reason(
                CloseCode::Policy,
                &format!("too many messages: at most {max} per second"),
            )));
        }
        let sent = match message {
            Received::Text(text) => {
                let Ok(text) = std::str::from_utf8(&text) else {
                    return Err(Some(reason(
                        CloseCode::Invalid,
                        "text message is not valid UTF-8",
                    )));
                };
                match decode(text).map_err(|err| Some(reason(CloseCode::Policy, &err.0)))? {
                    ClientMessage::Subscribe { symbols, since } => {
                        let filter = match symbols {
                            None => crate::feed::symbols::SymbolFilter::All,
                            Some(names) => symbol_filter(
                                names.iter().map(String::as_str),
                                state.universe(),
                                state.max_symbols(),
                            )
                            .map_err(|err| Some(reason(CloseCode::Policy, &err.0)))?,
                        };
                        let first = {
                            let mut out = socket.conn.out();
                            out.busy = true;
                            out.subscription
                                .replace(Subscription::new(&state.feed, filter, since))
                                .is_none()
                        };
                        if first {
                            Fanout::join(state, socket.conn.clone());
                        }
                        // Served at once: a cursor behind the head needs no publish.
                        socket.conn.release(state).await
                    }
                    ClientMessage::Ping { t } => {
                        let pong = ServerMessage::Pong {
                            t,
                            server_time: now_us(),
                        };
                        let text = serde_json::to_string(&pong).expect("a pong always encodes");
                        state.metrics.sent(Transport::WebSocket, text.len());
                        socket.send(state, Message::Text(text.into())).await
                    }
                }
            }
            Received::Binary => {
                return Err(Some(reason(
                    CloseCode::Unsupported,
                    "binary messages are not supported; send JSON text",
                )));
            }
            Received::Ping(bytes) => socket.send(state, Message::Pong(bytes)).await,
            Received::Pong => Ok(()),
            Received::Close => {
                debug!("websocket client closed");
                *client_closed = true;
                return Err(Some(reason(CloseCode::Normal, "bye")));
            }
        };
        sent.map_err(|stop| close_for(state, stop))?;
    }
}

/// How many messages a client may still send in the current second.
pub(crate) struct MessageBudget {
    per_second: u64,
    window_start: Instant,
    used: u64,
}

impl MessageBudget {
    pub(crate) fn new(per_second: u64) -> Self {
        Self {
            per_second,
            window_start: Instant::now(),
            used: 0,
        }
    }

    /// Counts one message received at `now`; `false` when it is over the budget.
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        if now.duration_since(self.window_start) >= Duration::from_secs(1) {
            self.window_start = now;
            self.used = 0;
        }
        self.used += 1;
        self.used <= self.per_second
    }
}

/// The close for a connection whose sending stopped: none for a client gone; a client too
/// slow is counted.
fn close_for(state: &AppState, stop: Stop) -> Option<CloseReason> {
    match stop {
        Stop::Gone => None,
        Stop::TooSlow => {
            debug!("websocket client took no data for too long; dropping it");
            state
                .metrics
                .transport(Transport::WebSocket)
                .slow_dropped
                .inc();
            Some(reason(CloseCode::Policy, "too slow"))
        }
    }
}

/// Decodes a client message; the error names what was wrong (docs/API.md shows the shapes).
pub fn decode(text: &str) -> Result<ClientMessage, InputError> {
    serde_json::from_str(text).map_err(|err| InputError(format!("invalid message: {err}")))
}

fn protocol_close(state: &AppState, err: &ProtocolError) -> CloseReason {
    let max = state.config.max_ws_message_bytes;
    match err {
        ProtocolError::Overflow => reason(CloseCode::Size, &format!("message over {max} bytes")),
        other => reason(CloseCode::Protocol, &format!("protocol error: {other}")),
    }
}

/// The close for a frame refused at its header.
fn refused(refusal: Refusal) -> CloseReason {
    let code = match refusal {
        Refusal::MessageTooLarge { .. } => CloseCode::Size,
        Refusal::ControlTooLong { .. } => CloseCode::Protocol,
    };
    reason(code, &refusal.to_string())
}

/// A close reason; the text is cut to fit the 123 bytes a close frame allows.
fn reason(code: CloseCode, text: &str) -> CloseReason {
    let mut end = text.len().min(123);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    CloseReason {
        code,
        description: Some(text[..end].to_owned()),
    }
}
