//! The one fan-out per worker that writes every publish to every subscribed connection that
//! the server took out of actix-http: WebSockets after their upgrade (`websocket.rs`), and
//! SSE and HTTP streaming over HTTP/1.1 after their response head (`push.rs`).
//!
//! As uWebSockets sends a publish: on each publish, [`Fanout`] writes each connection's
//! waiting batches straight to its socket, each one `send` of a frame shared by every client
//! at the same cursor (a WebSocket frame with its header, an SSE event, a line). A publish
//! wakes no connection's task. Only when a socket does not take a frame whole does the
//! fan-out hand the rest to the connection's task ([`Conn::take_over`]), which finishes it
//! under the slow-client timeout, catches up, and hands the socket back.

use std::cell::{Cell, OnceCell, RefCell};
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Interval;

use crate::AppState;
use crate::connection::tls;
use crate::feed::Subscription;
use crate::feed::encode::Framing;
use crate::metrics::Transport;

/// The most one read takes from a socket.
const READ_CHUNK: usize = 16 * 1024;

/// What a connection's task and its worker's [`Fanout`] share: the socket, and who writes to
/// it. Both run on the same worker thread and take the `RefCell`s only between awaits.
pub struct Conn {
    io: RefCell<tls::Io>,
    /// What it carries, for the metrics, and how its batches are framed.
    transport: Transport,
    framing: Framing,
    out: RefCell<Out>,
    /// The connection's task: woken when the fan-out hands it a write to finish, and when
    /// the socket can take that write.
    waker: Waker,
    /// The task has ended; the fan-out lets the connection go.
    ended: Cell<bool>,
    /// Part of a frame is on the wire and the rest is not: nothing more can be framed after
    /// it, not even a close.
    torn: Cell<bool>,
    /// The fan-out the connection joined on subscribing, told when the connection ends.
    fanout: OnceCell<Weak<Fanout>>,
}

/// The sending side of a connection.
#[derive(Default)]
pub struct Out {
    pub subscription: Option<Subscription>,
    /// The task is writing (a catch-up, a control message, a handed-over frame, the close):
    /// the fan-out passes over the connection so no frame is written into the middle of
    /// another.
    pub busy: bool,
    /// What the fan-out handed the task (with `busy`).
    handed: Option<Handed>,
}

/// A write the fan-out started and the socket did not finish at once.
enum Handed {
    /// The rest of a frame the socket took only part of, or none of.
    Rest(Bytes),
    /// Frames taken whole, still to flush (TLS holds them).
    Flush,
    /// The socket failed: the client is gone.
    Failed,
}

impl Conn {
    /// A connection whose task wakes with `waker`, not yet subscribed.
    pub fn new(io: tls::Io, waker: Waker, transport: Transport, framing: Framing) -> Rc<Self> {
        Rc::new(Self {
            io: RefCell::new(io),
            transport,
            framing,
            out: RefCell::new(Out::default()),
            waker,
            ended: Cell::new(false),
            torn: Cell::new(false),
            fanout: OnceCell::new(),
        })
    }

