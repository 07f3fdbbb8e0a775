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
//! connection the server closes is shut down a short grace later ([`CLOSE_GRACE`]).

use std::io::IoSlice;
use std::sync::Arc;
use std::time::Duration;

use actix_codec::{Decoder, Encoder};
use actix_http::ws::{CloseCode, CloseReason, Codec, Frame, Item, Message, ProtocolError};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use bytes::{Bytes, BytesMut};
use tickscope_shared::wire::{ClientMessage, ServerMessage};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, interval_at};
use tracing::debug;

use crate::AppState;
use crate::clock::now_us;
use crate::encode::Framing;
use crate::error::ApiError;
use crate::feed::Subscription;
use crate::frame_guard::{FrameScanner, Refusal};
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
    io: tls::Io,
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
/// How long a client gets, after the server's close frame, to close the connection itself.
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// What a client may still send after the server's close and have it read.
const DRAIN_AFTER_CLOSE: usize = 16 * 1024;

impl Socket {
    fn new(io: tls::Io, leftover: &[u8], max_bytes: u64) -> Self {
        let max = usize::try_from(max_bytes).unwrap_or(usize::MAX);
        Self {
            io,
            read: BytesMut::from(leftover),
            scanner: FrameScanner::new(max_bytes),
            codec: Codec::new().max_size(max),
            message: None,
            max_bytes: max,
        }
    }

    /// Reads what the client sent; `Ok(false)` when it has closed its side.
    async fn read(&mut self) -> std::io::Result<bool> {
        if self.read.capacity() - self.read.len() < READ_CHUNK {
            self.read.reserve(READ_CHUNK);
        }
        let before = self.read.len();
        let read = self.io.read_buf(&mut self.read).await?;
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

    /// Writes `parts` as they are, within the slow-client timeout.
    async fn write(&mut self, parts: &[&[u8]], timeout: Duration) -> Result<(), Stop> {
        match tokio::time::timeout(timeout, write_all(&mut self.io, parts)).await {
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

/// Writes every byte of `parts`, in as few calls as the socket allows.
async fn write_all(io: &mut (impl AsyncWrite + Unpin), parts: &[&[u8]]) -> std::io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = parts.iter().map(|part| IoSlice::new(part)).collect();
    let mut slices = &mut slices[..];
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        let written = io.write_vectored(slices).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, written);
    }
    io.flush().await
}

/// Runs [`run`] as a task of its own on this worker, tracked by [`AppState::websockets`] so
/// shutdown waits for its close.
pub fn spawn(io: tls::Io, leftover: Vec<u8>, takeover: Takeover) {
    let tracker = takeover.state.websockets.clone();
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
    let mut socket = Socket::new(io, leftover, state.config.max_ws_message_bytes);
    // Declared after the socket, so dropped before it: it reads the socket's TCP state.
    let _dead_peer = dead_peer;
    let slow = state.config.slow_client_timeout();
    let mut report = interval_at(Instant::now() + wire::REPORT_EVERY, wire::REPORT_EVERY);
    let heartbeat_every = state.config.ws_heartbeat();
    let mut heartbeat = interval_at(Instant::now() + heartbeat_every, heartbeat_every);
    let mut last_heard = Instant::now();
    let mut budget = MessageBudget::new(state.config.max_ws_messages_per_s);
    let mut subscription: Option<Subscription> = None;
    let mut published = state.feed.subscribe();
    let mut feed_gone = false;
    let mut client_closed = false;
    let shutdown = state.shutdown.clone();
    let mut shutting_down = std::pin::pin!(shutdown.cancelled());
    // What came with the handshake's head is read first.
    let mut pending = !socket.read.is_empty();

    let close: Option<CloseReason> = loop {
        if pending {
            pending = false;
            let answered = answer_all(
                &state,
                &mut socket,
                &mut budget,
                &mut subscription,
                &mut published,
                &mut client_closed,
            )
            .await;
            if let Err(close) = answered {
                break close;
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
            changed = published.changed(), if subscription.is_some() && !feed_gone => {
                if changed.is_err() {
                    feed_gone = true;
                    continue;
                }
                published.borrow_and_update();
                let Some(subscribed) = subscription.as_mut() else { continue };
                if let Err(stop) = send_batches(&state, &mut socket, subscribed).await {
                    break stop.close(&state);
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
            match socket.io.read(&mut drain).await {
                Ok(read) if read > 0 => left = left.saturating_sub(read),
                _ => return,
            }
        }
        std::future::pending::<()>().await;
    })
    .await;
    let _ = tokio::time::timeout(Duration::from_millis(100), socket.io.shutdown()).await;
}

/// Answers every whole message read so far. `Err` with the close to send (none for a client
/// gone) when the connection ends; `client_closed` says the client started it.
async fn answer_all(
    state: &AppState,
    socket: &mut Socket,
    budget: &mut MessageBudget,
    subscription: &mut Option<Subscription>,
    published: &mut tokio::sync::watch::Receiver<u64>,
    client_closed: &mut bool,
) -> Result<(), Option<CloseReason>> {
    let slow = state.config.slow_client_timeout();
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
                            None => crate::symbols::SymbolFilter::All,
                            Some(names) => symbol_filter(
                                names.iter().map(String::as_str),
                                state.universe(),
                                state.max_symbols(),
                            )
                            .map_err(|err| Some(reason(CloseCode::Policy, &err.0)))?,
                        };
                        // Seen before the feed is read, so a publish in between wakes the
                        // loop again.
                        published.borrow_and_update();
                        let subscribed =
                            subscription.insert(Subscription::new(&state.feed, filter, since));
                        // Served at once: a cursor behind the head needs no publish.
                        send_batches(state, socket, subscribed).await
                    }
                    ClientMessage::Ping { t } => {
                        let pong = ServerMessage::Pong {
                            t,
                            server_time: now_us(),
                        };
                        let text = serde_json::to_string(&pong).expect("a pong always encodes");
                        state.metrics.sent(Transport::WebSocket, text.len());
                        socket.send(Message::Text(text.into()), slow).await
                    }
                }
            }
            Received::Binary => {
                return Err(Some(reason(
                    CloseCode::Unsupported,
                    "binary messages are not supported; send JSON text",
                )));
            }
            Received::Ping(bytes) => socket.send(Message::Pong(bytes), slow).await,
            Received::Pong => Ok(()),
            Received::Close => {
                debug!("websocket client closed");
                *client_closed = true;
                return Err(Some(reason(CloseCode::Normal, "bye")));
            }
        };
        sent.map_err(|stop| stop.close(state))?;
    }
}

