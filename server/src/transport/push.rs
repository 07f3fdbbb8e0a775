//! The response body of a push transport (WebSocket, SSE) that takes its batches from the
//! feed itself.
//!
//! A publish wakes each subscribed connection's own task (actix-http's dispatcher), whose
//! body asks the feed for what its subscription is behind on and hands over the frame shared
//! by every client at the same cursor (on a WebSocket after a 2- to 10-byte header of its
//! own), with no copy and no channel. There is no second task to wake and no per-client
//! encoding. What else the connection sends (WebSocket pings, pongs and the close through
//! actix-ws's session; SSE's retry line and heartbeats; wire reports) comes through the
//! control body, first.
//!
//! The body is polled only while the connection can take data. A client that takes none
//! while data waits stops the body being polled; [`Outbox::stalled_for`] tells the
//! connection's task how long, and the task drops it as too slow.

use std::cell::{Cell, RefCell};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use actix_web::body::{BodySize, BoxBody, MessageBody};
use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::{Duration, Instant};
use tokio_util::sync::ReusableBoxFuture;

use crate::AppState;
use crate::encode::Framing;
use crate::feed::Subscription;
use crate::metrics::Transport;

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
    /// `WebSocket` (a header before each payload) or `Sse` (the event as it is).
    framing: Framing,
    /// Armed at the first subscription, so an idle connection holds none.
    changed: Option<Changed>,
    /// The payload whose header was just handed over.
    payload: Option<Bytes>,
    /// The feed ended (shutdown): only control frames from now on.
    feed_gone: bool,
}

impl PushBody {
    pub fn new(
        control: BoxBody,
        outbox: Rc<Outbox>,
        state: Arc<AppState>,
        framing: Framing,
    ) -> Self {
        Self {
            control,
            outbox,
            state,
            framing,
            changed: None,
            payload: None,
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

    /// The next batch: an SSE event whole, or a WebSocket frame's header, keeping its payload
    /// for the next poll.
    fn next_frame(&mut self) -> Option<Bytes> {
        let mut subscription = self.outbox.subscription.borrow_mut();
        let subscription = subscription.as_mut()?;
        let frame =
            subscription.next_frame(&self.state.feed, self.framing, self.state.max_batch_ticks());
        self.outbox.taken.set(Instant::now());
        let payload = frame?.text.into_bytes();
        if self.framing != Framing::WebSocket {
            // An SSE event goes as it is.
            self.state.metrics.sent(Transport::Sse, payload.len());
            return Some(payload);
        }
        self.state.metrics.sent(Transport::WebSocket, payload.len());
        let header = text_frame_header(payload.len());
        self.payload = Some(payload);
        Some(header)
    }
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
        // A frame's payload goes right after its header.
        if let Some(payload) = this.payload.take() {
            return Poll::Ready(Some(Ok(payload)));
        }
        match Pin::new(&mut this.control).poll_next(cx) {
            Poll::Ready(Some(chunk)) => return Poll::Ready(Some(chunk)),
            // The control body ends with the connection (actix-ws's after the close frame,
            // SSE's when its task ends): so does this one.
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
