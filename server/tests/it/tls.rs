//! HTTPS: `--tls-cert`/`--tls-key` serve the API over TLS with HTTP/2 and
//! HTTP/1.1 by ALPN, and the wire bytes of each request are the TLS records that carried it.
//!
//! The clients are real: curl (nghttp2) for the protocol a stock client gets, and a hyper
//! HTTP/2 client over rustls over a TCP socket that counts what the kernel hands it, the
//! independent count the server's meters are checked against.

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tickscope_shared::wire::{Batch, WireReport};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{ClientConfig, RootCertStore, pki_types::ServerName};

use crate::helpers::{PATIENCE, TestServer};

/// A self-signed certificate for localhost and 127.0.0.1, as PEM files in a directory of
/// its own, removed on drop.
pub struct Certificate {
    dir: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub der: Vec<u8>,
}

impl Certificate {
    pub fn new() -> Self {
        static MADE: AtomicU64 = AtomicU64::new(0);
        let made = rcgen::generate_simple_self_signed(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
        ])
        .expect("making a certificate");
        let dir = std::env::temp_dir().join(format!(
            "tickscope-tls-{}-{}",
            std::process::id(),
            MADE.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("making the certificate's directory");
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, made.cert.pem()).expect("writing the certificate");
        std::fs::write(&key, made.key_pair.serialize_pem()).expect("writing the key");
        Self {
            dir,
            cert,
            key,
            der: made.cert.der().to_vec(),
        }
    }
}

