//! WebSocket: one full-duplex connection; the client subscribes, the server pushes batches.
//!
//! Each connection is one task running [`connection`]: a single `select!` loop over the
//! client's messages, the feed's publish signal, the heartbeat and shutdown, which breaks with
//! the close reason to send. Bad input closes only that connection, with a code and a reason:
//! 1003 for binary messages, 1007 for text that is not UTF-8, 1008 for a message that is not a
//! valid request, 1009 for one over the size limit (refused at the header that declares it,
//! [`crate::frame_guard`]), 1002 for a broken frame; 1001 when the server shuts down. A
//! connection the server closes is shut down a short grace later ([`crate::hang_up`]).

use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use actix_ws::{
    AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, ProtocolError, Session,
};
use futures_util::Stream;
use tickscope_shared::wire::{ClientMessage, ServerMessage};
use tokio::time::{Instant, interval_at};
use tracing::debug;

use crate::AppState;
use crate::clock::now_us;
use crate::encode::Framing;
use crate::error::ApiError;
use crate::feed::Subscription;
use crate::frame_guard::{FrameGuard, Refusal};
use crate::hang_up::{Arm, HangUp};
use crate::limits::{self, Kind, Slot};
use crate::metrics::Transport;
use crate::origin;
use crate::peer;
use crate::query::{InputError, Params, symbol_filter};
use crate::wire::{self, Meter};

use super::push::{Outbox, PushBody};

/// `GET /api/ws`: upgrades the connection and spawns its task.
pub async fn handshake(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    state.metrics.transport(Transport::WebSocket).requests.inc();
    origin::check(&req, &state.config)?;
    let reconnect = Params::parse(req.query_string())?.reconnect()?;
    let slot = state.limits.admit(limits::peer(&req).ip(), Kind::Stream)?;
    let max_bytes = state.config.max_ws_message_bytes;
    // Frames declaring more than the limit are refused at their header, before actix buffers
    // them (see `frame_guard`).
    let guarded: Pin<Box<dyn Stream<Item = _>>> = Box::pin(FrameGuard::new(body, max_bytes));
    let body = web::Payload::from_request(&req, &mut Payload::Stream { payload: guarded })
        .await
        .expect("web::Payload takes any payload: its extractor cannot fail");
    let (response, session, stream) = actix_ws::handle(&req, body).map_err(|err| {
        ApiError::BadRequest(format!("this endpoint takes a WebSocket upgrade: {err}"))
    })?;
    let max_bytes = usize::try_from(max_bytes).unwrap_or(usize::MAX);
    let stream = stream
        .max_frame_size(max_bytes)
        .aggregate_continuations()
        .max_continuation_size(max_bytes);
    if let Some(reason) = reconnect {
        state.metrics.reconnected(Transport::WebSocket, reason);
    }
    // Upgraded: what the client sends from now on is this connection's, as it comes.
    if let Some(wire) = wire::Connection::of(&req) {
        wire.stream();
    }
    let meter = wire::meter(&req);
    let hang_up = Arm::default();
    let socket = peer::Socket::of(&req);
    let state = state.into_inner();
    // Batches go straight from the feed into the response body; the session carries the rest.
    let outbox = Outbox::new();
    let mut response = response.map_body(|_, body| {
        let body = PushBody::new(body, outbox.clone(), state.clone(), Framing::WebSocket).boxed();
        HangUp::new(body, hang_up.clone(), socket).boxed()
    });
    let dead_peer = peer::Watch::new(&req, &state.metrics, Transport::WebSocket);
    actix_web::rt::spawn(connection(
        state, session, stream, slot, hang_up, meter, outbox,
    ));
    dead_peer.attach(&mut response);
    Ok(response)
}

