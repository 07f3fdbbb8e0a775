//! WebSocket: one connection, a subscribe message, then batches pushed by the server. Pings
//! every few seconds give this transport its own clock offset.

use std::cell::RefCell;

use futures::{FutureExt, SinkExt, StreamExt, pin_mut};
use gloo_net::websocket::futures::WebSocket;
use gloo_net::websocket::{Message, State};
use gloo_timers::future::TimeoutFuture;
use tickscope_shared::clock::ClockSample;
use tickscope_shared::wire::{ClientMessage, ServerMessage};

use super::{Emit, FeedEvent, Reconnect, Stop, TransportKind, next_ping_ms, now_us, resuming};

pub(super) async fn run(since: u64, stop: Stop, emit: Emit) {
    // Why the handshake fails, found once per run of failures (see `api::websocket_refusal`).
    let refusal = RefCell::new(None::<String>);
    resuming(since, &stop, &emit, async |cursor, reconnect, attempt| {
        connection(cursor, reconnect, attempt, &refusal, &stop, &emit).await
    })
    .await;
}

fn url(meter: &str, reconnect: Option<Reconnect>) -> String {
    let location = web_sys::window().expect("a window").location();
    let scheme = match location.protocol().as_deref() {
        Ok("https:") => "wss",
        _ => "ws",
    };
    let host = location.host().unwrap_or_default();
    match reconnect {
        Some(reason) => format!(
            "{scheme}://{host}/api/ws?meter={meter}&reconnect={}",
            reason.as_str()
        ),
        None => format!("{scheme}://{host}/api/ws?meter={meter}"),
    }
}

/// One connection, until it breaks (`Err` with why) or the client stops (`Ok`).
/// `reconnect` says why the last one ended, and gets why this one did. `attempt` is reset
/// once the server has sent something: a path that accepts the upgrade and closes at once
/// still backs off.
async fn connection(
    cursor: &mut u64,
    reconnect: &mut Option<Reconnect>,
    attempt: &mut u32,
    refusal: &RefCell<Option<String>>,
    stop: &Stop,
    emit: &Emit,
) -> Result<(), String> {
    let url = url(&stop.meter, reconnect.take());
    let mut socket =
        WebSocket::open(&url).map_err(|err| format!("cannot open WebSocket: {err}"))?;
    // The handshake: the socket is writable once open, or once it has failed. Nothing is
    // sent before, and nothing on a socket that failed.
    let opened = {
        let handshake = futures::future::poll_fn(|cx| socket.poll_ready_unpin(cx)).fuse();
        let stopped = stop.wait().fuse();
        pin_mut!(handshake, stopped);
        futures::select! {
            _ = handshake => true,
            () = stopped => false,
        }
    };
    if !opened {
        return Ok(());
    }
    if !matches!(socket.state(), State::Open) {
        // A browser tells a page nothing of a refused handshake: ask the server over HTTP
        // why, once for a run of failures.
        let known = refusal.borrow().clone();
        let why = match known {
            Some(why) => why,
            None => {
                let http = url.replacen("ws", "http", 1);
                let why = crate::api::websocket_refusal(&http).await;
                *refusal.borrow_mut() = Some(why.clone());
                why
            }
        };
        return Err(why);
    }
    *refusal.borrow_mut() = None;
    let (mut write, mut read) = socket.split();
    let subscribe = ClientMessage::Subscribe {
        symbols: None,
        since: Some(*cursor),
    };
    let subscribe = serde_json::to_string(&subscribe).expect("a subscribe message encodes");
    write
        .send(Message::Text(subscribe))
        .await
        .map_err(|err| format!("WebSocket failed: {err}"))?;
    emit(FeedEvent::Connected);
    // Resource Timing has no entry for a WebSocket; it is an HTTP/1.1 upgrade on a connection
    // of its own, since the server offers no WebSocket over HTTP/2 (RFC 8441).
    emit(FeedEvent::Protocol("http/1.1".into()));
    let stopped = stop.wait().fuse();
    pin_mut!(stopped);
    let mut ping = TimeoutFuture::new(0).fuse();
    let mut pings = 0u32;
    // Nothing, not even a pong, for two ping intervals: the feed is dead even if the socket
    // is not closed (a half-open connection). Reconnect.
    let silence_ms = (TransportKind::WebSocket.stall_after_us() / 1000) as u32;
    let mut silence = TimeoutFuture::new(silence_ms).fuse();
    loop {
        futures::select! {
            () = silence => {
                *reconnect = Some(Reconnect::Silent);
                return Err(format!("silent feed: nothing for {} s", silence_ms / 1000));
            }
            message = read.next().fuse() => match message {
                Some(Ok(Message::Text(text))) => {
                    silence = TimeoutFuture::new(silence_ms).fuse();
                    *attempt = 0;
                    let at_us = now_us();
                    match serde_json::from_str::<ServerMessage>(&text) {
                        Ok(ServerMessage::Batch(batch)) => {
                            *cursor = batch.cursor;
                            emit(FeedEvent::Batch { batch, bytes: text.len(), at_us });
                        }
                        Ok(ServerMessage::Pong { t, server_time }) => {
                            emit(FeedEvent::Clock(ClockSample {
                                sent_us: t as i64,
                                server_us: server_time,
                                received_us: at_us,
                            }));
                            emit(FeedEvent::Heard { at_us, bytes: text.len() });
                        }
                        // Heartbeats are HTTP streaming's; pongs keep a WebSocket's clock.
                        Ok(ServerMessage::Heartbeat { .. } | ServerMessage::Subscribed { .. }) => {}
                        Ok(ServerMessage::Wire(report)) => {
                            emit(FeedEvent::Wire(report));
                            emit(FeedEvent::Heard { at_us, bytes: text.len() });
                        }
                        Err(err) => return Err(format!("unreadable message: {err}")),
                    }
                }
                Some(Ok(Message::Bytes(_))) => {}
                Some(Err(err)) => return Err(format!("WebSocket closed: {err}")),
                None => return Err("WebSocket closed".into()),
            },
            () = ping => {
                let message = ClientMessage::Ping { t: now_us() as f64 };
                let text = serde_json::to_string(&message).expect("a ping encodes");
                write.send(Message::Text(text)).await.map_err(|err| format!("WebSocket failed: {err}"))?;
                pings += 1;
                ping = TimeoutFuture::new(next_ping_ms(pings)).fuse();
            }
            () = stopped => {
                let _ = write.close().await;
                return Ok(());
            }
        }
    }
}
