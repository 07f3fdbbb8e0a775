//! The browser app end to end: the real server serving the built app (dist/, made by
//! `just build-app`) to a real headless Chromium driven over WebDriver.

use std::path::PathBuf;
use std::time::Duration;

use fantoccini::{Client, Locator};

use crate::chromedriver::{ChromeDriver, console_errors};
use crate::helpers::{PATIENCE, TestServer};

pub(crate) fn dist_dir() -> PathBuf {
    let dist = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../dist");
    assert!(
        dist.join("index.html").is_file(),
        "the app is not built: run `just build-app` (just test does) before this test"
    );
    dist
}

/// The text of the first element matching `css`, or "" when there is none yet.
pub(crate) async fn text(browser: &Client, css: &str) -> String {
    match browser.find(Locator::Css(css)).await {
        Ok(element) => element.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Waits until the text at `css` satisfies `ok`, returning it; fails the test after a while
/// with what it saw last.
pub(crate) async fn wait_text(
    browser: &Client,
    css: &str,
    what: &str,
    ok: impl Fn(&str) -> bool,
) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        let seen = text(browser, css).await;
        if ok(&seen) {
            return seen;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waiting for {what} at {css}; last saw {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Clicks `css` once the app has rendered it (the app mounts after its WASM loads, which can
/// be after the page's load event).
pub(crate) async fn click(browser: &Client, css: &str) {
    browser
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|err| panic!("finding {css}: {err}"))
        .click()
        .await
        .unwrap_or_else(|err| panic!("clicking {css}: {err}"));
}

/// The tick count in a chain line such as "cursor 812 · 655 ticks · 0 gaps · 0 breaks".
pub(crate) fn chain_ticks(chain: &str) -> u64 {
    chain
        .split(" · ")
        .find_map(|part| part.strip_suffix(" ticks"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn the_app_streams_switches_transports_without_loss_and_compares() {
    let server = TestServer::start(|config| {
        config.static_dir = dist_dir();
        config.rate = 50.0;
    });
    let driver = ChromeDriver::start().await;
    let browser = driver.browser().await;
    browser
        .goto(&server.url("/"))
        .await
        .expect("loading the app");

    // Prices are painted and then move.
    let first = wait_text(
        &browser,
        "[data-testid=chain]",
        "ticks on the default transport",
        |t| chain_ticks(t) > 0,
    )
    .await;
    wait_text(&browser, "[data-testid=chain]", "more ticks", |t| {
        chain_ticks(t) > chain_ticks(&first) + 20
    })
    .await;
    let price = text(&browser, "[data-testid=quote-ACME] [data-testid=price]").await;
    assert!(
        price.parse::<f64>().is_ok_and(|p| p > 0.0),
        "ACME price {price:?}"
    );

    // Every transport: the switch says nothing was missed, lag figures appear, the chain holds.
    let switches = [
        ("polling-250", "Polling 250 ms"),
        ("long-polling", "Long polling"),
        ("sse", "SSE"),
        ("stream", "HTTP streaming"),
        ("polling-1000", "Polling 1 s"),
        ("polling-5000", "Polling 5 s"),
        ("websocket", "WebSocket"),
    ];
    for (id, label) in switches {
        click(&browser, &format!("[data-testid=transport-{id}]")).await;
        let notice = wait_text(
            &browser,
            "[data-testid=notice]",
            &format!("the switch to {label}"),
            |t| t.contains(&format!(" to {label} at cursor")),
        )
        .await;
        assert!(notice.contains("0 ticks missed, 0 repeated"), "{notice}");
        let before = chain_ticks(&text(&browser, "[data-testid=chain]").await);
        wait_text(
            &browser,
            "[data-testid=lag-p50]",
            &format!("{label} lag"),
            |t| t.ends_with(" ms") || t.ends_with(" s"),
        )
        .await;
        let chain = wait_text(
            &browser,
            "[data-testid=chain]",
            &format!("{label} ticks"),
            |t| chain_ticks(t) > before,
        )
        .await;
        assert!(chain.contains("0 gaps · 0 breaks"), "{label}: {chain}");
        assert!(
            text(&browser, "[data-testid=state]")
                .await
                .starts_with("live"),
            "{label} is live"
        );
    }

    // Compare mode: five transports, each with lag figures and an unbroken chain.
    click(&browser, "[data-testid=mode-compare]").await;
    for id in ["polling-1000", "long-polling", "websocket", "sse", "stream"] {
        let row = format!("[data-testid=compare-row-{id}]");
        wait_text(
            &browser,
            &format!("{row} [data-testid=p50]"),
            &format!("{id} p50 in compare"),
            |t| t.ends_with(" ms") || t.ends_with(" s"),
        )
        .await;
        let chain = text(&browser, &format!("{row} [data-testid=breaks]")).await;
        assert!(chain.ends_with("0 gaps · 0 breaks"), "{id}: {chain}");
    }
    // Let the lag plot fill a while before the picture the README shows.
    wait_text(
        &browser,
        "[data-testid=compare-row-websocket] [data-testid=breaks]",
        "600 ticks in compare mode",
        |t| chain_ticks(t) >= 600,
    )
    .await;
    let png = browser.screenshot().await.expect("a screenshot");
    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/e2e");
    std::fs::create_dir_all(&shots).unwrap();
    std::fs::write(shots.join("compare.png"), &png).unwrap();
    if std::env::var_os("TICKSCOPE_UPDATE_SCREENSHOT").is_some() {
        std::fs::write(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshot.png"),
            &png,
        )
        .unwrap();
    }

    // From the first byte of the page on: no console error (a panic in the app logs one),
    // no resource that failed to load (such as a missing favicon).
    let errors = console_errors(&browser).await;
    assert!(errors.is_empty(), "the browser logged errors: {errors:#?}");
    browser.close().await.unwrap();
}

/// The server process frozen (SIGSTOP) keeps its sockets open and sends nothing: a dead feed
/// behind a live connection. The page notices the silence, reconnects saying why, and goes on
/// from its cursor once the server runs again (SIGCONT); the server counts the reconnect.
#[tokio::test]
async fn the_app_reconnects_from_a_silent_feed_and_says_so() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .unwrap()
        .port();
    let dist = dist_dir();
    let server = Server::spawn(&[
        "--addr",
        &format!("127.0.0.1:{port}"),
        "--static-dir",
        dist.to_str().unwrap(),
        "--seed",
        "7",
    ]);
    let base = format!("http://127.0.0.1:{port}");
    server.wait_healthy(&base).await;
    let driver = ChromeDriver::start().await;
    let browser = driver.browser().await;
    browser
        .goto(&format!("{base}/"))
        .await
        .expect("loading the app");
    click(&browser, "[data-testid=transport-websocket]").await;
    let live = wait_text(&browser, "[data-testid=chain]", "WebSocket ticks", |t| {
        chain_ticks(t) > 20
    })
    .await;

    server.signal(libc::SIGSTOP);
    wait_text(
        &browser,
        "[data-testid=state]",
        "the silence noticed",
        |t| t.starts_with("reconnecting"),
    )
    .await;
    server.signal(libc::SIGCONT);
    let chain = wait_text(
        &browser,
        "[data-testid=chain]",
        "ticks after the reconnect",
        |t| chain_ticks(t) > chain_ticks(&live) + 50,
    )
    .await;
    assert!(
        chain.contains("0 gaps · 0 breaks"),
        "resumed from its cursor: {chain}"
    );
    assert_ne!(text(&browser, "[data-testid=reconnects]").await, "0");
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            r#"tickscope_client_reconnects_total{transport="websocket",reason="silent"} 1"#
        ),
        "the server counted the silent-feed reconnect:\n{metrics}"
    );
    browser.close().await.unwrap();
}

/// The `tickscope` binary as its own process, so the test can freeze it.
struct Server(std::process::Child);

impl Server {
    fn spawn(args: &[&str]) -> Self {
        Self(
            std::process::Command::new(env!("CARGO_BIN_EXE_tickscope"))
                .args(args)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("starting tickscope"),
        )
    }

    /// Waits for `/healthz`: the process binds before it serves.
    async fn wait_healthy(&self, base: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while reqwest::get(format!("{base}/healthz")).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "tickscope did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.0.id()).expect("a pid fits pid_t");
        // SAFETY: kill takes plain integers; the pid is our own child, not yet reaped.
        let sent = unsafe { libc::kill(pid, signal) };
        assert_eq!(sent, 0, "kill({pid}, {signal})");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.signal(libc::SIGCONT);
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