/// Serves one client until it leaves, misbehaves, goes silent, or the server shuts down.
async fn connection(
    state: Arc<AppState>,
    mut session: Session,
    mut stream: AggregatedMessageStream,
    _slot: Slot,
    hang_up: Arm,
    meter: Option<Arc<Meter>>,
    outbox: Rc<Outbox>,
) {
    let _client = state.metrics.client(Transport::WebSocket);
    let mut report = interval_at(Instant::now() + wire::REPORT_EVERY, wire::REPORT_EVERY);
    // Often enough to drop a client that takes no data within a quarter of the timeout.
    let slow_every = state.config.slow_client_timeout() / 4;
    let mut slow_check = interval_at(Instant::now() + slow_every, slow_every);
    let heartbeat_every = state.config.ws_heartbeat();
    let mut heartbeat = interval_at(Instant::now() + heartbeat_every, heartbeat_every);
    let mut last_heard = Instant::now();
    let mut budget = MessageBudget::new(state.config.max_ws_messages_per_s);
    let mut client_closed = false;
    // Made once: registering with the token on every turn of the loop costs a lock.
    let shutdown = state.shutdown.clone();
    let mut shutting_down = std::pin::pin!(shutdown.cancelled());

    let close: Option<CloseReason> = loop {
        tokio::select! {
            () = &mut shutting_down => {
                break Some(reason(CloseCode::Away, "server shutting down"));
            }
            message = stream.recv() => {
                last_heard = Instant::now();
                let Some(message) = message else { break None };
                if !budget.take(last_heard) {
                    let max = state.config.max_ws_messages_per_s;
                    break Some(reason(
                        CloseCode::Policy,
                        &format!("too many messages: at most {max} per second"),
                    ));
                }
                match message {
                    Ok(AggregatedMessage::Text(text)) => match decode(&text) {
                        Ok(ClientMessage::Subscribe { symbols, since }) => {
                            let filter = match symbols {
                                None => crate::symbols::SymbolFilter::All,
                                Some(names) => match symbol_filter(
                                    names.iter().map(String::as_str),
                                    state.universe(),
                                    state.max_symbols(),
                                ) {
                                    Ok(filter) => filter,
                                    Err(err) => break Some(reason(CloseCode::Policy, &err.0)),
                                },
                            };
                            outbox.subscribe(Subscription::new(&state.feed, filter, since));
                        }
                        Ok(ClientMessage::Ping { t }) => {
                            let pong = ServerMessage::Pong { t, server_time: now_us() };
                            let text = serde_json::to_string(&pong).expect("a pong always encodes");
                            state.metrics.sent(Transport::WebSocket, text.len());
                            if let Err(stop) = control(&state, session.text(text)).await {
                                break stop.close(&state);
                            }
                        }
                        Err(err) => break Some(reason(CloseCode::Policy, &err.0)),
                    },
                    Ok(AggregatedMessage::Binary(_)) => {
                        break Some(reason(
                            CloseCode::Unsupported,
                            "binary messages are not supported; send JSON text",
                        ));
                    }
                    Ok(AggregatedMessage::Ping(bytes)) => {
                        if let Err(stop) = control(&state, session.pong(&bytes)).await {
                            break stop.close(&state);
                        }
                    }
                    Ok(AggregatedMessage::Pong(_)) => {}
                    Ok(AggregatedMessage::Close(their_reason)) => {
                        debug!(?their_reason, "websocket client closed");
                        client_closed = true;
                        break Some(reason(CloseCode::Normal, "bye"));
                    }
                    Err(err) => break Some(protocol_close(&state, &err)),
                }
            }
            _ = slow_check.tick() => {
                if outbox.stalled_for(&state) > state.config.slow_client_timeout() {
                    break Stop::TooSlow.close(&state);
                }
            }
            _ = report.tick(), if meter.is_some() => {
                let Some(meter) = &meter else { continue };
                let text = serde_json::to_string(&ServerMessage::Wire(meter.report()))
                    .expect("a report always encodes");
                state.metrics.sent(Transport::WebSocket, text.len());
                if let Err(stop) = control(&state, session.text(text)).await {
                    break stop.close(&state);
                }
            }
            _ = heartbeat.tick() => {
                if last_heard.elapsed() > state.config.ws_client_timeout() {
                    debug!("websocket client silent for too long; dropping it");
                    state.metrics.transport(Transport::WebSocket).silent_dropped.inc();
                    break None;
                }
                if let Err(stop) = control(&state, session.ping(b"")).await {
                    break stop.close(&state);
                }
            }
        }
    };
    // No data frame after the close.
    outbox.close();
    // A close the client started is ended by the client; any other by the server, which
    // keeps the client's stream unread meanwhile.
    if !client_closed {
        hang_up.arm(stream);
    }
    if let Some(close) = close {
        // A slow client may not take even the close frame; it is dropped either way.
        let _ = tokio::time::timeout(Duration::from_secs(1), session.close(Some(close))).await;
    }
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

/// Queues a control message (a pong, a ping, a report). A client that takes none for the
/// slow-client timeout is too slow; batches never queue (see [`super::push`]).
async fn control<E>(
    state: &AppState,
    send: impl std::future::Future<Output = Result<(), E>>,
) -> Result<(), Stop> {
    match tokio::time::timeout(state.config.slow_client_timeout(), send).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_closed)) => Err(Stop::Gone),
        Err(_elapsed) => Err(Stop::TooSlow),
    }
}

/// Decodes a client message; the error names what was wrong (the README shows the shapes).
pub fn decode(text: &str) -> Result<ClientMessage, InputError> {
    serde_json::from_str(text).map_err(|err| InputError(format!("invalid message: {err}")))
}

fn protocol_close(state: &AppState, err: &ProtocolError) -> CloseReason {
    let max = state.config.max_ws_message_bytes;
    if let Some(refusal) = Refusal::of(err) {
        let code = match refusal {
            Refusal::MessageTooLarge { .. } => CloseCode::Size,
            Refusal::ControlTooLong { .. } => CloseCode::Protocol,
        };
        return reason(code, &refusal.to_string());
    }
    match err {
        ProtocolError::Overflow => reason(CloseCode::Size, &format!("message over {max} bytes")),
        ProtocolError::Io(io) if is_utf8_error(io) => {
            reason(CloseCode::Invalid, "text message is not valid UTF-8")
        }
        ProtocolError::Io(io) if io.to_string().contains("continuation size") => {
            reason(CloseCode::Size, &format!("message over {max} bytes"))
        }
        other => reason(CloseCode::Protocol, &format!("protocol error: {other}")),
    }
}

/// Whether actix-ws ended the stream on a text message that is not UTF-8, and not on another
/// `InvalidData`, such as a frame with reserved bits set. It words the error as
/// `str::Utf8Error` does ("invalid utf-8 sequence ...", "incomplete utf-8 byte sequence ...").
fn is_utf8_error(err: &std::io::Error) -> bool {
    err.kind() == std::io::ErrorKind::InvalidData && err.to_string().contains("utf-8")
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
