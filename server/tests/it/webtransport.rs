//! WebTransport over HTTP/3, through a real WebTransport client (wtransport over
//! quinn, the kernel's UDP on loopback): the page's pinning information, the chain across
//! streams that may arrive out of order, resume, gap, pongs, heartbeats and wire reports on
//! the control stream, refusals and bad input, certificate rotation, and shutdown.

use std::time::Duration;

use tickscope_shared::cursor::{CursorChain, Reorder};
use tickscope_shared::wire::{
    Batch, ClientMessage, Origins, ServerMessage, WebTransportInfo, WireReport, batch_after,
};
use tokio::sync::mpsc;
use wtransport::error::{ConnectingError, ConnectionError};
use wtransport::tls::Sha256Digest;
use wtransport::{ClientConfig, Connection, Endpoint, RecvStream, SendStream};

use crate::helpers::{PATIENCE, ServerProcess, TestServer, accept, metric};

/// A server with a WebTransport endpoint on a free UDP port.
fn server(adjust: impl FnOnce(&mut tickscope::Config)) -> TestServer {
    TestServer::start(|config| {
        config.webtransport_addr = Some("127.0.0.1:0".parse().unwrap());
        adjust(config);
    })
}

async fn info(server: &TestServer) -> WebTransportInfo {
    server.get_json("/api/webtransport").await
}

fn digest(hex: &str) -> Sha256Digest {
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&hex[at..at + 2], 16).expect("hex"))
        .collect();
    Sha256Digest::new(bytes.try_into().expect("32 bytes"))
}

/// Opens a session to `url` (with its query) pinning `hashes`, as a page at `origin` would.
pub(crate) async fn open(
    url: &str,
    hashes: &[String],
    origin: Option<&str>,
) -> Result<Connection, ConnectingError> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").expect("a UDP socket");
    open_on(socket, url, hashes, origin).await
}

/// `open` from a socket of the caller's (one made in another network namespace).
pub(crate) async fn open_on(
    socket: std::net::UdpSocket,
    url: &str,
    hashes: &[String],
    origin: Option<&str>,
) -> Result<Connection, ConnectingError> {
    socket
        .set_nonblocking(true)
        .expect("a non-blocking socket for the runtime");
    let config = ClientConfig::builder()
        .with_bind_socket(socket)
        .with_server_certificate_hashes(hashes.iter().map(|hash| digest(hash)))
        .max_idle_timeout(Some(Duration::from_secs(10)))
        .expect("an idle timeout")
        .build();
    let endpoint = Endpoint::client(config).expect("a client endpoint");
    let mut request = wtransport::endpoint::ConnectOptions::builder(url);
    if let Some(origin) = origin {
        request = request.add_header("origin", origin);
    }
    tokio::time::timeout(PATIENCE, endpoint.connect(request.build()))
        .await
        .expect("connecting in time")
}

/// A session as a page runs it: the control stream's lines, and the batches of the
/// unidirectional streams put back in order.
pub(crate) struct Session {
    connection: Connection,
    send: SendStream,
    control: mpsc::UnboundedReceiver<ServerMessage>,
    batches: mpsc::UnboundedReceiver<(u64, Batch)>,
    reorder: Reorder<Batch>,
    ready: std::collections::VecDeque<Batch>,
    /// Batches that arrived before one sent earlier.
    pub(crate) overtaken: usize,
}

impl Session {
    pub(crate) async fn start(connection: Connection) -> Self {
        let (send, recv) = connection
            .open_bi()
            .await
            .expect("opening the control stream")
            .await
            .expect("the control stream opens");
        let (lines, control) = mpsc::unbounded_channel();
        tokio::spawn(read_lines(recv, lines));
        let (found, batches) = mpsc::unbounded_channel();
        tokio::spawn(accept_batches(connection.clone(), found));
        Self {
            connection,
            send,
            control,
            batches,
            reorder: Reorder::new(None, 4096),
            ready: Default::default(),
            overtaken: 0,
        }
    }

    /// The next message on the control stream; the first is `subscribed`, which starts the
    /// reorder.
    async fn control(&mut self) -> Option<ServerMessage> {
        let message = tokio::time::timeout(PATIENCE, self.control.recv())
            .await
            .expect("a control line in time")?;
        if let ServerMessage::Subscribed { cursor } = message {
            self.ready.extend(self.reorder.start(cursor));
        }
        Some(message)
    }

