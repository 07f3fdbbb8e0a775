//! How a streamed HTTP transport (SSE, HTTP streaming) sends: [`open_streamed`] admits the
//! request and answers it one of two ways.
//!
//! - **HTTP/1.1**: the connection is the stream's alone, so the server takes it out of
//!   actix-http. The answer is a head that says the connection closes, with no length and no
//!   chunks; once actix-http has written it, the socket goes to the stream's own task
//!   ([`Taken`], through [`crate::connection::wire::Connection::hand_over`]) and joins the worker's
//!   [`super::fanout`], which writes each publish to it as to a WebSocket: one `send` of the
//!   event shared by every client at the same cursor, no dispatcher woken and no buffers of
//!   actix-http's kept. The body ends when the connection does.
//! - **HTTP/2**: the connection carries other requests, so the stream stays a response body
//!   ([`PushBody`]). A publish wakes each subscribed connection's own task (actix-http's
//!   dispatcher), whose body asks the feed for what its subscription is behind on and hands
//!   over the frame shared by every client at the same cursor, with no copy and no channel.
//!   What else the connection sends (SSE's retry line and heartbeats, wire reports) comes
//!   through the control body, first, from [`keep_streaming`]. The body is polled only while
//!   the connection can take data; a client that takes none while data waits stops it being
//!   polled, [`Outbox::stalled_for`] tells the task how long, and the task drops it as too
//!   slow.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use std::convert::Infallible;

use actix_web::body::{BodySize, BodyStream, BoxBody, MessageBody};
use bytes::Bytes;
use futures_util::stream;
use tokio::sync::{mpsc, watch};
use tokio::time::{Duration, Instant, interval_at};
use tokio_util::sync::ReusableBoxFuture;

use actix_web::http::{ConnectionType, Version, header};
use actix_web::{HttpRequest, HttpResponse, web};

use crate::AppState;
use crate::connection::limits::{Kind, Slot};
use crate::connection::peer;
use crate::connection::tls;
use crate::connection::wire::{self, Meter};
use crate::error::ApiError;
use crate::feed::Subscription;
use crate::feed::encode::Framing;
use crate::feed::symbols::SymbolFilter;
use crate::metrics::Transport;
use crate::query::Reconnect;

use super::fanout::{Conn, Ended, Fanout, Stop, handed_over, tick};

/// What a connection's task and its body share (both run on the connection's worker).
pub struct Outbox {
    subscription: RefCell<Option<Subscription>>,
    /// The body's, while it waits: woken when a subscription starts.
    waker: Cell<Option<Waker>>,
    /// When the body last took a frame, or found none waiting.
    taken: Cell<Instant>,
    /// The task is closing the connection: no more data frames.
    closed: Cell<bool>,
}

impl Outbox {
    pub fn new() -> Rc<Self> {
        Rc::new(Self {
            subscription: RefCell::new(None),
            waker: Cell::new(None),
            taken: Cell::new(Instant::now()),
            closed: Cell::new(false),
        })
    }

    /// Starts (or replaces) the subscription the body sends from.
    pub fn subscribe(&self, subscription: Subscription) {
        *self.subscription.borrow_mut() = Some(subscription);
        self.taken.set(Instant::now());
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    /// Keeps the body's waker for [`Outbox::subscribe`], unless it already has it.
    fn remember(&self, waker: &Waker) {
        let kept = self.waker.take();
        self.waker.set(match kept {
            Some(kept) if kept.will_wake(waker) => Some(kept),
            _ => Some(waker.clone()),
        });
    }

    /// No data frame after this one: the close follows.
    pub fn close(&self) {
        self.closed.set(true);
    }

    /// How long data has waited for a client that takes none; zero while it keeps up.
    pub fn stalled_for(&self, state: &AppState) -> Duration {
        let behind = self
            .subscription
            .borrow()
            .as_ref()
            .is_some_and(|subscription| subscription.cursor() < state.feed.head());
        if behind {
            self.taken.get().elapsed()
        } else {
            Duration::ZERO
        }
    }
}

type Changed = ReusableBoxFuture<'static, (bool, watch::Receiver<u64>)>;

/// Waits for the next publish; `false` once the feed is gone.
async fn next_publish(mut published: watch::Receiver<u64>) -> (bool, watch::Receiver<u64>) {
    let open = published.changed().await.is_ok();
    (open, published)
}

/// The body: the control body's chunks first, then the feed's batches.
pub struct PushBody {
    control: BoxBody,
    outbox: Rc<Outbox>,
    state: Arc<AppState>,
    /// The transport (SSE or HTTP streaming) and how it frames a batch, which goes as it is.
    transport: Transport,
    framing: Framing,
    /// Armed at the first subscription, so an idle connection holds none.
    changed: Option<Changed>,
    /// The feed ended (shutdown): only control frames from now on.
    feed_gone: bool,
}

impl PushBody {
    pub fn new(
        control: BoxBody,
        outbox: Rc<Outbox>,
        state: Arc<AppState>,
        transport: Transport,
        framing: Framing,
    ) -> Self {
        Self {
            control,
            outbox,
            state,
            transport,
            framing,
            changed: None,
            feed_gone: false,
        }
    }

