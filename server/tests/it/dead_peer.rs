//! A peer that vanishes without closing (a laptop lid shut, a network gone) is found by the
//! server within `--dead-peer-timeout-ms`. The client is `curl` in a network namespace of the
//! test's own, joined to the host by a veth pair; taking its end down leaves the server's
//! packets unacknowledged, as a dead peer does. Needs root and iproute2 (`ip netns`).

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tokio::time::{Instant, sleep};

use crate::helpers::{PATIENCE, TestServer, metric};

/// A network namespace with a veth pair to the host: the host end is `host_ip`.
struct Namespace {
    name: String,
    client_link: String,
    host_ip: Ipv4Addr,
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
    fn create() -> Self {
        let id = std::process::id() % 100_000;
        let (name, host_link, client_link) =
            (format!("tks{id}"), format!("tkh{id}"), format!("tkc{id}"));
        let subnet = (id % 250) as u8;
        let host_ip = Ipv4Addr::new(10, 213, subnet, 1);
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        ip(&["netns", "add", &name]);
        let namespace = Self {
            name,
            client_link,
            host_ip,
        };
        ip(&[
            "link",
            "add",
            &host_link,
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
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &host_link]);
        ip(&["link", "set", &host_link, "up"]);
        let client_ip = format!("10.213.{subnet}.2/30");
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

    /// `curl -N url` inside the namespace; its output lines come through the receiver.
    fn curl(&self, url: &str) -> (Child, mpsc::Receiver<String>) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name, "curl", "-sN", url])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting curl in the namespace");
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
        // Deleting the namespace deletes the veth pair with it.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

fn sse_clients(metrics: &str) -> u64 {
    metric(metrics, r#"tickscope_clients{transport="sse"}"#)
}

#[tokio::test]
async fn a_vanished_sse_peer_is_dropped_within_the_dead_peer_timeout() {
    let namespace = Namespace::create();
    let server = TestServer::start_on(
        SocketAddr::new(IpAddr::V4(namespace.host_ip), 0),
        |config| {
            config.dead_peer_timeout_ms = 2_000;
            config.sse_heartbeat_ms = 500;
            // Little data, and no slow-consumer drop: only dead-peer detection can end it.
            config.rate = 5.0;
            config.slow_client_timeout_ms = 3_600_000;
        },
    );
    let (mut curl, lines) = namespace.curl(&server.url("/api/sse?since=0"));
    // The stream is live once its first event (a batch, with its id) arrives.
    let lines = tokio::task::spawn_blocking(move || {
        while let Ok(line) = lines.recv_timeout(PATIENCE) {
            if line.starts_with("id:") {
                return lines;
            }
        }
        panic!("no SSE event through the namespace");
    })
    .await
    .unwrap();
    assert_eq!(sse_clients(&server.metrics().await), 1);

    namespace.cut();
    let cut_at = Instant::now();
    loop {
        if sse_clients(&server.metrics().await) == 0 {
            break;
        }
        assert!(
            cut_at.elapsed() < PATIENCE,
            "the dead SSE peer is still held after {:?}",
            cut_at.elapsed()
        );
        sleep(Duration::from_millis(100)).await;
    }
    let _ = curl.kill();
    let _ = curl.wait();
    drop(lines);
}