impl Drop for Certificate {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn tls_server(certificate: &Certificate) -> TestServer {
    let (cert, key) = (certificate.cert.clone(), certificate.key.clone());
    TestServer::start(move |config| {
        config.tls_cert = Some(cert);
        config.tls_key = Some(key);
        config.rate = 50.0;
    })
}

/// A TCP socket that counts the bytes it reads and writes: the TCP payload, both ways.
struct Counted {
    io: TcpStream,
    up: Arc<AtomicU64>,
    down: Arc<AtomicU64>,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.io).poll_read(cx, buf);
        let read = (buf.filled().len() - before) as u64;
        self.down.fetch_add(read, Ordering::Relaxed);
        result
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(written)) = result {
            self.up.fetch_add(written as u64, Ordering::Relaxed);
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A TLS connection to `server` offering `alpn`, over a counted socket: the stream, the
/// protocol the server chose, and the bytes up and down so far.
async fn connect(
    server: &TestServer,
    certificate: &Certificate,
    alpn: &[&[u8]],
) -> (
    tokio_rustls::client::TlsStream<Counted>,
    Arc<AtomicU64>,
    Arc<AtomicU64>,
) {
    let mut roots = RootCertStore::empty();
    roots
        .add(certificate.der.clone().into())
        .expect("trusting the test certificate");
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    let (up, down) = (Arc::default(), Arc::default());
    let tcp = Counted {
        io: TcpStream::connect(server.addr).await.expect("connecting"),
        up: Arc::clone(&up),
        down: Arc::clone(&down),
    };
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").expect("a name"), tcp)
        .await
        .expect("the TLS handshake");
    (tls, up, down)
}

fn report(response: &http::Response<hyper::body::Incoming>) -> WireReport {
    response
        .headers()
        .get(WireReport::HEADER)
        .and_then(|value| value.to_str().ok())
        .and_then(WireReport::from_header)
        .expect("a metered answer carries its meter's report")
}

fn get(server: &TestServer, path: &str) -> http::Request<Empty<Bytes>> {
    http::Request::get(format!("https://localhost:{}{path}", server.addr.port()))
        .body(Empty::new())
        .expect("a request")
}

/// Polling and an SSE stream at once on one HTTP/2 connection: each meter gets its own
/// stream's bytes, the two and the connection's own add up to what the client's socket
/// counted, and a poll's answer costs at least its frames.
#[tokio::test]
async fn http2_charges_each_stream_its_own_tls_bytes() {
    let certificate = Certificate::new();
    let server = tls_server(&certificate);
    let (tls, up, down) = connect(&server, &certificate, &[b"h2", b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut send, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .expect("the HTTP/2 handshake");
    let connection = tokio::spawn(connection);

    let sse = send
        .send_request(get(&server, "/api/sse?since=0&meter=b"))
        .await
        .expect("opening SSE");
    assert_eq!(sse.version(), http::Version::HTTP_2);
    let mut sse_body = sse.into_body();
    let (mut cursor, mut poll_bodies, mut polls) = (0u64, 0u64, None);
    for _ in 0..20 {
        let response = send
            .send_request(get(&server, &format!("/api/poll?since={cursor}&meter=a")))
            .await
            .expect("polling");
        assert_eq!(response.version(), http::Version::HTTP_2);
        polls = Some(report(&response));
        let body = response
            .into_body()
            .collect()
            .await
            .expect("a body")
            .to_bytes();
        poll_bodies += body.len() as u64;
        cursor = serde_json::from_slice::<Batch>(&body)
            .expect("a batch")
            .cursor;
        // Something from the stream between polls, so the two interleave on the wire.
        tokio::time::timeout(PATIENCE, sse_body.frame())
            .await
            .expect("SSE goes on while polling")
            .expect("SSE frames")
            .expect("an SSE frame");
    }
    let polls = polls.expect("twenty polls");
    assert_eq!(polls.requests, 20);
    // Each request: a HEADERS frame (HPACK shrinks the repeats) in a TLS record of 22 bytes
    // more; the 20th is counted before its answer's report is written.
    assert!(
        (20 * (9 + 22)..20 * 200).contains(&polls.up),
        "polling's requests cost {} bytes",
        polls.up
    );

    // The SSE stream's meter reports as a comment every second; end it and read it by poll.
    drop(sse_body);
    let last = send
        .send_request(get(&server, "/api/time?transport=sse&meter=b"))
        .await
        .expect("reading b");
    let streamed = report(&last);
    last.into_body().collect().await.expect("a body");
    let last_poll = send
        .send_request(get(&server, &format!("/api/poll?since={cursor}&meter=a")))
        .await
        .expect("reading a");
    let polls = report(&last_poll);
    last_poll.into_body().collect().await.expect("a body");
    // Each answer: its body, a HEADERS frame, DATA frame heads, TLS records (22 bytes each).
    assert!(
        polls.down > poll_bodies + 20 * (9 + 9 + 22),
        "polling's answers cost {} bytes for {poll_bodies} of bodies",
        polls.down
    );
    let (up, down) = (up.load(Ordering::Relaxed), down.load(Ordering::Relaxed));
    // What the two meters hold against what crossed the socket: the rest is the
    // connection's (the handshake, the preface, SETTINGS, WINDOW_UPDATE) and the last
    // answers, counted after their reports were written.
    for (direction, meters, socket) in [
        ("down", polls.down + streamed.down, down),
        ("up", polls.up + streamed.up, up),
    ] {
        assert!(
            meters <= socket && socket - meters < 4_000,
            "{direction}: the meters hold {meters} bytes, the socket counted {socket}"
        );
    }
    assert!(streamed.down > 2_000, "SSE's meter: {streamed:?}");
    drop(send);
    let _ = connection.await;
    server.shut_down().await.expect("a clean shutdown");
}

/// HTTP/1.1 over TLS: one request at a time, charged its records; the handshake is charged to
/// the first request, the one the connection was opened for.
#[tokio::test]
async fn http1_over_tls_charges_each_request_its_records() {
    let certificate = Certificate::new();
    let server = tls_server(&certificate);
    let (mut tls, up, down) = connect(&server, &certificate, &[b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let handshake = (up.load(Ordering::Relaxed), down.load(Ordering::Relaxed));
    let request = "GET /api/poll?since=0&meter=c HTTP/1.1\r\nhost: localhost\r\n\r\n";
    tls.write_all(request.as_bytes()).await.expect("asking");
    let mut answer = Vec::new();
    let mut buf = [0u8; 16_384];
    let report = loop {
        let read = tokio::time::timeout(PATIENCE, tls.read(&mut buf))
            .await
            .expect("an answer")
            .expect("reading");
        assert!(read > 0, "the connection ended early");
        answer.extend_from_slice(&buf[..read]);
        let text = String::from_utf8_lossy(&answer);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length: "))
                .and_then(|value| value.trim().parse().ok())
                .expect("a content-length");
            if body.len() >= length {
                break head
                    .lines()
                    .find_map(|line| line.strip_prefix("tickscope-wire: "))
                    .and_then(WireReport::from_header)
                    .expect("the meter's report");
            }
        }
    };
    // The handshake and the request's record, exactly; the answer is counted after its
    // report is written.
    let (up, down) = (up.load(Ordering::Relaxed), down.load(Ordering::Relaxed));
    assert_eq!(
        report.up, up,
        "the handshake and the request, as the socket sent them"
    );
    assert!(
        report.up > handshake.0 + request.len() as u64,
        "a record costs more than its plaintext"
    );
    assert!(
        (handshake.1..down).contains(&report.down),
        "the handshake's answer ({} bytes, then {down} with the answer) is the request's: {}",
        handshake.1,
        report.down
    );
    drop(tls);
    server.shut_down().await.expect("a clean shutdown");
}

/// curl (nghttp2 inside) gets HTTP/2 when it asks for it and HTTP/1.1 when it asks for
/// that; a client speaking plain HTTP to the HTTPS port is dropped and harms no one.
#[tokio::test]
async fn curl_gets_http2_and_plain_http_is_dropped() {
    let certificate = Certificate::new();
    let server = tls_server(&certificate);
    let curl = |flag: &str| -> String {
        let output = Command::new("curl")
            .args(["--silent", "--show-error", "--max-time", "10", flag])
            .arg("--cacert")
            .arg(&certificate.cert)
            .args([
                "--output",
                "/dev/null",
                "--write-out",
                "%{http_version} %{http_code}",
            ])
            .arg(format!(
                "https://localhost:{}/api/symbols",
                server.addr.port()
            ))
            .output()
            .expect("running curl (just test installs it)");
        assert!(output.status.success(), "curl {flag}: {output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    assert_eq!(curl("--http2"), "2 200");
    assert_eq!(curl("--http1.1"), "1.1 200");

    let mut plain = TcpStream::connect(server.addr).await.expect("connecting");
    plain
        .write_all(b"GET /api/symbols HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .expect("asking in the clear");
    let mut rest = Vec::new();
    let read = tokio::time::timeout(PATIENCE, plain.read_to_end(&mut rest))
        .await
        .expect("the server ends a connection that is not TLS");
    assert!(
        read.is_err() || !String::from_utf8_lossy(&rest).contains("200 OK"),
        "plain HTTP got an answer on the HTTPS port"
    );
    assert_eq!(curl("--http2"), "2 200", "the server serves on");
    server.shut_down().await.expect("a clean shutdown");
}