    /// The sending side, for the connection's task (between awaits only).
    pub fn out(&self) -> std::cell::RefMut<'_, Out> {
        self.out.borrow_mut()
    }

    /// Part of a frame is on the wire: nothing more may be framed after it.
    pub fn torn(&self) -> bool {
        self.torn.get()
    }

    /// Writes every byte of `bytes` and flushes, within `timeout`; the socket is borrowed
    /// only inside each poll.
    /// A write that stops part way leaves the connection [`Conn::torn`].
    pub async fn write(&self, bytes: &[u8], timeout: Duration) -> Result<(), Stop> {
        let mut done = 0;
        let written = async {
            while done < bytes.len() {
                let written = poll_fn(|cx| {
                    Pin::new(&mut *self.io.borrow_mut()).poll_write(cx, &bytes[done..])
                })
                .await?;
                if written == 0 {
                    return Err(std::io::ErrorKind::WriteZero.into());
                }
                done += written;
                self.torn.set(done < bytes.len());
            }
            poll_fn(|cx| Pin::new(&mut *self.io.borrow_mut()).poll_flush(cx)).await
        };
        match tokio::time::timeout(timeout, written).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Stop::Gone),
            Err(_elapsed) => Err(Stop::TooSlow),
        }
    }

    /// Reads what the socket has and appends it to `to`, through the worker's one read
    /// buffer: a connection holds no buffer of its own while it has nothing to decode.
    pub async fn read(&self, to: &mut BytesMut) -> std::io::Result<usize> {
        self.read_with(|bytes| to.extend_from_slice(bytes)).await
    }

    /// Reads what the socket has and lets it go; the count read, 0 at its end.
    pub async fn discard(&self) -> std::io::Result<usize> {
        self.read_with(|_| {}).await
    }

    /// Reads what the socket has into the worker's one read buffer and hands it to `take`;
    /// the count read, 0 at its end.
    async fn read_with(&self, mut take: impl FnMut(&[u8])) -> std::io::Result<usize> {
        poll_fn(|cx| {
            READ_BUFFER.with_borrow_mut(|buffer| {
                let mut read = ReadBuf::new(&mut buffer[..]);
                let polled = Pin::new(&mut *self.io.borrow_mut()).poll_read(cx, &mut read);
                polled.map_ok(|()| {
                    take(read.filled());
                    read.filled().len()
                })
            })
        })
        .await
    }

    /// The task takes the socket's sending side: the fan-out passes over the connection
    /// until [`Conn::release`].
    pub fn hold(&self) {
        self.out.borrow_mut().busy = true;
    }

    /// Sends every batch the subscription is behind on, then hands the sending side back to
    /// the fan-out. Nothing yields between the last batch and the hand-back, so no publish
    /// falls between them.
    pub async fn release(&self, state: &AppState) -> Result<(), Stop> {
        let slow = state.config.slow_client_timeout();
        loop {
            let frame = {
                let mut out = self.out.borrow_mut();
                let Some(subscription) = out.subscription.as_mut() else {
                    out.busy = false;
                    return Ok(());
                };
                match subscription.next_frame(&state.feed, self.framing, state.max_batch_ticks()) {
                    Some(frame) => frame,
                    None => {
                        out.busy = false;
                        return Ok(());
                    }
                }
            };
            state.metrics.sent(self.transport, frame.payload_len());
            self.write(&frame.bytes, slow).await?;
        }
    }

    /// Finishes what the fan-out handed over, then catches up and hands the socket back.
    pub async fn take_over(&self, state: &AppState) -> Result<(), Stop> {
        let handed = self.out.borrow_mut().handed.take();
        let slow = state.config.slow_client_timeout();
        match handed {
            Some(Handed::Failed) => return Err(Stop::Gone),
            Some(Handed::Rest(rest)) => self.write(&rest, slow).await?,
            Some(Handed::Flush) => self.write(&[], slow).await?,
            None => {}
        }
        self.release(state).await
    }

    /// Sends `bytes` the server made (a heartbeat, a report), whole, then catches up on what
    /// the fan-out passed over meanwhile.
    pub async fn send(&self, state: &AppState, bytes: &[u8]) -> Result<(), Stop> {
        self.hold();
        self.write(bytes, state.config.slow_client_timeout())
            .await?;
        self.release(state).await
    }

    /// Lets go of a write the fan-out handed over and has not begun: the task writes alone
    /// from here on (its close).
    pub fn drop_handed(&self) {
        let mut out = self.out.borrow_mut();
        out.busy = true;
        out.handed = None;
    }

    /// Shuts the socket down, within a moment.
    pub async fn shutdown(&self) {
        let _ = tokio::time::timeout(
            Duration::from_millis(100),
            poll_fn(|cx| Pin::new(&mut *self.io.borrow_mut()).poll_shutdown(cx)),
        )
        .await;
    }

    /// The fan-out's part on a publish: writes every batch the connection is behind on
    /// straight to its socket, as far as the socket takes them without waiting. What it does
    /// not take is handed to the connection's task, which finishes it under the slow-client
    /// timeout. `false` once the connection has ended.
    fn fan_out(&self, state: &AppState) -> bool {
        if self.ended.get() {
            return false;
        }
        let mut out = self.out.borrow_mut();
        let Out {
            subscription: Some(subscription),
            busy: false,
            ..
        } = &mut *out
        else {
            return true;
        };
        let mut io = self.io.borrow_mut();
        let mut cx = Context::from_waker(&self.waker);
        let mut handed = None;
        let mut wrote = false;
        while let Some(frame) =
            subscription.next_frame(&state.feed, self.framing, state.max_batch_ticks())
        {
            state.metrics.sent(self.transport, frame.payload_len());
            // The frame whole, header and all, shared by every client at the same cursor:
            // one `send`.
            let written = match Pin::new(&mut *io).poll_write(&mut cx, &frame.bytes) {
                Poll::Ready(Ok(written)) => written,
                Poll::Ready(Err(_)) => {
                    handed = Some(Handed::Failed);
                    break;
                }
                Poll::Pending => 0,
            };
            wrote = true;
            if written < frame.bytes.len() {
                self.torn.set(written > 0);
                handed = Some(Handed::Rest(frame.bytes.slice(written..)));
                break;
            }
        }
        if handed.is_none() && wrote {
            handed = match Pin::new(&mut *io).poll_flush(&mut cx) {
                Poll::Ready(Ok(())) => None,
                Poll::Ready(Err(_)) => Some(Handed::Failed),
                Poll::Pending => Some(Handed::Flush),
            };
        }
        if matches!(handed, Some(Handed::Rest(_) | Handed::Flush)) {
            state.metrics.transport(self.transport).backpressured.inc();
        }
        if handed.is_some() {
            out.busy = true;
            out.handed = handed;
            self.waker.wake_by_ref();
        }
        true
    }
}