    /// Marks every publish so far seen and registers for the next one.
    fn watch_publishes(&mut self, cx: &mut Context<'_>) {
        if self.feed_gone {
            return;
        }
        let state = &self.state;
        let changed = self.changed.get_or_insert_with(|| {
            let mut published = state.feed.subscribe();
            published.borrow_and_update();
            ReusableBoxFuture::new(next_publish(published))
        });
        while let Poll::Ready((open, published)) = changed.poll(cx) {
            if !open {
                self.feed_gone = true;
                return;
            }
            changed.set(next_publish(published));
        }
    }

    /// The next batch: an SSE event, or a line of HTTP streaming.
    fn next_frame(&mut self) -> Option<Bytes> {
        let mut subscription = self.outbox.subscription.borrow_mut();
        let subscription = subscription.as_mut()?;
        let frame =
            subscription.next_frame(&self.state.feed, self.framing, self.state.max_batch_ticks());
        self.outbox.taken.set(Instant::now());
        let payload = frame?.bytes;
        self.state.metrics.sent(self.transport, payload.len());
        Some(payload)
    }
}

impl MessageBody for PushBody {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        BodySize::Stream
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.control).poll_next(cx) {
            Poll::Ready(Some(chunk)) => return Poll::Ready(Some(chunk)),
            // The control body ends when the connection's task does: so does this one.
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        if this.outbox.closed.get() || this.outbox.subscription.borrow().is_none() {
            this.outbox.remember(cx.waker());
            return Poll::Pending;
        }
        // Seen before the feed is read, so a publish in between wakes this again.
        this.watch_publishes(cx);
        match this.next_frame() {
            Some(header) => Poll::Ready(Some(Ok(header))),
            None => {
                // A new subscription (a resubscribe from an older cursor) wakes it too.
                this.outbox.remember(cx.waker());
                Poll::Pending
            }
        }
    }
}

/// What a streamed HTTP response is: its transport (for the metrics and limits), its media
/// type, how it frames batches, and how it frames a heartbeat and a wire report.
pub struct Streamed {
    pub transport: Transport,
    pub content_type: &'static str,
    pub framing: Framing,
    pub heartbeat: fn() -> Bytes,
    pub wire: fn(&Meter) -> Bytes,
}

/// Opens a streamed response (SSE, HTTP streaming) once its input is read: admits it, counts
/// its reconnect, subscribes it from `since`, starts [`keep_streaming`] beside it, and answers
/// with the body that takes batches from the feed, `first` ahead of them.
pub fn open_streamed(
    req: &HttpRequest,
    state: web::Data<AppState>,
    filter: SymbolFilter,
    since: Option<u64>,
    reconnect: Option<Reconnect>,
    first: Bytes,
    streamed: Streamed,
) -> Result<HttpResponse, ApiError> {
    let transport = streamed.transport;
    let slot = state
        .limits
        .admit(state.limits.client_ip(req), Kind::Stream)?;
    if let Some(reason) = reconnect {
        state.metrics.reconnected(transport, reason);
    }
    let dead_peer = peer::Watch::new(req, &state.metrics, transport);
    let meter = wire::meter(req);
    let state = state.into_inner();
    let content_type = streamed.content_type;
    // On HTTP/1.1 the connection is the stream's alone: it is taken out of actix-http once
    // the head is written, and the worker's fan-out writes to it as to a WebSocket.
    if req.version() < Version::HTTP_2
        && let Some(connection) = wire::Connection::of(req)
    {
        connection.stream();
        let taken = Taken {
            subscription: Subscription::new(&state.feed, filter, since),
            state,
            slot,
            meter,
            dead_peer,
            first,
            streamed,
        };
        connection.hand_over(Box::new(move |io| taken.spawn(io)));
        // No length and no chunks: the body is what follows the head until the connection
        // closes, which the head says it will.
        let mut response = streamed_head(content_type).body(actix_web::body::None::new());
        response
            .head_mut()
            .set_connection_type(ConnectionType::Close);
        return Ok(response);
    }
    // Batches go straight from the feed into the response body; the first chunk, heartbeats
    // and reports come from the connection's task through a small channel.
    let outbox = Outbox::new();
    outbox.subscribe(Subscription::new(&state.feed, filter, since));
    let (body, events) = streamed_body(
        state.clone(),
        outbox.clone(),
        transport,
        streamed.framing,
        first,
    );
    actix_web::rt::spawn(keep_streaming(state, outbox, events, slot, meter, streamed));
    let mut response = streamed_head(content_type).body(body);
    dead_peer.attach(&mut response);
    Ok(response)
}