    /// Waits for `subscribed` and returns its cursor.
    pub(crate) async fn subscribed(&mut self) -> u64 {
        match self.control().await {
            Some(ServerMessage::Subscribed { cursor }) => cursor,
            other => panic!("the first control line is subscribed, not {other:?}"),
        }
    }

    /// The next batch in the order the server sent them.
    pub(crate) async fn next_batch(&mut self) -> Batch {
        loop {
            if let Some(batch) = self.ready.pop_front() {
                return batch;
            }
            let (after, batch) = tokio::time::timeout(PATIENCE, self.batches.recv())
                .await
                .expect("a batch in time")
                .expect("the session is open");
            let released = self
                .reorder
                .push(after, batch.cursor, batch)
                .expect("few batches ahead");
            if released.is_empty() {
                self.overtaken += 1;
            }
            self.ready.extend(released);
        }
    }

    async fn send(&mut self, message: &ClientMessage) {
        let mut line = serde_json::to_vec(message).unwrap();
        line.push(b'\n');
        self.send.write_all(&line).await.expect("writing a line");
    }

    /// Waits for the server to close the session; its code and reason.
    async fn closed(&self) -> (u32, String) {
        let error = tokio::time::timeout(PATIENCE, self.connection.closed())
            .await
            .expect("closed in time");
        closed_with(error)
    }
}

fn closed_with(error: ConnectionError) -> (u32, String) {
    match error {
        ConnectionError::ApplicationClosed(close) => (
            close.code().into_inner() as u32,
            String::from_utf8_lossy(close.reason()).into_owned(),
        ),
        other => panic!("closed by the server's application, not {other:?}"),
    }
}

async fn read_lines(mut recv: RecvStream, lines: mpsc::UnboundedSender<ServerMessage>) {
    let mut pending = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(Some(read)) = recv.read(&mut chunk).await {
        pending.extend_from_slice(&chunk[..read]);
        while let Some(end) = pending.iter().position(|&byte| byte == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let message = serde_json::from_slice(&line[..end]).expect("a message per line");
            if lines.send(message).is_err() {
                return;
            }
        }
    }
}

/// Reads every unidirectional stream the server opens: one batch line each.
async fn accept_batches(connection: Connection, found: mpsc::UnboundedSender<(u64, Batch)>) {
    while let Ok(mut stream) = connection.accept_uni().await {
        let found = found.clone();
        tokio::spawn(async move {
            let Ok(bytes) = stream.quic_stream_mut().read_to_end(1 << 20).await else {
                return;
            };
            let line = std::str::from_utf8(&bytes).expect("UTF-8");
            let line = line.strip_suffix('\n').expect("one line");
            let after = batch_after(line).expect("a batch names what it continues from");
            let Ok(ServerMessage::Batch(batch)) = serde_json::from_str(line) else {
                panic!("a batch line: {line}");
            };
            let _ = found.send((after, batch));
        });
    }
}

async fn session(server: &TestServer, query: &str) -> Session {
    let info = info(server).await;
    let connection = open(
        &format!("{}?{query}", info.url),
        &info.certificate_hashes,
        None,
    )
    .await
    .expect("a session");
    Session::start(connection).await
}

#[tokio::test]
async fn the_page_learns_where_to_connect_and_what_to_pin() {
    let server = server(|_| {});
    let info = info(&server).await;
    let port = info
        .url
        .strip_prefix("https://127.0.0.1:")
        .and_then(|rest| rest.strip_suffix("/api/webtransport"))
        .and_then(|port| port.parse::<u16>().ok())
        .unwrap_or_else(|| {
            panic!(
                "the URL names the page's host and the UDP port: {}",
                info.url
            )
        });
    assert_ne!(port, 0);
    assert_eq!(info.certificate_hashes.len(), 1);
    assert_eq!(info.certificate_hashes[0].len(), 64);
    // The page learns that there is an endpoint from /api/origins, which it reads anyway.
    let origins: Origins = server.get_json("/api/origins").await;
    assert_eq!(
        origins.webtransport.as_deref(),
        Some(format!("https://127.0.0.1:{port}").as_str())
    );
    // A server without the endpoint says so.
    let without = TestServer::start(|_| {});
    let origins: Origins = without.get_json("/api/origins").await;
    assert_eq!(origins.webtransport, None);
    let response = reqwest::get(without.url("/api/webtransport"))
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("--webtransport-addr")
    );
    // A wrong hash is refused by the client: the server presents only the pinned certificate.
    let wrong = "00".repeat(32);
    assert!(open(&info.url, &[wrong], None).await.is_err());
    server.shut_down().await.unwrap();
}

