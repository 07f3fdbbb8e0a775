//! Every byte the clients put on the wire and take off it: each client's TCP stream is wrapped
//! in [`Counted`], which adds what crosses it to the run's [`WireCount`]. The same bytes the
//! server counts in `tickscope_wire_bytes_total`, so the two can be set side by side.

use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A client's connection: counted TCP, under TLS for https and wss.
pub trait Io: AsyncRead + AsyncWrite + Unpin {}
impl<T: AsyncRead + AsyncWrite + Unpin> Io for T {}

/// Bytes both ways over all clients of a run (they all run on one thread).
#[derive(Debug, Default)]
pub struct WireCount {
    /// Server to client.
    pub down: Cell<u64>,
    /// Client to server.
    pub up: Cell<u64>,
}

impl WireCount {
    /// (down, up) so far.
    pub fn read(&self) -> (u64, u64) {
        (self.down.get(), self.up.get())
    }
}

/// A client's stream, counting into a [`WireCount`].
pub struct Counted<T> {
    io: T,
    count: Rc<WireCount>,
}

impl<T> Counted<T> {
    pub fn new(io: T, count: Rc<WireCount>) -> Self {
        Self { io, count }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.io).poll_read(cx, buf);
        let read = (buf.filled().len() - before) as u64;
        self.count.down.set(self.count.down.get() + read);
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(written)) = result {
            self.count.up.set(self.count.up.get() + written as u64);
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(written)) = result {
            self.count.up.set(self.count.up.get() + written as u64);
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn counts_both_ways() {
        let (client, mut server) = tokio::io::duplex(64);
        let count = Rc::new(WireCount::default());
        let mut client = Counted::new(client, count.clone());
        client.write_all(b"hello").await.unwrap();
        server.write_all(b"bye").await.unwrap();
        let mut buf = [0u8; 3];
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(count.read(), (3, 5));
    }
}
