//! The page's wire figures and `/metrics` against a packet capture: headless
//! Chromium runs the app in each transport for 20 s while tcpdump records the server's port;
//! the TCP payload bytes the capture holds, each way, must match what the page shows and what
//! `/metrics` counts within 3% (for `/metrics`, of what crossed between its two renderings,
//! give or take what crossed while a scrape was on its way). Needs root (tcpdump) and the
//! built app.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::Client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::browser::{chain_ticks, click, dist_dir, wait_text};
use crate::chromedriver::{ChromeDriver, console_errors};
use crate::helpers::{PATIENCE, TestServer, metric};

/// How long each transport runs between the two readings.
const MEASURED_US: i64 = 20_000_000;
/// The most the page's or `/metrics`' figure may differ from the capture's, as a share.
const TOLERANCE: f64 = 0.03;

/// tcpdump writing the port's packets to a file; stopped (and the file complete) on drop.
struct Capture {
    child: Child,
    file: PathBuf,
}

impl Capture {
    async fn start(port: u16) -> Self {
        let file = std::env::temp_dir().join(format!(
            "tickscope-capture-{}-{port}.pcap",
            std::process::id()
        ));
        let mut child = Command::new("tcpdump")
            // Immediate mode: without it, packets wait in the kernel's ring for up to a
            // second and those still there when tcpdump is stopped are lost. Headers are
            // enough: the payload length comes from the IP header.
            .args([
                "-i",
                "lo",
                // Not promiscuous: on loopback it would see nothing more, and turning it on
                // changes the device's flags, a network change to any Chromium running
                // (ERR_NETWORK_CHANGED).
                "-p",
                "-n",
                "--immediate-mode",
                "-U",
                "-s",
                "128",
                "-w",
            ])
            .arg(&file)
            .arg(format!("tcp port {port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting tcpdump (this test needs tcpdump and root; just test installs it)");
        // It says "listening on lo" once it captures.
        let stderr = child.stderr.take().expect("piped");
        // Its log is read to the end, so its last words (the packet counts) never meet a
        // closed pipe.
        let (said, listening) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut said = Some(said);
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if line.contains("listening on")
                    && let Some(said) = said.take()
                {
                    let _ = said.send(());
                }
            }
        });
        let listening = tokio::time::timeout(PATIENCE, listening)
            .await
            .map(|said| said.is_ok());
        assert_eq!(listening, Ok(true), "tcpdump did not start capturing");
        Self { child, file }
    }

    /// Stops the capture and reads its packets.
    fn stop(mut self) -> Vec<Packet> {
        // SAFETY: signalling our own child process, which has not been waited for.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        let _ = self.child.wait();
        read_packets(&self.file)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.file);
    }
}

/// One captured segment: when (Unix µs), its ports, its TCP payload length.
#[derive(Debug, Clone, Copy)]
struct Packet {
    at_us: i64,
    from_port: u16,
    to_port: u16,
    payload: u64,
}

/// The packets of a capture, as `tcpdump -r F -n -q -tt` lists them:
/// `1764166000.123456 IP 127.0.0.1.41234 > 127.0.0.1.38001: tcp 123`.
fn read_packets(file: &Path) -> Vec<Packet> {
    let output = Command::new("tcpdump")
        .args(["-r"])
        .arg(file)
        .args(["-n", "-q", "-tt"])
        .stderr(Stdio::null())
        .output()
        .expect("reading the capture");
    let text = String::from_utf8_lossy(&output.stdout);
    let port = |address: &str| -> u16 {
        let address = address.trim_end_matches(':');
        address[address.rfind('.').expect("address.port") + 1..]
            .parse()
            .expect("a port")
    };
    text.lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (seconds, micros) = fields[0].split_once('.').expect("seconds.micros");
            Packet {
                at_us: seconds.parse::<i64>().expect("seconds") * 1_000_000
                    + micros.parse::<i64>().expect("micros"),
                from_port: port(fields[2]),
                to_port: port(fields[4]),
                payload: fields
                    .last()
                    .and_then(|length| length.parse().ok())
                    .expect("a payload length"),
            }
        })
        .collect()
}

/// Bytes (down, up) the capture holds for the server on `port` in `(from_us, to_us]`, leaving
/// out the test's own connections (its `/metrics` reads).
fn captured(
    packets: &[Packet],
    port: u16,
    (from_us, to_us): (i64, i64),
    ignore: &HashSet<u16>,
) -> (u64, u64) {
    let mut down_up = (0, 0);
    for packet in packets {
        if packet.at_us <= from_us || packet.at_us > to_us {
            continue;
        }
        if packet.from_port == port && !ignore.contains(&packet.to_port) {
            down_up.0 += packet.payload;
        } else if packet.to_port == port && !ignore.contains(&packet.from_port) {
            down_up.1 += packet.payload;
        }
    }
    down_up
}

