//! Wire bytes: what the server charges each transport and meter is every byte on
//! the connection, both ways. These clients count what they write and read on a bare TCP
//! socket, so the server's figures are checked to the byte.

use std::net::SocketAddr;

use tickscope_shared::wire::{ServerMessage, WireReport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::helpers::{PATIENCE, TestServer, metric};

/// A TCP connection that counts the bytes it writes and reads.
struct Counted {
    stream: TcpStream,
    sent: u64,
    received: u64,
}

impl Counted {
    async fn connect(addr: SocketAddr) -> Self {
        Self {
            stream: TcpStream::connect(addr).await.expect("connecting"),
            sent: 0,
            received: 0,
        }
    }

    async fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("writing");
        self.sent += bytes.len() as u64;
    }

    async fn read_exact(&mut self, buf: &mut [u8]) {
        timeout(PATIENCE, self.stream.read_exact(buf))
            .await
            .expect("the server answered in time")
            .expect("reading");
        self.received += buf.len() as u64;
    }

    /// Reads what comes until the server closes; returns it.
    async fn read_to_end(&mut self) -> Vec<u8> {
        let mut rest = Vec::new();
        timeout(PATIENCE, self.stream.read_to_end(&mut rest))
            .await
            .expect("the server closed in time")
            .expect("reading");
        self.received += rest.len() as u64;
        rest
    }

    /// Reads a response head, one byte at a time so nothing after it is taken.
    async fn head(&mut self) -> String {
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8];
            self.read_exact(&mut byte).await;
            head.push(byte[0]);
        }
        String::from_utf8(head).expect("an ASCII head")
    }

    /// One keep-alive GET with a sized answer: (head, body).
    async fn get(&mut self, path: &str) -> (String, Vec<u8>) {
        let request = format!("GET {path} HTTP/1.1\r\nHost: tickscope.test\r\n\r\n");
        self.write(request.as_bytes()).await;
        let head = self.head().await;
        let length: usize = header(&head, "content-length")
            .unwrap_or_else(|| panic!("a sized answer: {head}"))
            .parse()
            .expect("a length");
        let mut body = vec![0u8; length];
        self.read_exact(&mut body).await;
        (head, body)
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

fn report(head: &str) -> WireReport {
    let value = header(head, WireReport::HEADER)
        .unwrap_or_else(|| panic!("a metered answer carries its report: {head}"));
    WireReport::from_header(value).expect("a well-formed report")
}

fn wire_total(metrics: &str, transport: &str, direction: &str) -> u64 {
    metric(
        metrics,
        &format!(
            r#"tickscope_wire_bytes_total{{transport="{transport}",direction="{direction}"}}"#
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_byte_of_a_request_is_charged_to_its_transport_and_meter() {
    let server = TestServer::start(|_| {});
    let mut conn = Counted::connect(server.addr).await;
    // One keep-alive connection carries two pages' requests: meter a1's long polls and the
    // clock exchanges it makes for them, and meter b2's poll.
    let (mut a1_up, mut a1_down) = (0, 0);
    let mut a1_requests = 0;
    for path in [
        "/api/time?transport=long_polling&meter=a1",
        "/api/long-poll?since=0&meter=a1",
        "/api/time?transport=long_polling&meter=a1",
        "/api/long-poll?since=0&meter=a1",
    ] {
        let (sent, received) = (conn.sent, conn.received);
        conn.get(path).await;
        a1_up += conn.sent - sent;
        a1_down += conn.received - received;
        a1_requests += 1;
    }
    let (sent, received) = (conn.sent, conn.received);
    let (head, _) = conn.get("/api/poll?since=0&meter=b2").await;
    let (b2_up, b2_down) = (conn.sent - sent, conn.received - received);
    let b2 = report(&head);
    assert_eq!((b2.up, b2.down, b2.requests), (b2_up, 0, 1), "{head}");

    // The report covers this request's head, and every answer before this one.
    let (sent, received) = (conn.sent, conn.received);
    let (head, _) = conn.get("/api/time?transport=long_polling&meter=a1").await;
    let a1 = report(&head);
    a1_up += conn.sent - sent;
    assert_eq!(
        (a1.up, a1.down, a1.requests),
        (a1_up, a1_down, a1_requests + 1),
        "{head}"
    );
    a1_down += conn.received - received;

    let metrics = server.metrics().await;
    assert_eq!(wire_total(&metrics, "long_polling", "up"), a1_up);
    assert_eq!(wire_total(&metrics, "long_polling", "down"), a1_down);
    assert_eq!(wire_total(&metrics, "polling", "up"), b2_up);
    assert_eq!(wire_total(&metrics, "polling", "down"), b2_down);
    // The app and the rest are `other`: here, the request for this very text.
    assert!(wire_total(&metrics, "other", "up") > 0);
    server.shut_down().await.expect("clean shutdown");
}

/// A masked client frame carrying `payload`.
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x1d, 0x2c, 0x3b, 0x4a];
    let length = u8::try_from(payload.len()).expect("a short frame");
    let mut frame = vec![0x80 | opcode, 0x80 | length];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Reads one server frame: (opcode, payload, bytes before it on the connection).
async fn server_frame(conn: &mut Counted) -> (u8, Vec<u8>, u64) {
    let before = conn.received;
    let mut head = [0u8; 2];
    conn.read_exact(&mut head).await;
    let length = match head[1] & 0x7f {
        126 => {
            let mut length = [0u8; 2];
            conn.read_exact(&mut length).await;
            u64::from(u16::from_be_bytes(length))
        }
        127 => {
            let mut length = [0u8; 8];
            conn.read_exact(&mut length).await;
            u64::from_be_bytes(length)
        }
        short => u64::from(short),
    };
    let mut payload = vec![0u8; usize::try_from(length).expect("a frame's length")];
    conn.read_exact(&mut payload).await;
    (head[0] & 0x0f, payload, before)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_is_charged_its_handshake_frames_and_masks() {
    let server = TestServer::start(|_| {});
    let mut conn = Counted::connect(server.addr).await;
    let upgrade = format!(
        "GET /api/ws?meter=c3 HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        server.addr
    );
    conn.write(upgrade.as_bytes()).await;
    let head = conn.head().await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    conn.write(&client_frame(0x1, br#"{"type":"subscribe","since":0}"#))
        .await;

    // Two reports: each has everything the client sent, and what the server wrote before it
    // (frames it queued just before may still be on their way).
    let mut reports = Vec::new();
    let mut previous_report_at = 0;
    while reports.len() < 2 {
        let (opcode, payload, before) = server_frame(&mut conn).await;
        if opcode != 0x1 {
            continue;
        }
        if let Ok(ServerMessage::Wire(report)) = serde_json::from_slice(&payload) {
            assert_eq!(report.up, conn.sent, "every byte the client sent");
            assert!(
                report.down <= before && report.down >= previous_report_at,
                "{report:?}: {before} bytes came before it, {previous_report_at} before the last"
            );
            assert_eq!(report.requests, 1, "the upgrade");
            previous_report_at = before;
            reports.push(report);
        }
    }

    // The client closes; the server answers and ends the connection. Every byte both ways
    // is then in /metrics.
    conn.write(&client_frame(0x8, &1000u16.to_be_bytes())).await;
    conn.read_to_end().await;
    let metrics = server.metrics().await;
    assert_eq!(wire_total(&metrics, "websocket", "up"), conn.sent);
    assert_eq!(wire_total(&metrics, "websocket", "down"), conn.received);
    server.shut_down().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sse_stream_reports_its_meter_every_second() {
    let server = TestServer::start(|_| {});
    let mut conn = Counted::connect(server.addr).await;
    let request = "GET /api/sse?since=0&meter=d4 HTTP/1.1\r\nHost: tickscope.test\r\n\r\n";
    conn.write(request.as_bytes()).await;
    let head = conn.head().await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut stream = head.into_bytes();
    let mut reports: Vec<(WireReport, usize)> = Vec::new();
    let marker = b"event: wire\ndata: ";
    let mut searched = 0;
    while reports.len() < 2 {
        let mut chunk = [0u8; 4096];
        let read = timeout(PATIENCE, conn.stream.read(&mut chunk))
            .await
            .expect("events in time")
            .expect("reading");
        assert!(read > 0, "the stream ended");
        conn.received += read as u64;
        stream.extend_from_slice(&chunk[..read]);
        while let Some(found) = stream[searched..]
            .windows(marker.len())
            .position(|window| window == marker)
        {
            let start = searched + found;
            let data = &stream[start + marker.len()..];
            let Some(end) = data.iter().position(|&b| b == b'\n') else {
                break;
            };
            let report: WireReport = serde_json::from_slice(&data[..end]).expect("a report");
            reports.push((report, start));
            searched = start + marker.len() + end;
        }
    }
    let mut previous = 0;
    for (report, at) in reports {
        assert_eq!(report.up, request.len() as u64, "the request's head");
        assert!(
            report.down <= at as u64 && report.down >= previous,
            "{report:?}: {at} bytes before it, {previous} before the last"
        );
        previous = at as u64;
    }
    server.shut_down().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_meter_or_transport_is_refused() {
    let server = TestServer::start(|_| {});
    for (path, expected) in [
        ("/api/poll?since=0&meter=xyz", "meter must be"),
        ("/api/poll?since=0&meter=00000000000000001", "meter must be"),
        ("/api/time?transport=pigeon", "transport must be"),
    ] {
        let response = reqwest::get(server.url(path)).await.expect("GET");
        assert_eq!(response.status(), 400, "{path}");
        let body: serde_json::Value = response.json().await.expect("a JSON error");
        let error = body["error"].as_str().expect("an error text");
        assert!(error.contains(expected), "{path}: {error}");
    }
    server.shut_down().await.expect("clean shutdown");
}
