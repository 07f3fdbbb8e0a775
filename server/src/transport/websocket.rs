//! WebSocket: one full-duplex connection; the client subscribes, the server pushes batches.
//!
//! The handshake goes through the app like any request (origin check, limits, the wire
//! meter); its 101 answer carries a [`Takeover`], and [`crate::upgrade`], which actix-http
//! hands every upgrade request with its connection, writes the answer and runs [`run`] on the
//! socket itself: no actix-http dispatcher, no response body and no actix-ws session between
//! the feed and the socket. Each connection is one task: a single `select!` loop over the
//! client's frames, the feed's publish signal, the heartbeat, the meter's reports and
//! shutdown, which breaks with the close reason to send. A publish has the task write each
//! waiting batch as a frame header of its own and the payload shared by every client at the
//! same cursor, in one vectored write; a write the client does not take within the
//! slow-client timeout drops it as too slow (1008). Bad input closes only that connection, with a code and a reason:
//! 1003 for binary messages, 1007 for text that is not UTF-8, 1008 for a message that is not a
//! valid request, 1009 for one over the size limit (refused at the header that declares it,
//! [`crate::frame_guard`]), 1002 for a broken frame; 1001 when the server shuts down. A
//! connection the server closes is shut down a short grace later ([`crate::hang_up`]).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io::IoSlice;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use actix_codec::{Decoder, Encoder};
use actix_http::ws::{CloseCode, CloseReason, Codec, Frame, Item, Message, ProtocolError};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use bytes::{Bytes, BytesMut};
use tickscope_shared::wire::{ClientMessage, ServerMessage};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, interval_at};
use tracing::debug;

use crate::AppState;
use crate::clock::now_us;
use crate::encode::Framing;
use crate::error::ApiError;
use crate::feed::Subscription;
use crate::frame_guard::{FrameScanner, Refusal};
use crate::hang_up::CLOSE_GRACE;
use crate::limits::{self, Kind, Slot};
use crate::metrics::Transport;
use crate::origin;
use crate::peer;
use crate::query::{InputError, Params, symbol_filter};
use crate::tls;
use crate::wire::{self, Meter};