/// QUIC runs in user space, at several times a WebSocket's CPU per batch: the binary gives
/// it threads of its own, as many as `--workers`, so that WebTransport uses every core the
/// HTTP server does and never shares the feed's thread. A session streams from there.
#[tokio::test]
async fn sessions_run_on_as_many_threads_of_their_own_as_the_server_has_workers() {
    let server = ServerProcess::start(&["--workers", "3", "--webtransport-addr", "127.0.0.1:0"]);
    let info: WebTransportInfo = reqwest::get(server.url("/api/webtransport"))
        .await
        .expect("GET /api/webtransport")
        .json()
        .await
        .expect("its JSON");
    let connection = open(&info.url, &info.certificate_hashes, None)
        .await
        .expect("a session");
    let mut session = Session::start(connection).await;
    let cursor = session.subscribed().await;
    let batch = session.next_batch().await;
    assert!(batch.cursor > cursor, "a batch past {cursor}: {batch:?}");

    let threads: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", server.child.id()))
        .expect("the server's threads")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .collect();
    let quic = threads
        .iter()
        .filter(|name| *name == "webtransport")
        .count();
    assert_eq!(quic, 3, "three WebTransport threads among {threads:?}");
}

#[tokio::test]
async fn batches_chain_across_streams_and_a_new_session_resumes() {
    let server = server(|config| config.rate = 400.0);
    let mut first = session(&server, "meter=a1").await;
    let start = first.subscribed().await;
    let mut chain = CursorChain::new(Some(start), true);
    while chain.ticks() < 300 {
        accept(&mut chain, &first.next_batch().await);
    }
    // Clock and liveness on the control stream.
    first.send(&ClientMessage::Ping { t: 12.5 }).await;
    let (mut pong, mut heartbeat, mut report) = (false, false, None::<WireReport>);
    while !(pong && heartbeat && report.is_some()) {
        match first.control().await.expect("the control stream is open") {
            ServerMessage::Pong { t, server_time } => {
                assert_eq!(t, 12.5);
                assert!(server_time > 0);
                pong = true;
            }
            ServerMessage::Heartbeat { .. } => heartbeat = true,
            ServerMessage::Wire(wire) => report = Some(wire),
            other => panic!("unexpected control line {other:?}"),
        }
    }
    let report = report.unwrap();
    assert_eq!(report.requests, 1);
    assert!(report.down > 10_000, "{report:?}");
    assert!(report.up > 500, "{report:?}");
    first.connection.close(0u32.into(), b"switching");
    // A new session from the cursor loses and repeats nothing.
    let held = chain.cursor().unwrap();
    let mut second = session(&server, &format!("since={held}&reconnect=error")).await;
    assert_eq!(second.subscribed().await, held);
    let goal = chain.ticks() + 300;
    while chain.ticks() < goal {
        accept(&mut chain, &second.next_batch().await);
    }
    assert_eq!(chain.gaps(), 0);
    let metrics = server.metrics().await;
    assert!(
        metric(
            &metrics,
            r#"tickscope_requests_total{transport="webtransport"}"#
        ) >= 2
    );
    assert!(
        metric(
            &metrics,
            r#"tickscope_wire_bytes_total{transport="webtransport",direction="down"}"#
        ) > report.down
    );
    server.shut_down().await.unwrap();
}

