//! HTTPS: the certificate and key of `--tls-cert`/`--tls-key`, and the rustls settings the
//! port serves with. The handshake itself is in `lib.rs`'s acceptor, above the byte counter,
//! so every TLS record is counted as it crosses the socket.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use actix_http::Protocol;
use actix_web::rt::net::TcpStream;
use anyhow::Context;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;

use crate::connection::wire::{Connection, Frames, Metered};

/// ALPN, in the server's order of preference. Browsers open WebSockets on connections that
/// offer only `http/1.1` (actix-http has no RFC 8441 WebSocket over HTTP/2).
pub const ALPN_H2: &[u8] = b"h2";
pub const ALPN_HTTP1: &[u8] = b"http/1.1";
/// What the main port offers, and what `--http1-addr` offers.
pub const BOTH: &[&[u8]] = &[ALPN_H2, ALPN_HTTP1];
pub const HTTP1_ONLY: &[&[u8]] = &[ALPN_HTTP1];

/// The acceptor for the certificate chain at `cert` and the key at `key` (PEM), offering the
/// protocols of `alpn` (in order of preference).
pub fn acceptor(cert: &Path, key: &Path, alpn: &[&[u8]]) -> anyhow::Result<TlsAcceptor> {
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading the certificate {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("reading the certificate {}", cert.display()))?;
    anyhow::ensure!(
        !chain.is_empty(),
        "{} holds no PEM certificate",
        cert.display()
    );
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading the private key {}", key.display()))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("choosing TLS versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the certificate and the key do not make a pair")?;
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// An accepted connection's IO, as actix-http gets it: the counted socket in the clear, or
/// TLS over it, with HTTP/2's frame reader on top when ALPN chose `h2`.
pub enum Io {
    Plain(Metered<TcpStream>),
    Tls(Box<TlsStream<Metered<TcpStream>>>),
    H2(Box<Frames<TlsStream<Metered<TcpStream>>>>),
    /// Handed over after its last response to a stream of its own (the connection's
    /// [`Connection::hand_over`]): to actix-http, a socket at its end.
    Handed,
}

impl Io {
    /// Under TLS on `tcp`, by `acceptor`, within `timeout`; with the protocol ALPN chose.
    pub async fn accept(
        tcp: Metered<TcpStream>,
        acceptor: Option<&TlsAcceptor>,
        timeout: Duration,
    ) -> io::Result<(Io, Protocol)> {
        let Some(acceptor) = acceptor else {
            return Ok((Io::Plain(tcp), Protocol::Http1));
        };
        let connection = tcp.connection().clone();
        let tls = tokio::time::timeout(timeout, acceptor.accept(tcp))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no TLS handshake in time"))??;
        if tls.get_ref().1.alpn_protocol() == Some(ALPN_H2) {
            Ok((
                Io::H2(Box::new(Frames::new(tls, connection))),
                Protocol::Http2,
            ))
        } else {
            Ok((Io::Tls(Box::new(tls)), Protocol::Http1))
        }
    }

    fn metered(&self) -> Option<&Metered<TcpStream>> {
        match self {
            Io::Plain(io) => Some(io),
            Io::Tls(io) => Some(io.get_ref().0),
            Io::H2(io) => Some(io.get_ref().get_ref().0),
            Io::Handed => None,
        }
    }

    /// The socket under it all; `None` once handed over.
    pub fn tcp(&self) -> Option<&TcpStream> {
        self.metered().map(Metered::get_ref)
    }

    /// The connection's accounts; `None` once handed over.
    pub fn connection(&self) -> Option<&Rc<Connection>> {
        self.metered().map(Metered::connection)
    }
}

/// Nothing to read, and no writing, once handed over.
fn handed_over() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the socket was handed over")
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(io) => Pin::new(io).poll_read(cx, buf),
            Io::Tls(io) => Pin::new(io.as_mut()).poll_read(cx, buf),
            Io::H2(io) => Pin::new(io.as_mut()).poll_read(cx, buf),
            Io::Handed => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(io) => Pin::new(io).poll_write(cx, buf),
            Io::Tls(io) => Pin::new(io.as_mut()).poll_write(cx, buf),
            Io::H2(io) => Pin::new(io.as_mut()).poll_write(cx, buf),
            Io::Handed => Poll::Ready(Err(handed_over())),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            Io::Tls(io) => Pin::new(io.as_mut()).poll_write_vectored(cx, bufs),
            Io::H2(io) => Pin::new(io.as_mut()).poll_write_vectored(cx, bufs),
            Io::Handed => Poll::Ready(Err(handed_over())),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Plain(io) => io.is_write_vectored(),
            Io::Tls(io) => io.is_write_vectored(),
            Io::H2(io) => io.is_write_vectored(),
            Io::Handed => false,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(io) => Pin::new(io).poll_flush(cx),
            Io::Tls(io) => Pin::new(io.as_mut()).poll_flush(cx),
            Io::H2(io) => Pin::new(io.as_mut()).poll_flush(cx),
            Io::Handed => Poll::Ready(Ok(())),
        }
    }

    /// Shuts the connection down, unless a response asked for its socket
    /// ([`Connection::hand_over`]): actix-http shuts a connection down once its last response
    /// is written, and the socket goes on, with that response's head on the wire, to the
    /// stream that asked.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(to) = this.connection().and_then(|c| c.take_handover()) {
            to(std::mem::replace(this, Io::Handed));
            return Poll::Ready(Ok(()));
        }
        match this {
            Io::Plain(io) => Pin::new(io).poll_shutdown(cx),
            Io::Tls(io) => Pin::new(io.as_mut()).poll_shutdown(cx),
            Io::H2(io) => Pin::new(io.as_mut()).poll_shutdown(cx),
            Io::Handed => Poll::Ready(Ok(())),
        }
    }
}