/// Every subscribed connection (WebSocket, or a stream taken out of actix-http) of one worker, written to on each publish by one task (as
/// uWebSockets drains its sockets once per loop iteration): a publish wakes no connection's
/// task unless its socket is full.
pub struct Fanout {
    state: Arc<AppState>,
    conns: RefCell<Vec<Rc<Conn>>>,
    /// A connection has ended: its socket is let go at once, not at the next publish (the
    /// feed may be paused).
    ended: Notify,
}

thread_local! {
    /// This worker's fan-outs, one per server (tests run several in one process).
    static FANOUTS: RefCell<Vec<Rc<Fanout>>> = const { RefCell::new(Vec::new()) };
    /// What every connection of this worker reads into, as uWebSockets shares one receive
    /// buffer per loop; what is read is copied out at once.
    static READ_BUFFER: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_CHUNK].into_boxed_slice());
}

impl Fanout {
    /// Adds `conn` to this worker's fan-out for `state`, started with the first.
    pub fn join(state: &Arc<AppState>, conn: Rc<Conn>) {
        let fanout = FANOUTS.with_borrow_mut(|fanouts| {
            if let Some(fanout) = fanouts.iter().find(|f| Arc::ptr_eq(&f.state, state)) {
                return fanout.clone();
            }
            let fanout = Rc::new(Fanout {
                state: state.clone(),
                conns: RefCell::new(Vec::new()),
                ended: Notify::new(),
            });
            fanouts.push(fanout.clone());
            tokio::task::spawn_local(tokio::task::unconstrained(fanout.clone().run()));
            fanout
        });
        let _ = conn.fanout.set(Rc::downgrade(&fanout));
        fanout.conns.borrow_mut().push(conn);
    }

    /// Writes each publish to every connection, until the feed ends or the server stops.
    async fn run(self: Rc<Self>) {
        let mut published = self.state.feed.subscribe();
        // The head at the last pass: every tick after it is still to be sent.
        let mut sent = *published.borrow_and_update();
        let shutdown = self.state.shutdown.clone();
        let mut last_pass = Duration::ZERO;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.ended.notified() => {
                    self.conns.borrow_mut().retain(|conn| !conn.ended.get());
                }
                changed = published.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    // Ticks published while it waits go out in this pass, in the same write
                    // to each socket: a pass costs a `send` per connection, whatever it carries.
                    // The wait counts from when the oldest of them happened, so a tick that
                    // already waited behind the last pass waits no longer.
                    wait_before_pass(&self.state, sent, last_pass).await;
                    sent = *published.borrow_and_update();
                    let began = std::time::Instant::now();
                    self.conns.borrow_mut().retain(|conn| conn.fan_out(&self.state));
                    last_pass = began.elapsed();
                    // The worker's other tasks (handshakes, clients' messages, handed-over
                    // writes) go before the next pass, even when publishes come faster than
                    // passes: the next pass then carries more ticks per frame.
                    tokio::task::yield_now().await;
                }
            }
        }
        FANOUTS.with_borrow_mut(|fanouts| fanouts.retain(|f| !Rc::ptr_eq(f, &self)));
    }
}

/// Waits as long as `Config::fanout_wait` says before a pass that follows one of `last_pass`,
/// for the oldest tick after `sent`; the rule of every fan-out (WebTransport's pacer too).
pub async fn wait_before_pass(state: &AppState, sent: u64, last_pass: Duration) {
    let age = state.feed.age_after(sent);
    let wait = state.config.fanout_wait(last_pass, age);
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
}

/// Ready when the fan-out has handed the connection's task a write to finish.
pub fn handed_over(conn: &Conn) -> impl Future<Output = ()> + '_ {
    poll_fn(|_| {
        if conn.out.borrow().handed.is_some() {
            Poll::Ready(())
        } else {
            // The fan-out wakes the task when it hands a write over.
            Poll::Pending
        }
    })
}

/// Marks the connection ended when its task ends, however it ends: the fan-out lets it go.
pub struct Ended(pub Rc<Conn>);

impl Drop for Ended {
    fn drop(&mut self) {
        self.0.ended.set(true);
        if let Some(fanout) = self.0.fanout.get().and_then(Weak::upgrade) {
            fanout.ended.notify_one();
        }
    }
}

/// The next tick of `interval`; never, without one.
pub async fn tick(interval: &mut Option<Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Why sending stopped.
pub enum Stop {
    /// The connection is closed.
    Gone,
    /// The client took no data for the slow-client timeout.
    TooSlow,
}