#[tokio::test]
async fn an_old_cursor_gets_a_gap_and_a_filter_gets_its_symbols() {
    let server = server(|config| {
        config.rate = 400.0;
        config.retention = 100;
    });
    let head = server.wait_for_head(300).await;
    let mut old = session(&server, "since=1").await;
    old.subscribed().await;
    let gap = old.next_batch().await;
    assert!(gap.gap);
    assert!(gap.cursor >= head);
    let symbols = server.snapshot().await.quotes;
    let wanted = symbols[0].symbol.clone();
    let mut filtered = session(&server, &format!("symbols={wanted}")).await;
    let start = filtered.subscribed().await;
    let mut chain = CursorChain::new(Some(start), false);
    while chain.ticks() < 20 {
        let batch = filtered.next_batch().await;
        assert!(batch.ticks.iter().all(|tick| tick.symbol == wanted));
        accept(&mut chain, &batch);
    }
    server.shut_down().await.unwrap();
}

#[tokio::test]
async fn bad_input_closes_only_that_session_with_a_reason() {
    let server = server(|config| config.rate = 200.0);
    let info = info(&server).await;
    let mut bystander = session(&server, "").await;
    let start = bystander.subscribed().await;
    let mut chain = CursorChain::new(Some(start), true);

    for (query, says) in [
        ("since=abc", "since"),
        ("symbols=NOPE", "NOPE"),
        ("meter=xyz", "meter"),
    ] {
        // The session opens and is closed at once, maybe before the client has seen it open.
        let closed = match open(
            &format!("{}?{query}", info.url),
            &info.certificate_hashes,
            None,
        )
        .await
        {
            Ok(connection) => connection.closed().await,
            Err(ConnectingError::ConnectionError(closed)) => closed,
            Err(other) => panic!("{query}: {other:?}"),
        };
        let (code, reason) = closed_with(closed);
        assert_eq!(code, 1008, "{query}: {reason}");
        assert!(reason.contains(says), "{query}: {reason}");
    }
    // A control line that is not a message, and one that asks to resubscribe.
    for (line, says) in [
        (&b"{\"type\":\"nonsense\"}\n"[..], "invalid message"),
        (b"{\"type\":\"subscribe\"}\n", "URL"),
        (b"\xff\xfe\n", "UTF-8"),
    ] {
        let mut hostile = session(&server, "").await;
        hostile.subscribed().await;
        hostile.send.write_all(line).await.unwrap();
        let (code, reason) = hostile.closed().await;
        assert_eq!(code, 1008);
        assert!(reason.contains(says), "{reason}");
    }
    // A line with no end, longer than a message may be.
    let mut flooding = session(&server, "").await;
    flooding.subscribed().await;
    let _ = flooding.send.write_all(&vec![b'x'; 70 * 1024]).await;
    let (code, reason) = flooding.closed().await;
    assert_eq!(code, 1009, "{reason}");
    // A stream of the client's own.
    let mut opener = session(&server, "").await;
    opener.subscribed().await;
    let mut own = opener.connection.open_uni().await.unwrap().await.unwrap();
    own.write_all(b"hello").await.unwrap();
    let (code, reason) = opener.closed().await;
    assert_eq!(code, 1008);
    assert!(reason.contains("control stream"), "{reason}");
    // Streams the server never takes hold only their flow-control window: a megabyte on a
    // second bidirectional stream does not go through, and the session still gets its batches.
    let mut hoarder = session(&server, "").await;
    let start = hoarder.subscribed().await;
    let (mut extra, _) = hoarder.connection.open_bi().await.unwrap().await.unwrap();
    let flood = vec![b'x'; 1 << 20];
    assert!(
        tokio::time::timeout(Duration::from_secs(2), extra.write_all(&flood))
            .await
            .is_err(),
        "the server took a megabyte it never reads"
    );
    let mut hoarded = CursorChain::new(Some(start), true);
    while hoarded.ticks() < 50 {
        accept(&mut hoarded, &hoarder.next_batch().await);
    }
    // Another path, and a page of another site, are refused before a session.
    let elsewhere = info.url.replace("/api/webtransport", "/nope");
    assert!(matches!(
        open(&elsewhere, &info.certificate_hashes, None).await,
        Err(ConnectingError::SessionRejected)
    ));
    assert!(matches!(
        open(
            &info.url,
            &info.certificate_hashes,
            Some("https://evil.example")
        )
        .await,
        Err(ConnectingError::SessionRejected)
    ));
    // The server's own page may.
    let own_page = format!("http://{}", server.addr);
    open(&info.url, &info.certificate_hashes, Some(&own_page))
        .await
        .expect("the server's own page opens a session");
    // Through all of it the bystander's chain held.
    while chain.ticks() < 200 {
        accept(&mut chain, &bystander.next_batch().await);
    }
    server.shut_down().await.unwrap();
}

