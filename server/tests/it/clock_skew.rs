//! Lag stays true when the server's clock is off: the server runs with its wall
//! clock 50 ms ahead (libfaketime; tokio's monotonic timers untouched) beside one with the
//! true clock. The page must read the offset as 50 ± 1 ms, and each push transport's p50 lag
//! must be within 1 ms of the unskewed server's. Needs the built app and Debian's `faketime`.

use std::path::Path;

use fantoccini::Client;

use crate::browser::{chain_ticks, click, dist_dir, text, wait_text};
use crate::chromedriver::ChromeDriver;
use crate::helpers::ServerProcess;

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";
/// Ticks each transport delivers before its figures are read: 15 s at 50 ticks/s, so each
/// has had several clock exchanges to find a quiet round trip in.
const TICKS: u64 = 750;

/// The push transports, as the switch names them.
const PUSH: [(&str, &str); 2] = [("sse", "SSE"), ("websocket", "WebSocket")];

/// The page's clock offset and p50 lag, in µs, for the transport it shows.
async fn offset_and_p50(browser: &Client) -> (i64, i64) {
    let read = browser
        .execute(
            "const p = document.querySelector('[data-testid=lag-panel]'); \
             return p && [p.dataset.offsetUs, p.dataset.lagP50Us];",
            vec![],
        )
        .await
        .expect("reading the panel");
    let field = |i: usize| -> i64 {
        read.get(i)
            .and_then(|value| value.as_str())
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("the panel shows its offset and p50: {read}"))
    };
    (field(0), field(1))
}

/// Runs each push transport on `server`'s page for [`TICKS`] ticks: (offset, p50) of each.
async fn measure(browser: &Client, server: &ServerProcess) -> Vec<(i64, i64)> {
    browser
        .goto(&server.url("/"))
        .await
        .expect("loading the app");
    let mut figures = Vec::new();
    // The page opens on WebSocket: SSE first, so each choice is a switch the page reports.
    for (id, label) in PUSH {
        click(browser, &format!("[data-testid=transport-{id}]")).await;
        wait_text(
            browser,
            "[data-testid=notice]",
            &format!("the switch to {label}"),
            |t| t.contains(&format!(" to {label} at cursor")),
        )
        .await;
        let start = chain_ticks(&text(browser, "[data-testid=chain]").await);
        wait_text(
            browser,
            "[data-testid=chain]",
            &format!("{TICKS} {label} ticks"),
            |t| chain_ticks(t) >= start + TICKS,
        )
        .await;
        figures.push(offset_and_p50(browser).await);
    }
    figures
}

#[tokio::test]
async fn lag_stays_true_when_the_servers_clock_is_50_ms_ahead() {
    assert!(
        Path::new(LIBFAKETIME).exists(),
        "{LIBFAKETIME} is missing: install Debian's faketime (just test does)"
    );
    let dist = dist_dir();
    let args = [
        "--static-dir",
        dist.to_str().expect("a UTF-8 path"),
        "--seed",
        "7",
        "--rate",
        "50",
    ];
    let skew = [
        ("LD_PRELOAD", LIBFAKETIME),
        ("FAKETIME", "+0.05"),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
    ];
    // One after the other, each server and browser gone before the next start.
    let mut runs = Vec::new();
    for envs in [&skew[..0], &skew[..]] {
        let server = ServerProcess::start_with(&args, envs);
        let driver = ChromeDriver::start().await;
        let browser = driver.browser().await;
        runs.push(measure(&browser, &server).await);
        browser.close().await.expect("closing the browser");
    }
    let (true_clock, ahead) = (runs.remove(0), runs.remove(0));

    for (((_, label), (offset, p50)), (true_offset, true_p50)) in
        PUSH.into_iter().zip(ahead).zip(true_clock)
    {
        println!(
            "{label}: offset {true_offset} µs, p50 {true_p50} µs on the true clock; \
             offset {offset} µs, p50 {p50} µs 50 ms ahead"
        );
        assert!(
            (offset - 50_000).abs() <= 1_000,
            "{label}: the page read the offset of a clock 50 ms ahead as {offset} µs"
        );
        assert!(
            true_offset.abs() <= 1_000,
            "{label}: the page read the true clock's offset as {true_offset} µs"
        );
        assert!(
            (p50 - true_p50).abs() <= 1_000,
            "{label}: p50 {p50} µs with the clock ahead, {true_p50} µs without"
        );
    }
}
