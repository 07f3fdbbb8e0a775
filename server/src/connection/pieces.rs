//! Response bodies handed to actix in pieces of at most [`PIECE`] bytes, so a connection's
//! write buffer keeps the size it started with.
//!
//! actix-http copies each body chunk into the connection's write buffer before writing it to
//! the socket. The buffer starts at 8 KiB and keeps whatever it grew to (up to 128 KiB) for as
//! long as the connection lives: one poll answer of 9 KiB (a second of all symbols) made it
//! 16 KiB for good, and over a soak more and more keep-alive connections grew that way. With
//! pieces of at most 4 KiB, and the server flushing once 4 KiB wait (`h1_write_buffer_size`),
//! the buffer never holds more than 8 KiB. Splitting costs no copy (`Bytes::split_to`); a body
//! over 4 KiB takes one write per piece instead of one in all.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use actix_web::Error;
use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use bytes::Bytes;

use crate::connection::peer::Watch;

/// The most a body hands over at once, and the write-buffer fill at which the server flushes.
pub const PIECE: usize = 4096;

/// Middleware: every response's body goes out in pieces, and takes along the dead-peer
/// [`Watch`] its handler attached, so the watch ends with the body.
pub async fn in_pieces(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<Pieces>, Error> {
    let mut response = next.call(req).await?;
    let watch = response.response_mut().extensions_mut().remove::<Watch>();
    Ok(response.map_body(|_, body| Pieces::new(body.boxed(), watch)))
}

/// A body whose chunks are split into pieces of at most [`PIECE`] bytes.
pub struct Pieces {
    body: BoxBody,
    /// What is left of the chunk being handed over.
    rest: Bytes,
    /// Held for its `Drop`, which runs when the connection lets go of the body.
    _watch: Option<Watch>,
}

impl Pieces {
    fn new(body: BoxBody, watch: Option<Watch>) -> Self {
        Self {
            body,
            rest: Bytes::new(),
            _watch: watch,
        }
    }
}

impl MessageBody for Pieces {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        if self.rest.is_empty() {
            match ready!(Pin::new(&mut self.body).poll_next(cx)) {
                Some(Ok(chunk)) => self.rest = chunk,
                end_or_error => return Poll::Ready(end_or_error),
            }
        }
        let len = self.rest.len().min(PIECE);
        Poll::Ready(Some(Ok(self.rest.split_to(len))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use actix_web::body::to_bytes_limited;

    #[actix_web::test]
    async fn a_body_comes_whole_in_pieces_of_at_most_a_piece() {
        let text: Bytes = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let mut pieces = Pieces::new(BoxBody::new(text.clone()), None);
        assert_eq!(pieces.size(), BodySize::Sized(10_000));
        let mut lens = Vec::new();
        let mut whole = Vec::new();
        while let Some(piece) = std::future::poll_fn(|cx| Pin::new(&mut pieces).poll_next(cx))
            .await
            .transpose()
            .unwrap()
        {
            lens.push(piece.len());
            whole.extend_from_slice(&piece);
        }
        assert_eq!(lens, [4096, 4096, 1808]);
        assert_eq!(whole, text);

        let small = Pieces::new(BoxBody::new("short"), None);
        let body = to_bytes_limited(small, 100).await.unwrap().unwrap();
        assert_eq!(body, "short");
    }
}