#[tokio::test]
async fn shutdown_closes_sessions_with_going_away() {
    let server = server(|_| {});
    let mut live = session(&server, "").await;
    live.subscribed().await;
    let connection = live.connection.clone();
    let closed = tokio::spawn(async move { closed_with(connection.closed().await) });
    server.shut_down().await.unwrap();
    let (code, reason) = closed.await.unwrap();
    assert_eq!(code, 1001);
    assert!(reason.contains("shutting down"), "{reason}");
}

#[tokio::test]
async fn the_certificate_rotates_with_both_hashes_named_in_between() {
    // Lifetime 8 s: the successor is made at 4 s and presented from 6 s.
    let server = server(|config| config.webtransport_cert_lifetime_s = 8);
    let first = info(&server).await;
    assert_eq!(first.certificate_hashes.len(), 1);
    let old = first.certificate_hashes[0].clone();
    let both = wait_for_hashes(&server, |hashes| hashes.len() == 2).await;
    assert_eq!(both[0], old);
    let new = both[1].clone();
    // Between the two, the old certificate is still presented: a page pinning both connects.
    open(&first.url, &both, None).await.expect("pinning both");
    let after = wait_for_hashes(&server, |hashes| hashes.len() == 1 && hashes[0] != old).await;
    assert_eq!(after, vec![new.clone()]);
    open(&first.url, &[new], None)
        .await
        .expect("the successor is presented");
    assert!(open(&first.url, &[old], None).await.is_err());
    server.shut_down().await.unwrap();
}