/// What the page shows at one moment: its transport's wire report and the ticks its chain
/// has taken.
#[derive(Debug, Clone, Copy)]
struct PageReading {
    up: u64,
    down: u64,
    requests: u64,
    /// When the server made the report (Unix µs).
    at: i64,
    ticks: u64,
}

/// The page's reading, taken in one script so that every figure comes from the same frame.
async fn page_report(browser: &Client) -> Option<PageReading> {
    let report = browser
        .execute(
            "const p = document.querySelector('[data-testid=lag-panel]'); \
             const c = document.querySelector('[data-testid=chain]'); \
             return p && c && [p.dataset.wireUp, p.dataset.wireDown, p.dataset.wireRequests, \
                               p.dataset.wireAt, c.textContent];",
            vec![],
        )
        .await
        .ok()?;
    let field = |i: usize| report.get(i)?.as_str()?.parse::<i64>().ok();
    Some(PageReading {
        up: field(0)? as u64,
        down: field(1)? as u64,
        requests: field(2)? as u64,
        at: field(3)?,
        ticks: chain_ticks(report.get(4)?.as_str()?),
    })
}

/// Waits until the page shows a report made at or after `at_us` (Unix µs), which is at most
/// `MEASURED_US` ahead.
async fn page_report_after(browser: &Client, at_us: i64) -> PageReading {
    let deadline =
        tokio::time::Instant::now() + Duration::from_micros(MEASURED_US.unsigned_abs()) + PATIENCE;
    loop {
        if let Some(report) = page_report(browser).await
            && report.at >= at_us
        {
            return report;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the page showed no wire report made after {at_us}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `/metrics` read over a connection of its own: (its local port, the text).
async fn read_metrics(addr: SocketAddr) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connecting");
    let port = stream.local_addr().expect("a local address").port();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .expect("asking for /metrics");
    let mut text = String::new();
    tokio::time::timeout(PATIENCE, stream.read_to_string(&mut text))
        .await
        .expect("/metrics in time")
        .expect("reading /metrics");
    (port, text)
}

/// The first moment the capture saw the connection from `port` send anything.
fn sent_at(packets: &[Packet], port: u16) -> i64 {
    first_payload(packets, |packet| packet.from_port == port)
        .expect("the /metrics request is in the capture")
}

/// The first moment the capture saw the server answer the connection from `port`.
fn answered_at(packets: &[Packet], port: u16) -> i64 {
    first_payload(packets, |packet| packet.to_port == port)
        .expect("the /metrics answer is in the capture")
}

fn first_payload(packets: &[Packet], on: impl Fn(&Packet) -> bool) -> Option<i64> {
    packets
        .iter()
        .find(|packet| on(packet) && packet.payload > 0)
        .map(|packet| packet.at_us)
}

fn wire(metrics: &str, transport: &str) -> (u64, u64) {
    let series = |direction: &str| {
        metric(
            metrics,
            &format!(
                r#"tickscope_wire_bytes_total{{transport="{transport}",direction="{direction}"}}"#
            ),
        )
    };
    (series("down"), series("up"))
}

/// One transport's figures: the page's and `/metrics`' against the capture's.
struct Measured {
    label: &'static str,
    page: (u64, u64),
    page_capture: (u64, u64),
    metrics: (u64, u64),
    /// From request to request of the two scrapes.
    metrics_capture: (u64, u64),
    /// What surely falls between the two renderings of `/metrics` (from the first answer to
    /// the second request), and what may (from the first request to the second answer): a
    /// page's packet sent while a scrape is on its way is counted on either side of it.
    metrics_bounds: ((u64, u64), (u64, u64)),
    requests: u64,
    ticks: u64,
    seconds: f64,
}

fn within(counted: u64, captured: u64) -> bool {
    (counted as f64 - captured as f64).abs() <= TOLERANCE * captured as f64
}

/// `counted` no further than [`TOLERANCE`] outside `[surely, maybe]`.
fn between(counted: u64, surely: u64, maybe: u64) -> bool {
    let counted = counted as f64;
    counted >= (1.0 - TOLERANCE) * surely as f64 && counted <= (1.0 + TOLERANCE) * maybe as f64
}

#[tokio::test]
async fn the_pages_wire_figures_and_metrics_match_a_packet_capture() {
    let server = TestServer::start(|config| {
        config.static_dir = dist_dir();
        config.rate = 50.0;
        config.symbols = 12;
    });
    let port = server.addr.port();
    // The browser's turn first: no other test's browser runs from here until the capture has
    // stopped (`capture.stop()`, below, before the driver goes).
    let driver = ChromeDriver::start().await;
    let capture = Capture::start(port).await;
    let browser = driver.browser().await;
    browser
        .goto(&server.url("/"))
        .await
        .expect("loading the app");

    // (switch id, label, the server's name); the page starts on WebSocket.
    let transports = [
        ("websocket", "WebSocket", "websocket"),
        ("sse", "SSE", "sse"),
        ("stream", "HTTP streaming", "stream"),
        ("long-polling", "Long polling", "long_polling"),
        ("polling-1000", "Polling 1 s", "polling"),
    ];
    let mut scrapes = HashSet::new();
    let mut windows = Vec::new();
    for (id, label, name) in transports {
        click(&browser, &format!("[data-testid=transport-{id}]")).await;
        wait_text(
            &browser,
            "[data-testid=chain]",
            &format!("{label} ticks"),
            |t| chain_ticks(t) > 0,
        )
        .await;
        // The switch settles: the last transport's connections close, the clock is measured.
        let switched_us = tickscope::feed::clock::now_us();
        let first = page_report_after(&browser, switched_us + 3_000_000).await;
        let (scrape0, metrics0) = read_metrics(server.addr).await;
        let last = page_report_after(&browser, first.at + MEASURED_US).await;
        let (scrape1, metrics1) = read_metrics(server.addr).await;
        scrapes.extend([scrape0, scrape1]);
        windows.push((
            label, name, first, last, scrape0, scrape1, metrics0, metrics1,
        ));
    }
    let errors = console_errors(&browser).await;
    assert!(errors.is_empty(), "the browser logged errors: {errors:#?}");
    browser.close().await.expect("closing the browser");
    let packets = capture.stop();

    let mut measured = Vec::new();
    for (label, name, first, last, scrape0, scrape1, metrics0, metrics1) in windows {
        let (down0, up0) = wire(&metrics0, name);
        let (down1, up1) = wire(&metrics1, name);
        let metrics_window = (sent_at(&packets, scrape0), sent_at(&packets, scrape1));
        let surely = (answered_at(&packets, scrape0), sent_at(&packets, scrape1));
        let maybe = (sent_at(&packets, scrape0), answered_at(&packets, scrape1));
        measured.push(Measured {
            label,
            page: (last.down - first.down, last.up - first.up),
            page_capture: captured(&packets, port, (first.at, last.at), &scrapes),
            metrics: (down1 - down0, up1 - up0),
            metrics_capture: captured(&packets, port, metrics_window, &scrapes),
            metrics_bounds: (
                captured(&packets, port, surely, &scrapes),
                captured(&packets, port, maybe, &scrapes),
            ),
            requests: last.requests - first.requests,
            ticks: last.ticks - first.ticks,
            seconds: (last.at - first.at) as f64 / 1e6,
        });
    }
    println!(
        "| transport | seconds | ticks | requests | page down | capture down | page up | capture up \
         | /metrics down | capture down | /metrics up | capture up |"
    );
    println!("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for m in &measured {
        println!(
            "| {} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            m.label,
            m.seconds,
            m.ticks,
            m.requests,
            m.page.0,
            m.page_capture.0,
            m.page.1,
            m.page_capture.1,
            m.metrics.0,
            m.metrics_capture.0,
            m.metrics.1,
            m.metrics_capture.1,
        );
    }
    println!("\n| transport | down KiB/s | up KiB/s | down B/tick | up B/tick | requests/tick |");
    println!("|---|--:|--:|--:|--:|--:|");
    for m in &measured {
        let ticks = m.ticks.max(1) as f64;
        println!(
            "| {} | {:.1} | {:.1} | {:.0} | {:.0} | {:.2} |",
            m.label,
            m.page_capture.0 as f64 / 1024.0 / m.seconds,
            m.page_capture.1 as f64 / 1024.0 / m.seconds,
            m.page_capture.0 as f64 / ticks,
            m.page_capture.1 as f64 / ticks,
            m.requests as f64 / ticks,
        );
    }
    for m in &measured {
        assert!(m.page_capture.0 > 0, "{}: the capture saw traffic", m.label);
        for (what, counted, captured) in [
            ("page, down", m.page.0, m.page_capture.0),
            ("page, up", m.page.1, m.page_capture.1),
        ] {
            assert!(
                within(counted, captured),
                "{} ({what}): counted {counted} bytes, the capture has {captured}",
                m.label
            );
        }
        let ((surely_down, surely_up), (maybe_down, maybe_up)) = m.metrics_bounds;
        for (what, counted, surely, maybe) in [
            ("/metrics, down", m.metrics.0, surely_down, maybe_down),
            ("/metrics, up", m.metrics.1, surely_up, maybe_up),
        ] {
            assert!(
                between(counted, surely, maybe),
                "{} ({what}): counted {counted} bytes, the capture has {surely} between the \
                 two renderings and {maybe} with what crossed while a scrape was on its way",
                m.label
            );
        }
    }
    server.shut_down().await.expect("clean shutdown");
}
