//! A WebSocket frame that declares more than `--max-ws-message-bytes` is refused at its header:
//! the server closes with 1009 before the payload comes, holds none of it, and
//! shuts the connection down a short grace later even while the client goes on sending.
//! These clients write frames by hand, since no WebSocket library sends such frames.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tickscope_shared::cursor::CursorChain;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::timeout;

use crate::helpers::{
    PATIENCE, ServerProcess, TestServer, WsClient, accept, next_ws_batch, ws_subscribe_at,
};

const MIB: u64 = 1 << 20;

/// Opens a WebSocket on a bare TCP stream: the upgrade request, then the `101` head read.
async fn raw_websocket(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connecting");
    let request = format!(
        "GET /api/ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("upgrade");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let byte = timeout(PATIENCE, stream.read_u8())
            .await
            .expect("the upgrade answered in time")
            .expect("the upgrade's head");
        head.push(byte);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    stream
}

/// A masked client frame header: FIN, `opcode`, `length` in the 7-, 16- or 64-bit form.
fn header(fin: bool, opcode: u8, length: u64, form: u8) -> Vec<u8> {
    let mut bytes = vec![if fin { 0x80 } else { 0 } | opcode];
    match form {
        7 => bytes.push(0x80 | u8::try_from(length).expect("a 7-bit length")),
        16 => {
            bytes.push(0x80 | 126);
            let length = u16::try_from(length).expect("a 16-bit length");
            bytes.extend_from_slice(&length.to_be_bytes());
        }
        _ => {
            bytes.push(0x80 | 127);
            bytes.extend_from_slice(&length.to_be_bytes());
        }
    }
    bytes.extend_from_slice(&[0x37, 0xfa, 0x21, 0x3d]);
    bytes
}

/// Reads the server's frames until its close frame, and returns its code and reason.
async fn read_close(stream: &mut (impl AsyncRead + Unpin)) -> (u16, String) {
    loop {
        let mut head = [0u8; 2];
        stream.read_exact(&mut head).await.expect("a frame header");
        let length = match head[1] & 0x7f {
            126 => u64::from(stream.read_u16().await.expect("a 16-bit length")),
            127 => stream.read_u64().await.expect("a 64-bit length"),
            short => u64::from(short),
        };
        let mut payload = vec![0u8; usize::try_from(length).expect("a server frame's length")];
        stream.read_exact(&mut payload).await.expect("a payload");
        if head[0] & 0x0f == 0x8 {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            return (code, String::from_utf8_lossy(&payload[2..]).into_owned());
        }
    }
}

/// Whether the server ends the connection: reads until the end of the stream or a reset.
async fn closed_by_server(stream: &mut (impl AsyncRead + Unpin)) -> bool {
    let mut sink = [0u8; 4096];
    let ended = async {
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    };
    timeout(PATIENCE, ended).await.is_ok()
}

/// Follows a bystander's feed until told to stop, checking its chain; returns how many
/// batches it took.
fn bystander(mut ws: WsClient) -> (oneshot::Sender<()>, tokio::task::JoinHandle<usize>) {
    let (stop, mut stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut chain = CursorChain::new(Some(0), true);
        let mut batches = 0;
        loop {
            tokio::select! {
                _ = &mut stopped => return batches,
                batch = next_ws_batch(&mut ws) => {
                    accept(&mut chain, &batch);
                    batches += 1;
                }
            }
        }
    });
    (stop, task)
}

/// What one attack saw.
struct Attack {
    /// The close frame's code and reason.
    close: (u16, String),
    /// Bytes the client had written after the header when the close frame came.
    sent_at_close: u64,
    /// Bytes written after the header in all.
    sent: u64,
    /// Whether the server ended the connection while the client was still sending.
    cut_off: bool,
    /// The server's largest RSS seen during the attack.
    peak_rss: u64,
}

