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

/// `GET /api/ws`: upgrades the connection and spawns its task.
pub async fn handshake(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    state.metrics.transport(Transport::WebSocket).requests.inc();
    origin::check(&req, &state.config.allowed_origins)?;
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
    let wire = wire::Connection::of(&req);
    if let Some(wire) = &wire {
        wire.stream();
    }
    let meter = wire.and_then(|wire| wire.meter());
    let hang_up = Arm::default();
    let socket = peer::Socket::of(&req);
    let mut response =
        response.map_body(|_, body| HangUp::new(body, hang_up.clone(), socket).boxed());
    let dead_peer = peer::Watch::new(&req, &state.metrics, Transport::WebSocket);
    actix_web::rt::spawn(connection(
        state.into_inner(),
        session,
        stream,
        slot,
        hang_up,
        meter,
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
) {
    let _client = state.metrics.client(Transport::WebSocket);
    let mut report = interval_at(Instant::now() + wire::REPORT_EVERY, wire::REPORT_EVERY);
    let mut published = state.feed.subscribe();
    let mut subscription: Option<Subscription> = None;
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
                            published.borrow_and_update();
                            let mut fresh = Subscription::new(&state.feed, filter, since);
                            let sent = send_pending(&state, &mut session, &mut fresh).await;
                            subscription = Some(fresh);
                            match sent {
                                Ok(()) => {}
                                Err(Stop::Gone) => break None,
                                Err(Stop::TooSlow) => break Some(reason(CloseCode::Policy, "too slow")),
                            }
                        }
                        Ok(ClientMessage::Ping { t }) => {
                            let pong = ServerMessage::Pong { t, server_time: now_us() };
                            let text = serde_json::to_string(&pong).expect("a pong always encodes");
                            state.metrics.sent(Transport::WebSocket, text.len());
                            if session.text(text).await.is_err() {
                                break None;
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
                        if session.pong(&bytes).await.is_err() {
                            break None;
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
            changed = published.changed(), if subscription.is_some() => {
                let Some(subscription) = subscription.as_mut() else { continue };
                if changed.is_err() {
                    break None;
                }
                match send_pending(&state, &mut session, subscription).await {
                    Ok(()) => {}
                    Err(Stop::Gone) => break None,
                    Err(Stop::TooSlow) => break Some(reason(CloseCode::Policy, "too slow")),
                }
            }
            _ = report.tick(), if meter.is_some() => {
                let Some(meter) = &meter else { continue };
                let text = serde_json::to_string(&ServerMessage::Wire(meter.report()))
                    .expect("a report always encodes");
                state.metrics.sent(Transport::WebSocket, text.len());
                if session.text(text).await.is_err() {
                    break None;
                }
            }
            _ = heartbeat.tick() => {
                if last_heard.elapsed() > state.config.ws_client_timeout() {
                    debug!("websocket client silent for too long; dropping it");
                    state.metrics.transport(Transport::WebSocket).silent_dropped.inc();
                    break None;
                }
                if session.ping(b"").await.is_err() {
                    break None;
                }
            }
        }
    };
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

/// Sends every batch the subscription is behind on. A client that fell far behind meanwhile
/// gets a conflated snapshot (see [`crate::feed::Feed::conflate_after`]), so what waits for a
/// slow client is bounded by the connection's buffers, never by how far behind it is.
async fn send_pending(
    state: &AppState,
    session: &mut Session,
    subscription: &mut Subscription,
) -> Result<(), Stop> {
    while let Some(frame) =
        subscription.next_frame(&state.feed, Framing::WebSocket, state.max_batch_ticks())
    {
        let len = frame.text.len();
        match tokio::time::timeout(state.config.slow_client_timeout(), session.text(frame.text))
            .await
        {
            Ok(Ok(())) => state.metrics.sent(Transport::WebSocket, len),
            Ok(Err(_closed)) => return Err(Stop::Gone),
            Err(_elapsed) => {
                debug!("websocket client took no data for too long; dropping it");
                state
                    .metrics
                    .transport(Transport::WebSocket)
                    .slow_dropped
                    .inc();
                return Err(Stop::TooSlow);
            }
        }
    }
    Ok(())
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
