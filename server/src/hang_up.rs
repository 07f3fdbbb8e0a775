//! A WebSocket the server closes has its connection ended within [`CLOSE_GRACE`], even while
//! the client goes on sending.
//!
//! actix-ws ends the response body after the close frame, but actix-http keeps an HTTP/1
//! connection open until the request payload (the client's side of the WebSocket) ends,
//! reading and discarding what comes: a client that never stops sending would keep it for
//! good. [`HangUp`] wraps the response body. Once the body has handed over its close frame and
//! the connection's task has armed it ([`Arm`]), it gives the client [`CLOSE_GRACE`] to read
//! the close frame and close the connection itself, then shuts the socket down both ways and
//! has actix drop the connection. Until then the client's stream is kept unread, so actix
//! stops reading the socket and TCP holds the client back. A close the client started is not
//! armed: the client closes.

use std::any::Any;
use std::cell::RefCell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use actix_web::body::{BodySize, BoxBody, MessageBody};
use bytes::Bytes;
use tokio::time::Sleep;

use crate::peer::Socket;

/// How long a client gets, after the server's close frame is handed over, before its
/// connection is shut down.
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Held by the connection's task, which arms it when the server closes. Armed, it keeps the
/// client's message stream unread until the hang-up: while that is alive and unread, actix
/// stops reading the socket once 32 KiB wait (TCP then holds the client back), where a
/// dropped one would have actix read and discard all the client sends.
#[derive(Clone, Default)]
pub struct Arm(Rc<RefCell<Option<Box<dyn Any>>>>);

impl Arm {
    /// Arms the hang-up, keeping the client's stream (unread) until then.
    pub fn arm(&self, client: impl Any) {
        *self.0.borrow_mut() = Some(Box::new(client));
    }

    fn is_armed(&self) -> bool {
        self.0.borrow().is_some()
    }

    fn release_client(&self) {
        self.0.borrow_mut().take();
    }
}

/// A WebSocket's response body that shuts its connection down [`CLOSE_GRACE`] after it ends,
/// if armed.
pub struct HangUp {
    body: BoxBody,
    armed: Arm,
    socket: Option<Socket>,
    grace: Option<Pin<Box<Sleep>>>,
}

impl HangUp {
    pub fn new(body: BoxBody, armed: Arm, socket: Option<Socket>) -> Self {
        Self {
            body,
            armed,
            socket,
            grace: None,
        }
    }
}

impl MessageBody for HangUp {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        BodySize::Stream
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = &mut *self;
        if this.grace.is_none() {
            match ready!(Pin::new(&mut this.body).poll_next(cx)) {
                Some(chunk) => return Poll::Ready(Some(chunk)),
                None if !this.armed.is_armed() => return Poll::Ready(None),
                None => this.grace = Some(Box::pin(tokio::time::sleep(CLOSE_GRACE))),
            }
        }
        if let Some(grace) = this.grace.as_mut() {
            ready!(grace.as_mut().poll(cx));
        }
        // actix is polling this body, so the connection, and its socket, are still open.
        let Some(socket) = this.socket.take() else {
            return Poll::Ready(None);
        };
        socket.shut_down();
        this.armed.release_client();
        // actix would keep the connection while the client's side has not ended, and the
        // socket's end of stream does not reach it while it is not reading. A last chunk
        // makes it write to the socket shut for writing: the write fails, and actix drops
        // the connection. The chunk never leaves (a close frame, were it to).
        Poll::Ready(Some(Ok(Bytes::from_static(b"\x88\x00"))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use actix_web::body::to_bytes;

    #[actix_web::test]
    async fn an_unarmed_body_ends_with_its_inner_body() {
        let body = HangUp::new(BoxBody::new("close frame"), Arm::default(), None);
        assert_eq!(to_bytes(body).await.unwrap(), "close frame");
    }

    #[actix_web::test]
    async fn an_armed_body_ends_after_the_grace() {
        tokio::time::pause();
        let arm = Arm::default();
        arm.arm(());
        let started = tokio::time::Instant::now();
        let body = HangUp::new(BoxBody::new("close frame"), arm, None);
        assert_eq!(to_bytes(body).await.unwrap(), "close frame");
        assert!(started.elapsed() >= CLOSE_GRACE);
    }
}