/// Declares a text frame of 2^40 bytes, then tries to stream `stream_bytes` of payload as
/// fast as the connection takes it, sampling the server's RSS all along. The client's send
/// buffer is 64 KiB, so what it has written is what the server's side took, give or take
/// the kernel's buffers: a server that stops reading holds it back.
async fn declare_2_40_and_stream(server: &ServerProcess, stream_bytes: u64) -> Attack {
    let stream = raw_websocket(server.addr).await;
    socket2::SockRef::from(&stream)
        .set_send_buffer_size(64 * 1024)
        .expect("a 64 KiB send buffer");
    let (mut reader, mut writer) = stream.into_split();
    let sent = Arc::new(AtomicU64::new(0));
    let watcher = {
        let sent = Arc::clone(&sent);
        tokio::spawn(async move {
            let close = read_close(&mut reader).await;
            let sent_at_close = sent.load(Ordering::SeqCst);
            assert!(closed_by_server(&mut reader).await, "the server ends it");
            (close, sent_at_close)
        })
    };
    writer
        .write_all(&header(true, 0x1, 1 << 40, 64))
        .await
        .expect("the header");
    let chunk = vec![0x5a_u8; 16 * 1024];
    let mut peak_rss = server.rss_bytes();
    let mut written = 0u64;
    let cut_off = loop {
        if written >= stream_bytes {
            break false;
        }
        match timeout(PATIENCE, writer.write_all(&chunk)).await {
            Ok(Ok(())) => {}
            Ok(Err(_reset)) => break true,
            Err(_) => {
                panic!("a write blocked for {PATIENCE:?}: the server neither read nor closed")
            }
        }
        written += chunk.len() as u64;
        sent.store(written, Ordering::SeqCst);
        if written.is_multiple_of(256 * 1024) {
            peak_rss = peak_rss.max(server.rss_bytes());
        }
    };
    let (close, sent_at_close) = timeout(PATIENCE, watcher)
        .await
        .expect("the close and the connection's end in time")
        .expect("the watcher");
    Attack {
        close,
        sent_at_close,
        sent: written,
        cut_off,
        peak_rss: peak_rss.max(server.rss_bytes()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_declaring_2_40_bytes_is_refused_at_its_header_and_never_buffered() {
    let server = ServerProcess::start(&["--rate", "200", "--seed", "7", "--workers", "1"]);
    let ws = ws_subscribe_at(&server.ws_url(), None, Some(0)).await;
    let (stop, bystander) = bystander(ws);
    // One attack to warm the allocator's arenas, then the one measured.
    declare_2_40_and_stream(&server, 64 * MIB).await;
    let before = server.rss_bytes();
    let attack = declare_2_40_and_stream(&server, 64 * MIB).await;
    eprintln!(
        "close {:?} after {} bytes; {} bytes sent before the server cut the connection; \
         RSS {before} before, {} at most",
        attack.close, attack.sent_at_close, attack.sent, attack.peak_rss
    );

    assert_eq!(attack.close.0, 1009, "{:?}", attack.close);
    assert!(
        attack.close.1.contains("message over 4096 bytes"),
        "{:?}",
        attack.close
    );
    assert!(
        attack.sent_at_close < MIB,
        "the close came after {} bytes",
        attack.sent_at_close
    );
    assert!(
        attack.cut_off,
        "the server let the client send all {} bytes",
        attack.sent
    );
    let grown = attack.peak_rss.saturating_sub(before);
    assert!(
        grown < 8 * MIB,
        "RSS grew by {grown} bytes ({before} before, {} at most)",
        attack.peak_rss
    );
    let _ = stop.send(());
    let batches = bystander.await.expect("the bystander");
    assert!(batches > 0, "the bystander took batches throughout");
}

#[tokio::test]
async fn declared_lengths_over_the_limit_are_refused_at_the_header() {
    let server = TestServer::start(|config| config.rate = 200.0);
    let (stop, bystander) = bystander(server.ws_subscribe(None, Some(0)).await);

    // Only the header is sent: a server that waited for the payload would never answer.
    let limit = 4096;
    let mut fragment_then_continuation = header(false, 0x1, 3000, 16);
    fragment_then_continuation.extend(std::iter::repeat_n(b'x', 3000));
    fragment_then_continuation.extend(header(true, 0x0, 1097, 16));
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "limit + 1, 16-bit form",
            header(true, 0x1, limit + 1, 16),
            1009,
            "message over 4096 bytes (a frame declared 4097)",
        ),
        (
            "65,535, the largest 16-bit form",
            header(true, 0x1, 65_535, 16),
            1009,
            "a frame declared 65535",
        ),
        (
            "65,536, the smallest 64-bit form",
            header(true, 0x2, 65_536, 64),
            1009,
            "a frame declared 65536",
        ),
        (
            "2^63 - 1",
            header(true, 0x1, i64::MAX as u64, 64),
            1009,
            "a frame declared 9223372036854775807",
        ),
        (
            "a continuation past the running total",
            fragment_then_continuation,
            1009,
            "a frame declared 4097",
        ),
        (
            "a ping of 126 bytes",
            header(true, 0x9, 126, 16),
            1002,
            "control frame of 126 bytes",
        ),
    ];
    for (name, bytes, code, reason) in cases {
        let mut stream = raw_websocket(server.addr).await;
        stream.write_all(&bytes).await.expect(name);
        let (got_code, got_reason) = timeout(PATIENCE, read_close(&mut stream))
            .await
            .unwrap_or_else(|_| panic!("{name}: no close in time"));
        assert_eq!(got_code, code, "{name}: {got_reason}");
        assert!(got_reason.contains(reason), "{name}: {got_reason:?}");
        // The server ends the connection, though the client never closes.
        assert!(closed_by_server(&mut stream).await, "{name}: still open");
    }
    let _ = stop.send(());
    assert!(bystander.await.expect("the bystander") > 0);
}