/// Sends the client every batch its subscription is behind on, each a text frame: a header
/// of its own and the payload shared by every client at the same cursor.
async fn send_batches(
    state: &AppState,
    socket: &mut Socket,
    subscription: &mut Subscription,
) -> Result<(), Stop> {
    let slow = state.config.slow_client_timeout();
    while let Some(frame) =
        subscription.next_frame(&state.feed, Framing::WebSocket, state.max_batch_ticks())
    {
        let payload = frame.text.into_bytes();
        state.metrics.sent(Transport::WebSocket, payload.len());
        let header = text_frame_header(payload.len());
        socket.write(&[&header, &payload], slow).await?;
    }
    Ok(())
}

/// The header of an unmasked, final text frame of `len` bytes (RFC 6455 section 5.2).
fn text_frame_header(len: usize) -> Bytes {
    const FIN_TEXT: u8 = 0x81;
    let mut header = Vec::with_capacity(10);
    header.push(FIN_TEXT);
    match len {
        0..=125 => header.push(len as u8),
        126..=0xffff => {
            header.push(126);
            header.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            header.push(127);
            header.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    Bytes::from(header)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_headers_take_the_shortest_length_form() {
        assert_eq!(&text_frame_header(0)[..], [0x81, 0]);
        assert_eq!(&text_frame_header(125)[..], [0x81, 125]);
        assert_eq!(&text_frame_header(126)[..], [0x81, 126, 0, 126]);
        assert_eq!(&text_frame_header(65_535)[..], [0x81, 126, 0xff, 0xff]);
        assert_eq!(
            &text_frame_header(65_536)[..],
            [0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]
        );
    }
}
