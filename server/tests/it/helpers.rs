//! Starting the server and speaking each transport to it.

use std::net::{SocketAddr, TcpListener};
use std::thread::JoinHandle;
use std::time::Duration;

use eventsource_stream::{Event, Eventsource};
use futures_util::{SinkExt, Stream, StreamExt};
use tickscope::Config;
use tickscope_shared::cursor::CursorChain;
use tickscope_shared::wire::{Batch, ClientMessage, ServerMessage, Snapshot};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

/// How long any single wait in a test may take before it counts as a hang.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub type WsClient = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A tickscope server on its own thread and actix system, on an ephemeral port.
pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    /// Starts a server with a fixed seed, one worker and no built app; `adjust` changes the
    /// rest.
    pub fn start(adjust: impl FnOnce(&mut Config)) -> Self {
        Self::start_on("127.0.0.1:0".parse().expect("a socket address"), adjust)
    }

    /// Starts a server on `addr`: a restart on the address of one that was shut down.
    pub fn start_on(addr: SocketAddr, adjust: impl FnOnce(&mut Config)) -> Self {
        let listener = TcpListener::bind(addr).expect("binding the test server's port");
        let addr = listener.local_addr().expect("reading the bound address");
        let mut config = Config::defaults();
        config.seed = Some(7);
        // Seqs from 1, so tests can name them; the default base is the start time.
        config.seq_base = Some(0);
        // Tests poll back to back to follow the feed; the limits tests set their own.
        config.min_poll_interval_ms = 0;
        config.workers = 1;
        config.static_dir = "/nonexistent/tickscope-dist".into();
        adjust(&mut config);
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(tickscope::run(listener, config, async {
                let _ = stopped.await;
            }))
        });
        Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/api/ws", self.addr)
    }

    /// Shuts the server down and waits for `run` to return.
    pub async fn shut_down(mut self) -> anyhow::Result<()> {
        let _ = self.stop.take().expect("not stopped yet").send(());
        let thread = self.thread.take().expect("not joined yet");
        tokio::task::spawn_blocking(move || thread.join().expect("the server thread panicked"))
            .await
            .expect("joining the server thread")
    }

    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        let response = reqwest::get(self.url(path)).await.expect("GET");
        assert!(
            response.status().is_success(),
            "GET {path}: {}",
            response.status()
        );
        response.json().await.expect("a JSON body")
    }

    pub async fn poll(&self, query: &str) -> Batch {
        self.get_json(&format!("/api/poll?{query}")).await
    }

    pub async fn long_poll(&self, query: &str) -> Batch {
        self.get_json(&format!("/api/long-poll?{query}")).await
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        let response = reqwest::get(self.url("/metrics"))
            .await
            .expect("GET /metrics");
        response.text().await.expect("a metrics body")
    }

    pub async fn snapshot(&self) -> Snapshot {
        self.get_json("/api/snapshot").await
    }

    /// Waits (on long polls, not timers) until the feed's head has passed `seq`.
    pub async fn wait_for_head(&self, seq: u64) -> u64 {
        let mut cursor = self.snapshot().await.cursor;
        while cursor <= seq {
            cursor = self
                .long_poll(&format!("since={cursor}&timeout_ms=10000"))
                .await
                .cursor;
        }
        cursor
    }

    /// Opens a WebSocket and sends `subscribe`.
    pub async fn ws_subscribe(&self, symbols: Option<&[&str]>, since: Option<u64>) -> WsClient {
        ws_subscribe_at(&self.ws_url(), symbols, since).await
    }

    /// Opens an SSE stream; `last_event_id` goes in the header as a reconnecting browser sends it.
    pub async fn sse(
        &self,
        query: &str,
        last_event_id: Option<u64>,
    ) -> impl Stream<Item = Event> + Unpin + use<> {
        let mut request = reqwest::Client::new().get(self.url(&format!("/api/sse?{query}")));
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = request.send().await.expect("opening the SSE stream");
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Box::pin(
            response
                .bytes_stream()
                .eventsource()
                .take_while(|event| std::future::ready(event.is_ok()))
                .map(|event| event.expect("only Ok events pass take_while")),
        )
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Opens a WebSocket at `url` and sends `subscribe`.
pub async fn ws_subscribe_at(url: &str, symbols: Option<&[&str]>, since: Option<u64>) -> WsClient {
    let (mut ws, _) = connect_async(url).await.expect("WebSocket handshake");
    let subscribe = ClientMessage::Subscribe {
        symbols: symbols.map(|list| list.iter().map(|s| s.to_string()).collect()),
        since,
    };
    ws.send(Message::text(serde_json::to_string(&subscribe).unwrap()))
        .await
        .expect("sending subscribe");
    ws
}

/// The next batch on a WebSocket, skipping pongs and control frames.
pub async fn next_ws_batch(ws: &mut WsClient) -> Batch {
    loop {
        let message = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("a WebSocket message in time")
            .expect("the WebSocket is open")
            .expect("a valid WebSocket message");
        if let Message::Text(text) = message {
            match serde_json::from_str::<ServerMessage>(&text).expect("a server message") {
                ServerMessage::Batch(batch) => return batch,
                ServerMessage::Pong { .. } | ServerMessage::Wire(_) => continue,
                ServerMessage::Heartbeat { .. } | ServerMessage::Subscribed { .. } => {
                    panic!("heartbeats and subscribed lines are the streamed transports'")
                }
            }
        }
    }
}

/// The next batch on an SSE stream, checking its event id is the batch cursor.
/// Heartbeat events are skipped.
pub async fn next_sse_batch(events: &mut (impl Stream<Item = Event> + Unpin)) -> Batch {
    let event = loop {
        let event = tokio::time::timeout(PATIENCE, events.next())
            .await
            .expect("an SSE event in time")
            .expect("the SSE stream is open");
        if event.event != "heartbeat" {
            break event;
        }
    };
    let batch: Batch = serde_json::from_str(&event.data).expect("a batch");
    assert_eq!(
        event.id,
        batch.cursor.to_string(),
        "the event id is the cursor"
    );
    batch
}

/// The value of one series in a `/metrics` text; fails the test when it is missing.
pub fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

/// Feeds `batch` to `chain`, failing the test with the batch when the chain breaks.
pub fn accept(chain: &mut CursorChain, batch: &Batch) {
    if let Err(err) = chain.accept(batch) {
        panic!(
            "cursor chain broken: {err}; batch cursor {} with seqs {:?}",
            batch.cursor,
            batch.ticks.iter().map(|t| t.seq).collect::<Vec<_>>()
        );
    }
}

/// The `tickscope` binary as a child process, for what an in-process server cannot show: its
/// own memory, its signals. Its log (stderr) is handed over a line at a time by a thread, so
/// no wait on it can hang. Killed when dropped.
pub struct ServerProcess {
    pub child: std::process::Child,
    /// Where it listens, as its log says.
    pub addr: SocketAddr,
    lines: std::sync::mpsc::Receiver<String>,
}

impl ServerProcess {
    /// Starts the binary on a free loopback port with `args` added, and waits for it to
    /// listen.
    pub fn start(args: &[&str]) -> Self {
        Self::start_with(args, &[])
    }

    /// [`ServerProcess::start`] with variables set in its environment; without
    /// `--static-dir` among `args` it serves no app.
    pub fn start_with(args: &[&str], envs: &[(&str, &str)]) -> Self {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tickscope"));
        command.args(["--addr", "127.0.0.1:0"]);
        Self::spawn(command, args, envs)
    }

    /// Starts the binary in the network namespace `namespace`, on a free port of `ip`.
    pub fn start_in(namespace: &str, ip: &str, args: &[&str]) -> Self {
        let mut command = std::process::Command::new("ip");
        // `ip netns exec` enters the namespace and then executes the binary: the child is it.
        command
            .args(["netns", "exec", namespace, env!("CARGO_BIN_EXE_tickscope")])
            .args(["--addr", &format!("{ip}:0")]);
        Self::spawn(command, args, &[])
    }

    fn spawn(mut command: std::process::Command, args: &[&str], envs: &[(&str, &str)]) -> Self {
        use std::io::{BufRead, BufReader};
        if !args.contains(&"--static-dir") {
            command.args(["--static-dir", "/nonexistent"]);
        }
        let mut child = command
            .args(args)
            .envs(envs.iter().copied())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("starting the tickscope binary");
        let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
        let stderr = child.stderr.take().expect("stderr is piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut process = Self {
            child,
            addr: "127.0.0.1:0".parse().expect("a socket address"),
            lines,
        };
        process.addr = std::iter::from_fn(|| process.next_line())
            .find_map(|line| {
                let rest = line.split("listening on http://").nth(1)?;
                rest.chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                    .collect::<String>()
                    .parse()
                    .ok()
            })
            .expect("a listening line in the log");
        process
    }

    /// The next line of its log, or `None` after [`PATIENCE`] without one.
    pub fn next_line(&self) -> Option<String> {
        self.lines.recv_timeout(PATIENCE).ok()
    }

    /// Its resident memory, in bytes (`VmRSS` in `/proc/<pid>/status`).
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("reading the server's /proc status");
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("a VmRSS line in kB");
        kib * 1024
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/api/ws", self.addr)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