/// A streamed answer's head: its media type, and no caching, transforming (compressing
/// middleboxes buffer to compress) or buffering on the way (`X-Accel-Buffering: no` is
/// nginx's; the proxies we ship configurations for flush streams without being told).
fn streamed_head(content_type: &str) -> actix_web::HttpResponseBuilder {
    let mut head = HttpResponse::Ok();
    head.content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "no-cache, no-transform"))
        .insert_header(("X-Accel-Buffering", "no"));
    head
}

/// A streamed response over HTTP/1.1, taken out of actix-http once its head is written: what
/// its task needs.
struct Taken {
    state: Arc<AppState>,
    slot: Slot,
    meter: Option<Arc<Meter>>,
    dead_peer: peer::Watch,
    subscription: Subscription,
    /// What goes ahead of the batches (SSE's retry line).
    first: Bytes,
    streamed: Streamed,
}

impl Taken {
    /// Runs the stream on `io` as a task of its own on this worker, tracked by
    /// [`AppState::taken_over`] so shutdown waits for its end.
    fn spawn(self, io: tls::Io) {
        let tracker = self.state.taken_over.clone();
        tracker.spawn_local(self.run(io));
    }

    /// Serves the stream until the client leaves, takes no data for the slow-client timeout,
    /// or the server shuts down; then the body ends with the connection.
    async fn run(self, io: tls::Io) {
        let Taken {
            state,
            slot,
            meter,
            dead_peer,
            subscription,
            first,
            streamed,
        } = self;
        let _slot: Slot = slot;
        let transport = streamed.transport;
        let _client = state.metrics.client(transport);
        let waker = poll_fn(|cx| Poll::Ready(cx.waker().clone())).await;
        let conn = Conn::new(io, waker, transport, streamed.framing);
        let _ended = Ended(conn.clone());
        // Declared after the connection, so dropped before it: it reads the socket's TCP
        // state.
        let _dead_peer = dead_peer;
        let served = serve_taken(&state, &conn, subscription, &first, meter, &streamed).await;
        if let Err(Stop::TooSlow) = served {
            state.metrics.transport(transport).slow_dropped.inc();
        }
        conn.shutdown().await;
    }
}

/// The taken-over stream's loop: `first`, the catch-up, then heartbeats and reports beside
/// what the fan-out writes. `Ok` when the server shuts down.
async fn serve_taken(
    state: &Arc<AppState>,
    conn: &Rc<Conn>,
    subscription: Subscription,
    first: &[u8],
    meter: Option<Arc<Meter>>,
    streamed: &Streamed,
) -> Result<(), Stop> {
    let transport = streamed.transport;
    conn.hold();
    conn.write(first, state.config.slow_client_timeout())
        .await?;
    conn.out().subscription = Some(subscription);
    Fanout::join(state, conn.clone());
    conn.release(state).await?;
    let every = state.config.sse_heartbeat();
    let mut heartbeat = interval_at(Instant::now() + every, every);
    // Only a metered page gets reports: other streams keep no timer for them.
    let mut report = meter
        .is_some()
        .then(|| interval_at(Instant::now() + wire::REPORT_EVERY, wire::REPORT_EVERY));
    let mut shutting_down = std::pin::pin!(state.shutdown.cancelled());
    loop {
        tokio::select! {
            biased;
            () = &mut shutting_down => return Ok(()),
            () = handed_over(conn) => Box::pin(conn.take_over(state)).await?,
            // A stream's client sends nothing after its request; what it sends is let go,
            // and its end is the stream's.
            read = conn.discard() => match read {
                Ok(read) if read > 0 => {}
                _ => return Err(Stop::Gone),
            },
            _ = heartbeat.tick() => {
                let event = (streamed.heartbeat)();
                state.metrics.sent(transport, event.len());
                Box::pin(conn.send(state, &event)).await?;
            }
            _ = tick(&mut report) => {
                let Some(meter) = &meter else { continue };
                let event = (streamed.wire)(meter);
                state.metrics.sent(transport, event.len());
                Box::pin(conn.send(state, &event)).await?;
            }
        }
    }
}