/// Put on a request by [`crate::upgrade`], which takes the connection over once the handshake
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
/// [`crate::upgrade`] writes the answer and runs the connection.
pub async fn handshake(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    state.metrics.transport(Transport::WebSocket).requests.inc();
    origin::check(&req, &state.config)?;
    let reconnect = Params::parse(req.query_string())?.reconnect()?;
    let mut response = actix_http::ws::handshake(req.head()).map_err(|err| {
        ApiError::BadRequest(format!("this endpoint takes a WebSocket upgrade: {err}"))
    })?;
    if !req.extensions().contains::<Upgrading>() {
        return Err(ApiError::BadRequest(
            "a WebSocket opens over HTTP/1.1 (this server has no WebSocket over HTTP/2)".into(),
        ));
    }
    let slot = state.limits.admit(limits::peer(&req).ip(), Kind::Stream)?;
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

/// A connection's socket after the upgrade: the bytes read and not yet decoded, the scan that
/// refuses an oversized frame at its header, and the message being put together from
/// fragments.
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

/// Bytes read for a connection beyond this are given back once decoded: an idle connection
/// keeps a small buffer.
const READ_CHUNK: usize = 512;
const KEEP_READ_BUFFER: usize = 4096;
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
        let mut chunk = [0u8; READ_CHUNK];
        let read = self.conn.read(&mut chunk).await?;
        // Refused at the header, before the frame is held (`frame_guard`).
        if let Err(refusal) = self.scanner.scan(&chunk[..read]) {
            return Err(std::io::Error::other(refusal));
        }
        self.read.extend_from_slice(&chunk[..read]);
        Ok(read > 0)
    }

    /// The next whole message in what was read.
    fn next(&mut self) -> Result<Incoming, ProtocolError> {
        loop {
            let Some(frame) = self.codec.decode(&mut self.read)? else {
                if self.read.is_empty() && self.read.capacity() > KEEP_READ_BUFFER {
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

    /// Writes `parts` after whatever waits, within the slow-client timeout.
    async fn write(&mut self, parts: &[&[u8]], timeout: Duration) -> Result<(), Stop> {
        self.conn.put(parts).map_err(|_| Stop::Gone)?;
        self.drain(timeout).await
    }

    /// Writes what waits for the socket, within the slow-client timeout.
    async fn drain(&mut self, timeout: Duration) -> Result<(), Stop> {
        match tokio::time::timeout(timeout, self.conn.drain()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Stop::Gone),
            Err(_elapsed) => Err(Stop::TooSlow),
        }
    }

    /// Sends a control message or a text the server makes (a pong, a report).
    async fn send(&mut self, message: Message, timeout: Duration) -> Result<(), Stop> {
        let mut frame = BytesMut::new();
        self.codec
            .encode(message, &mut frame)
            .map_err(|_| Stop::Gone)?;
        self.write(&[&frame], timeout).await
    }
}

/// A WebSocket's socket, shared by its connection's task and its worker's fan-out task
/// ([`Hub`]), both on the worker's thread. The fan-out writes each publish's batches straight
/// to every socket that has nothing waiting; what a socket does not take waits in `backlog`,
/// and the connection's task writes it (and what the client fell behind on) when the socket can
/// take it, or drops the client as too slow.
struct Conn {
    io: RefCell<tls::Io>,
    subscription: RefCell<Option<Subscription>>,
    /// Bytes the socket has not taken yet, in order.
    backlog: RefCell<VecDeque<Bytes>>,
    /// TLS records written into the session but not yet to the socket.
    unflushed: Cell<bool>,
    /// The connection's task, while it waits for something to write.
    task: Cell<Option<Waker>>,
    /// The connection is closing: no more batches.
    closed: Cell<bool>,
}

impl Conn {
    fn new(io: tls::Io) -> Rc<Self> {
        Rc::new(Self {
            io: RefCell::new(io),
            subscription: RefCell::new(None),
            backlog: RefCell::new(VecDeque::new()),
            unflushed: Cell::new(false),
            task: Cell::new(None),
            closed: Cell::new(false),
        })
    }

    fn waiting(&self) -> bool {
        !self.backlog.borrow().is_empty() || self.unflushed.get()
    }

    /// Writes `parts` now as far as the socket takes them, keeping the rest for the task.
    fn put(&self, parts: &[&[u8]]) -> std::io::Result<()> {
        if self.waiting() {
            let mut backlog = self.backlog.borrow_mut();
            backlog.extend(parts.iter().map(|part| Bytes::copy_from_slice(part)));
            return Ok(());
        }
        let mut io = self.io.borrow_mut();
        let mut cx = Context::from_waker(Waker::noop());
        let mut slices: Vec<IoSlice<'_>> = parts.iter().map(|part| IoSlice::new(part)).collect();
        let mut slices = &mut slices[..];
        let mut written_in_all = 0;
        while !slices.is_empty() {
            match Pin::new(&mut *io).poll_write_vectored(&mut cx, slices) {
                Poll::Ready(Ok(0)) => return Err(std::io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(written)) => {
                    written_in_all += written;
                    IoSlice::advance_slices(&mut slices, written);
                }
                Poll::Ready(Err(err)) => return Err(err),
                Poll::Pending => break,
            }
        }
        if !slices.is_empty() {
            // The rest waits, from the first byte the socket did not take.
            let mut skip = written_in_all;
            let mut backlog = self.backlog.borrow_mut();
            for part in parts {
                if skip >= part.len() {
                    skip -= part.len();
                    continue;
                }
                backlog.push_back(Bytes::copy_from_slice(&part[skip..]));
                skip = 0;
            }
        }
        if !matches!(Pin::new(&mut *io).poll_flush(&mut cx), Poll::Ready(Ok(()))) {
            self.unflushed.set(true);
        }
        drop(io);
        if self.waiting()
            && let Some(task) = self.task.take()
        {
            task.wake();
        }
        Ok(())
    }

    /// Writes the batches the subscription is behind on, unless something waits already.
    fn push(&self, state: &AppState) -> std::io::Result<()> {
        if self.closed.get() || self.waiting() {
            return Ok(());
        }
        loop {
            let frame = {
                let mut subscription = self.subscription.borrow_mut();
                let Some(subscription) = subscription.as_mut() else {
                    return Ok(());
                };
                subscription.next_frame(&state.feed, Framing::WebSocket, state.max_batch_ticks())
            };
            let Some(frame) = frame else { return Ok(()) };
            let payload = frame.text.into_bytes();
            state.metrics.sent(Transport::WebSocket, payload.len());
            let header = super::push::text_frame_header(payload.len());
            self.put(&[&header, &payload])?;
            if self.waiting() {
                return Ok(());
            }
        }
    }

    /// Resolves once something waits to be written.
    async fn backlogged(&self) {
        std::future::poll_fn(|cx| {
            if self.waiting() {
                Poll::Ready(())
            } else {
                self.task.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await;
    }

    /// Writes everything that waits, as fast as the socket takes it.
    async fn drain(&self) -> std::io::Result<()> {
        std::future::poll_fn(|cx| {
            let mut io = self.io.borrow_mut();
            loop {
                let mut backlog = self.backlog.borrow_mut();
                let Some(front) = backlog.front_mut() else {
                    break;
                };
                match Pin::new(&mut *io).poll_write(cx, front) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                    }
                    Poll::Ready(Ok(written)) => {
                        let _ = front.split_to(written);
                        if front.is_empty() {
                            backlog.pop_front();
                        }
                        self.unflushed.set(true);
                    }
                    Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                    Poll::Pending => return Poll::Pending,
                }
            }
            let flushed = Pin::new(&mut *io).poll_flush(cx);
            if flushed.is_ready() {
                self.unflushed.set(false);
            }
            flushed
        })
        .await
    }

    async fn read(&self, chunk: &mut [u8]) -> std::io::Result<usize> {
        std::future::poll_fn(|cx| {
            let mut buf = ReadBuf::new(chunk);
            let mut io = self.io.borrow_mut();
            std::task::ready!(Pin::new(&mut *io).poll_read(cx, &mut buf))?;
            Poll::Ready(Ok(buf.filled().len()))
        })
        .await
    }
}

/// A worker's WebSocket connections, and the one task that writes each publish to them all.
struct Hub {
    conns: RefCell<Vec<Weak<Conn>>>,
}

thread_local! {
    static HUB: RefCell<Option<Rc<Hub>>> = const { RefCell::new(None) };
}

impl Hub {
    /// Adds `conn` to this worker's hub, starting the hub's task with the first.
    fn join(state: &Arc<AppState>, conn: &Rc<Conn>) {
        let hub = HUB.with(|hub| {
            hub.borrow_mut()
                .get_or_insert_with(|| {
                    let hub = Rc::new(Hub {
                        conns: RefCell::new(Vec::new()),
                    });
                    actix_web::rt::spawn(fan_out(hub.clone(), state.clone()));
                    hub
                })
                .clone()
        });
        hub.conns.borrow_mut().push(Rc::downgrade(conn));
    }
}

/// On each publish, writes every connection's batches to its socket, one after the other.
async fn fan_out(hub: Rc<Hub>, state: Arc<AppState>) {
    let mut published = state.feed.subscribe();
    let shutdown = state.shutdown.clone();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = published.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
        published.borrow_and_update();
        let conns: Vec<Rc<Conn>> = {
            let mut conns = hub.conns.borrow_mut();
            conns.retain(|conn| conn.strong_count() > 0);
            conns.iter().filter_map(Weak::upgrade).collect()
        };
        for conn in conns {
            if conn.push(&state).is_err() {
                // Its task finds the socket broken on its next read or write.
                conn.closed.set(true);
                if let Some(task) = conn.task.take() {
                    task.wake();
                }
            }
        }
    }
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
    let conn = Conn::new(io);
    Hub::join(&state, &conn);
    let mut socket = Socket::new(conn.clone(), leftover, state.config.max_ws_message_bytes);
    // Declared after the socket, so dropped before it: it reads the socket's TCP state.
    let _dead_peer = dead_peer;
    let slow = state.config.slow_client_timeout();
    let mut report = interval_at(Instant::now() + wire::REPORT_EVERY, wire::REPORT_EVERY);
    let heartbeat_every = state.config.ws_heartbeat();
    let mut heartbeat = interval_at(Instant::now() + heartbeat_every, heartbeat_every);
    let mut last_heard = Instant::now();
    let mut budget = MessageBudget::new(state.config.max_ws_messages_per_s);
    let mut client_closed = false;
    let shutdown = state.shutdown.clone();
    let mut shutting_down = std::pin::pin!(shutdown.cancelled());
    // What came with the handshake's head is read first.
    let mut pending = !socket.read.is_empty();

    let close: Option<CloseReason> = 'connection: loop {
        if pending {
            pending = false;
            loop {
                let message = match socket.next() {
                    Ok(Incoming::More) => break,
                    Ok(Incoming::Message(message)) => message,
                    Err(err) => break 'connection Some(protocol_close(&state, &err)),
                };
                if !budget.take(Instant::now()) {
                    let max = state.config.max_ws_messages_per_s;
                    break 'connection Some(reason(
                        CloseCode::Policy,
                        &format!("too many messages: at most {max} per second"),
                    ));
                }
                match message {
                    Received::Text(text) => {
                        let Ok(text) = std::str::from_utf8(&text) else {
                            break 'connection Some(reason(
                                CloseCode::Invalid,
                                "text message is not valid UTF-8",
                            ));
                        };
                        match decode(text) {
                            Ok(ClientMessage::Subscribe { symbols, since }) => {
                                let filter = match symbols {
                                    None => crate::symbols::SymbolFilter::All,
                                    Some(names) => match symbol_filter(
                                        names.iter().map(String::as_str),
                                        state.universe(),
                                        state.max_symbols(),
                                    ) {
                                        Ok(filter) => filter,
                                        Err(err) => {
                                            break 'connection Some(reason(
                                                CloseCode::Policy,
                                                &err.0,
                                            ));
                                        }
                                    },
                                };
                                // Served at once: a cursor behind the head needs no publish.
                                *conn.subscription.borrow_mut() =
                                    Some(Subscription::new(&state.feed, filter, since));
                                if conn.push(&state).is_err() {
                                    break 'connection None;
                                }
                            }
                            Ok(ClientMessage::Ping { t }) => {
                                let pong = ServerMessage::Pong {
                                    t,
                                    server_time: now_us(),
                                };
                                let text =
                                    serde_json::to_string(&pong).expect("a pong always encodes");
                                state.metrics.sent(Transport::WebSocket, text.len());
                                if let Err(stop) =
                                    socket.send(Message::Text(text.into()), slow).await
                                {
                                    break 'connection stop.close(&state);
                                }
                            }
                            Err(err) => break 'connection Some(reason(CloseCode::Policy, &err.0)),
                        }
                    }
                    Received::Binary => {
                        break 'connection Some(reason(
                            CloseCode::Unsupported,
                            "binary messages are not supported; send JSON text",
                        ));
                    }
                    Received::Ping(bytes) => {
                        if let Err(stop) = socket.send(Message::Pong(bytes), slow).await {
                            break 'connection stop.close(&state);
                        }
                    }
                    Received::Pong => {}
                    Received::Close => {
                        debug!("websocket client closed");
                        client_closed = true;
                        break 'connection Some(reason(CloseCode::Normal, "bye"));
                    }
                }
            }
        }
        tokio::select! {
            () = &mut shutting_down => {
                break Some(reason(CloseCode::Away, "server shutting down"));
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
            () = conn.backlogged() => {
                if conn.closed.get() {
                    break None;
                }
                // What the socket did not take, then what the client fell behind on meanwhile.
                if let Err(stop) = socket.drain(slow).await {
                    break stop.close(&state);
                }
                if conn.push(&state).is_err() {
                    break None;
                }
            }
            _ = report.tick(), if meter.is_some() => {
                let Some(meter) = &meter else { continue };
                let text = serde_json::to_string(&ServerMessage::Wire(meter.report()))
                    .expect("a report always encodes");
                state.metrics.sent(Transport::WebSocket, text.len());
                if let Err(stop) = socket.send(Message::Text(text.into()), slow).await {
                    break stop.close(&state);
                }
            }
            _ = heartbeat.tick() => {
                if last_heard.elapsed() > state.config.ws_client_timeout() {
                    debug!("websocket client silent for too long; dropping it");
                    state.metrics.transport(Transport::WebSocket).silent_dropped.inc();
                    break None;
                }
                if let Err(stop) = socket.send(Message::Ping(Bytes::new()), slow).await {
                    break stop.close(&state);
                }
            }
        }
    };
    // No batch after the close.
    conn.closed.set(true);
    let Some(close) = close else { return };
    // A slow client may not take even the close frame; it is dropped either way.
    if socket
        .send(Message::Close(Some(close)), Duration::from_secs(1))
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
        let mut drain = [0u8; 1024];
        let mut left = DRAIN_AFTER_CLOSE;
        while left > 0 {
            match conn.read(&mut drain).await {
                Ok(read) if read > 0 => left = left.saturating_sub(read),
                _ => return,
            }
        }
        std::future::pending::<()>().await;
    })
    .await;
    let _ = tokio::time::timeout(
        Duration::from_millis(100),
        std::future::poll_fn(|cx| Pin::new(&mut *conn.io.borrow_mut()).poll_shutdown(cx)),
    )
    .await;
}

/// How many messages a client may still send in the current second.
struct MessageBudget {
    per_second: u64,
    window_start: Instant,
    used: u64,
}

impl MessageBudget {
    fn new(per_second: u64) -> Self {
        Self {
            per_second,
            window_start: Instant::now(),
            used: 0,
        }
    }

    /// Counts one message received at `now`; `false` when it is over the budget.
    fn take(&mut self, now: Instant) -> bool {
        if now.duration_since(self.window_start) >= Duration::from_secs(1) {
            self.window_start = now;
            self.used = 0;
        }
        self.used += 1;
        self.used <= self.per_second
    }
}

/// Why sending stopped.
enum Stop {
    /// The connection is closed.
    Gone,
    /// The client took no data for the slow-client timeout.
    TooSlow,
}

impl Stop {
    /// The close to send, if any: a gone connection takes none. A client too slow is counted.
    fn close(self, state: &AppState) -> Option<CloseReason> {
        match self {
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
}

/// Decodes a client message; the error names what was wrong (the README shows the shapes).
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