/// Asks for the hashes until `done` says they are as awaited (the rotation runs on the clock).
async fn wait_for_hashes(server: &TestServer, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let hashes = info(server).await.certificate_hashes;
        if done(&hashes) {
            return hashes;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "hashes stayed {hashes:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// In headless Chromium with QUIC on: the page switches to WebTransport with nothing missed,
/// shows its lag, HTTP/3 and wire bytes, and compare mode runs it beside the others, every
/// chain whole, with a clean browser log.
#[tokio::test]
async fn the_page_streams_over_webtransport_in_chromium() {
    use crate::browser::{chain_ticks, click, dist_dir, text, wait_text};
    use crate::chromedriver::{ChromeDriver, console_errors};

    let server = server(|config| {
        config.static_dir = dist_dir();
        config.rate = 50.0;
    });
    let driver = ChromeDriver::start().await;
    let browser = driver.browser_with_quic().await;
    browser
        .goto(&server.url("/"))
        .await
        .expect("loading the app");
    wait_text(&browser, "[data-testid=chain]", "ticks", |t| {
        chain_ticks(t) > 0
    })
    .await;

    click(&browser, "[data-testid=transport-webtransport]").await;
    let notice = wait_text(
        &browser,
        "[data-testid=notice]",
        "the switch to WebTransport",
        |t| t.contains(" to WebTransport at cursor"),
    )
    .await;
    assert!(notice.contains("0 ticks missed, 0 repeated"), "{notice}");
    wait_text(&browser, "[data-testid=lag-p50]", "WebTransport lag", |t| {
        t.ends_with(" ms") || t.ends_with(" s")
    })
    .await;
    let before = chain_ticks(&text(&browser, "[data-testid=chain]").await);
    let chain = wait_text(&browser, "[data-testid=chain]", "200 more ticks", |t| {
        chain_ticks(t) > before + 200
    })
    .await;
    assert!(chain.contains("0 gaps · 0 breaks"), "{chain}");
    assert_eq!(
        text(&browser, "[data-testid=protocol]").await,
        "HTTP/3 over QUIC"
    );
    // The offset comes from pongs on the control stream; the wire figures from QUIC's counts.
    wait_text(&browser, "[data-testid=offset]", "a clock offset", |t| {
        t.contains("ms")
    })
    .await;
    wait_text(&browser, "[data-testid=wire-down]", "bytes down", |t| {
        t.ends_with("/s") && !t.starts_with("0 ")
    })
    .await;

    // Compare mode runs it beside the five others.
    click(&browser, "[data-testid=mode-compare]").await;
    for id in [
        "polling-1000",
        "long-polling",
        "websocket",
        "sse",
        "stream",
        "webtransport",
    ] {
        let row = format!("[data-testid=compare-row-{id}]");
        wait_text(
            &browser,
            &format!("{row} [data-testid=breaks]"),
            &format!("{id} ticks in compare"),
            |t| chain_ticks(t) > 100,
        )
        .await;
        let chain = text(&browser, &format!("{row} [data-testid=breaks]")).await;
        assert!(chain.ends_with("0 gaps · 0 breaks"), "{id}: {chain}");
    }
    let metrics = server.metrics().await;
    assert_eq!(
        metric(&metrics, r#"tickscope_clients{transport="webtransport"}"#),
        1
    );
    let errors = console_errors(&browser).await;
    assert!(errors.is_empty(), "the browser logged errors: {errors:#?}");
    browser.close().await.unwrap();
    server.shut_down().await.unwrap();
}

/// Chromium refuses a pinned certificate with no X.509 extensions even when its hash matches
/// (the certificate check runs before the hash is compared). The server's certificates carry
/// their names as an extension; the same browser connects to them, not to a bare one.
#[tokio::test]
async fn chromium_takes_the_servers_certificate_and_refuses_one_without_extensions() {
    use crate::chromedriver::ChromeDriver;
    use wtransport::tls::self_signed::time::{Duration as Span, OffsetDateTime};
    use wtransport::tls::{Certificate, CertificateChain, PrivateKey};
    use x509_parser::prelude::{FromDer, X509Certificate};

    // A certificate like the server's but bare: no extensions at all.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.not_before = OffsetDateTime::now_utc() - Span::hours(1);
    params.not_after = OffsetDateTime::now_utc() + Span::days(10);
    let bare = params.self_signed(&key).unwrap();
    let (_, parsed) = X509Certificate::from_der(bare.der()).unwrap();
    assert!(
        parsed.extensions().is_empty(),
        "the bare certificate has no extensions"
    );
    let identity = wtransport::Identity::new(
        CertificateChain::single(Certificate::from_der(bare.der().to_vec()).unwrap()),
        PrivateKey::from_der_pkcs8(key.serialize_der()),
    );
    let bare_hash: String = identity.certificate_chain().as_slice()[0]
        .hash()
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let config = wtransport::ServerConfig::builder()
        .with_bind_address("127.0.0.1:0".parse().unwrap())
        .with_identity(identity)
        .build();
    let bare_server = Endpoint::server(config).unwrap();
    let bare_url = format!(
        "https://127.0.0.1:{}/api/webtransport",
        bare_server.local_addr().unwrap().port()
    );
    let accepting = tokio::spawn(async move {
        loop {
            let incoming = bare_server.accept().await;
            if let Ok(request) = incoming.await {
                let _ = request.accept().await;
            }
        }
    });

    let server = server(|_| {});
    let info = info(&server).await;
    let driver = ChromeDriver::start().await;
    let browser = driver.browser_with_quic().await;
    // Any page of the server is a secure context (http://127.0.0.1).
    browser.goto(&server.url("/healthz")).await.unwrap();
    let script = r#"
        const [url, hash, done] = arguments;
        const bytes = new Uint8Array(hash.match(/../g).map((h) => parseInt(h, 16)));
        const session = new WebTransport(url, {
            serverCertificateHashes: [{ algorithm: "sha-256", value: bytes }],
        });
        session.closed.catch(() => {});
        session.ready.then(
            () => { session.close(); done("open"); },
            (err) => done("refused: " + err),
        );
    "#;
    let attempt = |url: String, hash: String| {
        let browser = browser.clone();
        async move {
            browser
                .execute_async(script, vec![url.into(), hash.into()])
                .await
                .expect("the script runs")
                .as_str()
                .unwrap_or_default()
                .to_owned()
        }
    };
    let own = attempt(info.url.clone(), info.certificate_hashes[0].clone()).await;
    assert_eq!(own, "open", "the server's own certificate");
    let refused = attempt(bare_url, bare_hash).await;
    assert!(
        refused.starts_with("refused"),
        "the bare certificate: {refused}"
    );
    browser.close().await.unwrap();
    accepting.abort();
    server.shut_down().await.unwrap();
}
