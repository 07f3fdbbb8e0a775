//! A peer that vanishes without closing (a laptop lid shut, a network gone) is found by the
//! server within `--dead-peer-timeout-ms` and counted in `tickscope_dead_peers_total`, and one
//! that leaves is not. The client (`curl`, or Python for WebSocket) runs in a network namespace
//! of the test's own, joined to the host by a veth pair; taking its end down leaves the
//! server's packets unacknowledged, as a dead peer does. Needs root, iproute2 (`ip netns`),
//! curl and python3.
//!
//! The veth pair's host end is a device on the host, a network change to any Chromium running
//! (`ERR_NETWORK_CHANGED`), so a namespace holds the browser's turn from before its pair
//! comes until after it is gone.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use tokio::time::{Instant, sleep};

use crate::helpers::{PATIENCE, TestServer, metric};

/// A network namespace with a veth pair to the host: the host end is `host_ip`.
struct Namespace {
    name: String,
    host_link: String,
    client_link: String,
    host_ip: Ipv4Addr,
    /// Released after `Drop::drop` has deleted the pair (fields drop after it).
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

fn ip(args: &[&str]) {
    let output = Command::new("ip")
        .args(args)
        .output()
        .expect("running `ip` (iproute2)");
    assert!(
        output.status.success(),
        "ip {}: {} (this test needs root to make a network namespace)",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Namespace {
    /// A namespace of its own for each test, also across test processes running at once.
    async fn create() -> Self {
        let turn = crate::chromedriver::turn().await;
        static MADE: AtomicU32 = AtomicU32::new(0);
        let id = std::process::id() % 1_000_000 * 10 + MADE.fetch_add(1, Ordering::Relaxed) % 10;
        let (name, host_link, client_link) =
            (format!("tks{id}"), format!("tkh{id}"), format!("tkc{id}"));
        // One /30 of 10.213.0.0/16 per id.
        let [_, _, high, low] = (id % 16_384 * 4).to_be_bytes();
        let host_ip = Ipv4Addr::new(10, 213, high, low + 1);
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        ip(&["netns", "add", &name]);
        let namespace = Self {
            name,
            host_link,
            client_link,
            host_ip,
            _turn: turn,
        };
        ip(&[
            "link",
            "add",
            &namespace.host_link,
            "type",
            "veth",
            "peer",
            "name",
            &namespace.client_link,
        ]);
        ip(&[
            "link",
            "set",
            &namespace.client_link,
            "netns",
            &namespace.name,
        ]);
        ip(&[
            "addr",
            "add",
            &format!("{host_ip}/30"),
            "dev",
            &namespace.host_link,
        ]);
        ip(&["link", "set", &namespace.host_link, "up"]);
        let client_ip = format!("10.213.{high}.{}/30", low + 2);
        namespace.exec_ip(&["addr", "add", &client_ip, "dev", &namespace.client_link]);
        namespace.exec_ip(&["link", "set", &namespace.client_link, "up"]);
        namespace
    }

    fn exec_ip(&self, args: &[&str]) {
        let mut full = vec!["netns", "exec", &self.name, "ip"];
        full.extend_from_slice(args);
        ip(&full);
    }

    /// The client's end goes down: nothing it sends, acknowledgements included, arrives.
    fn cut(&self) {
        self.exec_ip(&["link", "set", &self.client_link, "down"]);
    }

    /// `curl -sN [args] url` inside the namespace; its output lines come through the receiver.
    fn curl(&self, args: &[&str], url: &str) -> (Child, mpsc::Receiver<String>) {
        let mut full = vec!["netns", "exec", &self.name, "curl", "-sN"];
        full.extend_from_slice(args);
        full.push(url);
        self.spawn(&full)
    }

    /// A WebSocket client inside the namespace: it subscribes to everything and prints a line
    /// for each read, until the connection ends.
    fn websocket(&self, addr: SocketAddr) -> (Child, mpsc::Receiver<String>) {
        let (host, port) = (addr.ip().to_string(), addr.port().to_string());
        self.spawn(&[
            "netns",
            "exec",
            &self.name,
            "python3",
            "-c",
            WEBSOCKET_CLIENT,
            &host,
            &port,
        ])
    }

    fn spawn(&self, args: &[&str]) -> (Child, mpsc::Receiver<String>) {
        let mut child = Command::new("ip")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting a client in the namespace");
        let stdout = child.stdout.take().expect("piped stdout");
        let (lines_tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    return;
                }
            }
        });
        (child, lines)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        // Both ends of the pair go now. Left to the namespace, they would go only when it
        // dies, after the cut client's sockets have given up: minutes later, in another
        // test's time.
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_link])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// A WebSocket handshake and a masked `subscribe` text frame, then a line per read.
const WEBSOCKET_CLIENT: &str = r#"
import base64, os, socket, sys
host, port = sys.argv[1], int(sys.argv[2])
s = socket.create_connection((host, port))
key = base64.b64encode(os.urandom(16)).decode()
s.sendall((f"GET /api/ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
payload = b'{"type":"subscribe"}'
mask = os.urandom(4)
s.sendall(bytes([0x81, 0x80 | len(payload)]) + mask
          + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
while s.recv(65536):
    print("read", flush=True)
"#;

fn clients(metrics: &str, transport: &str) -> u64 {
    metric(
        metrics,
        &format!(r#"tickscope_clients{{transport="{transport}"}}"#),
    )
}

fn dead_peers(metrics: &str, transport: &str) -> u64 {
    metric(
        metrics,
        &format!(r#"tickscope_dead_peers_total{{transport="{transport}"}}"#),
    )
}

/// A server on the namespace's host address that only dead-peer detection ends streams on:
/// little data, and no slow-consumer drop.
fn server_for(namespace: &Namespace) -> TestServer {
    TestServer::start_on(
        SocketAddr::new(IpAddr::V4(namespace.host_ip), 0),
        |config| {
            config.dead_peer_timeout_ms = 2_000;
            config.sse_heartbeat_ms = 500;
            config.ws_heartbeat_ms = 500;
            config.rate = 5.0;
            config.slow_client_timeout_ms = 3_600_000;
            config.ws_client_timeout_ms = 3_600_000;
        },
    )
}

/// Waits for the first line that `ready` accepts.
async fn first_line(
    lines: mpsc::Receiver<String>,
    ready: fn(&str) -> bool,
) -> mpsc::Receiver<String> {
    tokio::task::spawn_blocking(move || {
        while let Ok(line) = lines.recv_timeout(PATIENCE) {
            if ready(&line) {
                return lines;
            }
        }
        panic!("the client in the namespace got nothing");
    })
    .await
    .unwrap()
}

/// Waits until the server holds no client of `transport`; fails after `PATIENCE`.
async fn until_no_clients(server: &TestServer, transport: &str) {
    let start = Instant::now();
    loop {
        if clients(&server.metrics().await, transport) == 0 {
            return;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "the {transport} peer is still held after {:?}",
            start.elapsed()
        );
        sleep(Duration::from_millis(100)).await;
    }
}

/// Cuts the namespace's link with `client` connected over `transport`: the server drops it
/// and counts one dead peer.
async fn cut_and_expect_a_dead_peer(
    namespace: &Namespace,
    server: &TestServer,
    transport: &str,
    mut client: Child,
) {
    let metrics = server.metrics().await;
    assert_eq!(clients(&metrics, transport), 1);
    assert_eq!(dead_peers(&metrics, transport), 0);
    namespace.cut();
    // Without the dead-peer timeout the kernel would retransmit for 15 minutes, and the
    // server's own timeouts are set to an hour: only finding the dead peer ends it in time.
    until_no_clients(server, transport).await;
    assert_eq!(dead_peers(&server.metrics().await, transport), 1);
    let _ = client.kill();
    let _ = client.wait();
}

#[tokio::test]
async fn a_vanished_sse_peer_is_dropped_and_counted_and_one_that_leaves_is_not() {
    let namespace = Namespace::create().await;
    let server = server_for(&namespace);
    let url = server.url("/api/sse?since=0");

    // A client that leaves: curl ends its stream after a second.
    let (mut leaving, lines) = namespace.curl(&["--max-time", "1"], &url);
    let lines = first_line(lines, |line| line.starts_with("id:")).await;
    let _ = leaving.wait();
    drop(lines);
    until_no_clients(&server, "sse").await;
    assert_eq!(dead_peers(&server.metrics().await, "sse"), 0);

    let (curl, lines) = namespace.curl(&[], &url);
    let _lines = first_line(lines, |line| line.starts_with("id:")).await;
    cut_and_expect_a_dead_peer(&namespace, &server, "sse", curl).await;
}

#[tokio::test]
async fn a_vanished_websocket_peer_is_dropped_and_counted() {
    let namespace = Namespace::create().await;
    let server = server_for(&namespace);
    let (client, lines) = namespace.websocket(server.addr);
    let _lines = first_line(lines, |line| line == "read").await;
    // The first read may be the handshake's answer alone; the subscription is live once the
    // server counts the client.
    let start = Instant::now();
    while clients(&server.metrics().await, "websocket") == 0 {
        assert!(
            start.elapsed() < PATIENCE,
            "the WebSocket client never connected"
        );
        sleep(Duration::from_millis(50)).await;
    }
    cut_and_expect_a_dead_peer(&namespace, &server, "websocket", client).await;
}

#[tokio::test]
async fn a_vanished_long_poll_peer_is_dropped_and_counted() {
    let namespace = Namespace::create().await;
    let server = TestServer::start_on(
        SocketAddr::new(IpAddr::V4(namespace.host_ip), 0),
        |config| {
            config.dead_peer_timeout_ms = 2_000;
            // No ticks: the long poll is held until its peer is found dead.
            config.rate = 0.0;
            config.long_poll_max_timeout_ms = 3_600_000;
        },
    );
    let url = server.url("/api/long-poll?timeout_ms=3600000");
    let (client, _lines) = namespace.curl(&[], &url);
    let start = Instant::now();
    while clients(&server.metrics().await, "long_polling") == 0 {
        assert!(start.elapsed() < PATIENCE, "the long poll never arrived");
        sleep(Duration::from_millis(50)).await;
    }
    cut_and_expect_a_dead_peer(&namespace, &server, "long_polling", client).await;
}