/// Keeps one streamed response (SSE, HTTP streaming) alive, sending heartbeats and the
/// meter's reports through `events`, until the client leaves, takes no data for the
/// slow-client timeout, or the server shuts down; the body takes the batches.
pub async fn keep_streaming(
    state: Arc<AppState>,
    outbox: Rc<Outbox>,
    events: mpsc::Sender<Bytes>,
    _slot: Slot,
    meter: Option<Arc<Meter>>,
    streamed: Streamed,
) {
    let transport = streamed.transport;
    let _client = state.metrics.client(transport);
    let every = state.config.sse_heartbeat();
    let mut heartbeat = interval_at(Instant::now() + every, every);
    let mut report = interval_at(Instant::now() + wire::REPORT_EVERY, wire::REPORT_EVERY);
    // Often enough to drop a client that takes no data within a quarter of the timeout.
    let slow_every = state.config.slow_client_timeout() / 4;
    let mut slow_check = interval_at(Instant::now() + slow_every, slow_every);
    let mut shutting_down = std::pin::pin!(state.shutdown.cancelled());
    loop {
        tokio::select! {
            () = &mut shutting_down => break,
            () = events.closed() => break,
            _ = heartbeat.tick() => {
                if send(&state, transport, &events, (streamed.heartbeat)()).await.is_err() {
                    break;
                }
            }
            _ = report.tick(), if meter.is_some() => {
                let Some(meter) = &meter else { continue };
                if send(&state, transport, &events, (streamed.wire)(meter)).await.is_err() {
                    break;
                }
            }
            _ = slow_check.tick() => {
                if outbox.stalled_for(&state) > state.config.slow_client_timeout() {
                    state.metrics.transport(transport).slow_dropped.inc();
                    break;
                }
            }
        }
    }
    // No batch after this; the stream ends once the body has handed over what is queued.
    outbox.close();
}

/// The client is gone (its stream's channel is closed) or is being dropped as too slow.
struct Gone;

/// Queues one chunk; a client that takes none for the slow-client timeout is dropped.
async fn send(
    state: &AppState,
    transport: Transport,
    events: &mpsc::Sender<Bytes>,
    event: Bytes,
) -> Result<(), Gone> {
    let len = event.len();
    match tokio::time::timeout(state.config.slow_client_timeout(), events.send(event)).await {
        Ok(Ok(())) => {}
        Ok(Err(_closed)) => return Err(Gone),
        Err(_elapsed) => {
            state.metrics.transport(transport).slow_dropped.inc();
            return Err(Gone);
        }
    }
    state.metrics.sent(transport, len);
    Ok(())
}

/// The body of a streamed response: `first` and then whatever the connection's task sends
/// through the channel it gets back, before the feed's batches.
pub fn streamed_body(
    state: Arc<AppState>,
    outbox: Rc<Outbox>,
    transport: Transport,
    framing: Framing,
    first: Bytes,
) -> (PushBody, mpsc::Sender<Bytes>) {
    let (events, mut control) = mpsc::channel::<Bytes>(STREAM_BUFFER);
    events
        .try_send(first)
        .expect("a new channel has room for the first chunk");
    let control = BodyStream::new(stream::poll_fn(move |cx| {
        control
            .poll_recv(cx)
            .map(|event| event.map(Ok::<_, Infallible>))
    }))
    .boxed();
    (
        PushBody::new(control, outbox, state, transport, framing),
        events,
    )
}

/// Chunks buffered for a streamed response before its task waits for the client to read.
const STREAM_BUFFER: usize = 16;
