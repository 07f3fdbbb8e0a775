//! tickscope behind each proxy as its documentation's smallest configuration leaves it
//! (`deploy/untouched/`: nginx `proxy_pass` only, HAProxy with Debian's stock 50 s timeouts,
//! Caddy `reverse_proxy` only): what the server's defaults carry through with no proxy tuning
//! at all. Each test asserts cells of the untouched-defaults table in docs/DEPLOY.md.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tickscope::feed::clock::now_us;
use tickscope_shared::wire::{Batch, ClientMessage, ServerMessage};
use tokio::time::Instant;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::browser::{chain_ticks, click, dist_dir, text, wait_text};
use crate::chromedriver::{ChromeDriver, browser_log};
use crate::helpers::{PATIENCE, TestServer};
use crate::proxy::{Kind, Proxy, free_port};

/// The median of `now - tick.ts` over the ticks of `batches`, in ms: what a proxy that holds a
/// stream back adds shows here (at 50 ticks a second, a 4 KiB buffer fills in about 0.4 s).
fn lag_p50_ms(lags_us: &mut [i64]) -> f64 {
    lags_us.sort_unstable();
    lags_us[lags_us.len() / 2] as f64 / 1000.0
}

/// Reads a streamed answer (SSE or NDJSON) for `seconds`, returning the lag of every tick.
async fn stream_lags(response: reqwest::Response, sse: bool, seconds: u64) -> Vec<i64> {
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut body = response.bytes_stream();
    let mut pending = String::new();
    let mut lags = Vec::new();
    while let Ok(Some(chunk)) = tokio::time::timeout_at(until, body.next()).await {
        let at = now_us();
        pending.push_str(&String::from_utf8_lossy(&chunk.expect("a chunk")));
        while let Some(end) = pending.find('\n') {
            let line: String = pending.drain(..=end).collect();
            let json = if sse {
                line.strip_prefix("data: ").unwrap_or("")
            } else {
                line.as_str()
            };
            let ticks = match serde_json::from_str::<ServerMessage>(json) {
                Ok(ServerMessage::Batch(batch)) => batch.ticks,
                _ => match serde_json::from_str::<Batch>(json) {
                    Ok(batch) => batch.ticks,
                    Err(_) => continue,
                },
            };
            lags.extend(ticks.iter().map(|tick| at - tick.ts));
        }
    }
    lags
}

/// Every HTTP transport through each untouched proxy: answered, streams unbuffered, with
/// their no-cache, no-transform heads; the WebSocket upgrade refused by nginx alone.
#[tokio::test]
async fn untouched_proxies_carry_each_transport_as_the_deploy_table_says() {
    let server = TestServer::start(|config| config.rate = 50.0);
    for kind in Kind::ALL {
        let proxy = Proxy::start(kind, free_port(), &[server.addr], None).await;
        let origin = proxy.origin(false);
        let client = reqwest::Client::new();
        let name = kind.name();

        for (path, sse) in [("/api/sse", true), ("/api/stream", false)] {
            let response = client
                .get(format!("{origin}{path}"))
                .send()
                .await
                .unwrap_or_else(|err| panic!("{name} {path}: {err}"));
            assert_eq!(response.status(), 200, "{name} {path}");
            assert_eq!(
                response.headers()["cache-control"],
                "no-cache, no-transform",
                "{name} {path}"
            );
            // nginx takes X-Accel-Buffering for itself; the others pass it on.
            assert_eq!(
                response.headers().contains_key("x-accel-buffering"),
                kind != Kind::Nginx,
                "{name} {path}"
            );
            let mut lags = stream_lags(response, sse, 2).await;
            assert!(
                lags.len() > 40,
                "{name} {path}: {} ticks in 2 s",
                lags.len()
            );
            let p50 = lag_p50_ms(&mut lags);
            assert!(
                p50 < 50.0,
                "{name} {path} holds the stream back: p50 {p50} ms"
            );
        }

        for path in ["/api/poll?since=0", "/api/long-poll?since=0"] {
            let answer = client.get(format!("{origin}{path}")).send().await.unwrap();
            assert_eq!(answer.status(), 200, "{name} {path}");
            let batch: Batch = answer.json().await.unwrap();
            assert!(!batch.ticks.is_empty(), "{name} {path}");
        }

        let ws = connect_async(format!("ws://127.0.0.1:{}/api/ws", proxy.port)).await;
        match (kind, ws) {
            (Kind::Nginx, Err(WsError::Http(response))) => {
                assert_eq!(response.status(), 400, "nginx refuses the upgrade");
            }
            (Kind::Nginx, other) => panic!("nginx passed a WebSocket upgrade: {other:?}"),
            (_, Ok((mut ws, _))) => {
                let subscribe = serde_json::to_string(&ClientMessage::Subscribe {
                    symbols: None,
                    since: None,
                })
                .unwrap();
                ws.send(Message::text(subscribe)).await.unwrap();
                let batch = crate::helpers::next_ws_batch(&mut ws).await;
                assert!(!batch.ticks.is_empty(), "{name} WebSocket");
            }
            (_, Err(err)) => panic!("{name} refused the WebSocket: {err}"),
        }
    }
}

/// Behind an untouched nginx the page's WebSocket cannot open. The page says why in a
/// sentence, backs off exponentially (the attempt count grows and so does the wait), sends
/// nothing on the failed sockets, and SSE works on the same path.
#[tokio::test]
async fn behind_an_untouched_nginx_the_page_says_why_websocket_fails_and_backs_off() {
    let server = TestServer::start(|config| {
        config.static_dir = dist_dir();
        config.rate = 50.0;
    });
    let proxy = Proxy::start(Kind::Nginx, free_port(), &[server.addr], None).await;
    let driver = ChromeDriver::start().await;
    let browser = driver.browser().await;
    browser
        .goto(&format!("{}/", proxy.origin(false)))
        .await
        .expect("loading the app through nginx");
    // WebSocket is the page's first transport.
    wait_text(
        &browser,
        "[data-testid=lag-panel]",
        "the reason in the page",
        |t| t.contains("this path does not carry WebSocket upgrades: HTTP 400 at the handshake"),
    )
    .await;
    let path = text(&browser, "[data-testid=path]").await;
    assert!(path.contains("through a proxy"), "{path}");
    // Five failures in: the fifth wait is 2 to 4 s (250 ms doubling, with jitter).
    let state = wait_text(&browser, "[data-testid=state]", "attempt 5", |t| {
        t.contains("(attempt 5,")
    })
    .await;
    let wait_s: f64 = state
        .split("in ")
        .nth(1)
        .and_then(|rest| rest.trim_end_matches(" s)").parse().ok())
        .unwrap_or_else(|| panic!("a wait in {state:?}"));
    assert!((2.0..=4.0).contains(&wait_s), "{state}");
    let reconnects: u32 = text(&browser, "[data-testid=reconnects]")
        .await
        .parse()
        .unwrap();
    assert!(
        reconnects <= 6,
        "{reconnects} reconnects by the fifth attempt"
    );

    let log = browser_log(&browser).await;
    assert!(
        !log.iter()
            .any(|(_, message)| message.contains("CLOSING or CLOSED")),
        "the page sent on a failed socket: {log:#?}"
    );
    // What the browser itself logs is the failed handshakes and the one question after them.
    for (level, message) in &log {
        assert!(
            level != "SEVERE" || message.contains("/api/ws"),
            "unexpected: {level} {message}"
        );
    }

    click(&browser, "[data-testid=transport-sse]").await;
    let notice = wait_text(&browser, "[data-testid=notice]", "the switch to SSE", |t| {
        t.contains(" to SSE at cursor")
    })
    .await;
    assert!(notice.contains("0 ticks missed, 0 repeated"), "{notice}");
    let before = chain_ticks(&text(&browser, "[data-testid=chain]").await);
    let chain = wait_text(&browser, "[data-testid=chain]", "SSE ticks", |t| {
        chain_ticks(t) > before + 100
    })
    .await;
    assert!(chain.contains("0 gaps · 0 breaks"), "{chain}");
    browser.close().await.unwrap();
}

/// A quiet feed (no ticks at all) for three minutes: every long-lived stream through every
/// untouched proxy stays open on its heartbeats, past nginx's 60 s and HAProxy's stock 50 s
/// idle cuts, and every long poll is answered by the server (held 25 s), not cut by a proxy.
#[tokio::test]
async fn quiet_streams_outlive_the_untouched_proxies_idle_cuts() {
    const QUIET: Duration = Duration::from_secs(180);
    let server = TestServer::start(|config| config.rate = 0.0);
    let mut proxies = Vec::new();
    for kind in Kind::ALL {
        proxies.push(Proxy::start(kind, free_port(), &[server.addr], None).await);
    }
    let head = server.snapshot().await.cursor;
    let until = Instant::now() + QUIET;
    let mut runs = Vec::new();
    for proxy in &proxies {
        let (name, origin, port) = (proxy.kind.name(), proxy.origin(false), proxy.port);
        for path in ["/api/sse", "/api/stream"] {
            let url = format!("{origin}{path}");
            runs.push(tokio::spawn(async move {
                let response = reqwest::get(&url).await.expect("opening the stream");
                assert_eq!(response.status(), 200, "{name} {path}");
                let mut body = response.bytes_stream();
                let mut chunks = 0;
                loop {
                    match tokio::time::timeout_at(until, body.next()).await {
                        Err(_) => break,
                        Ok(Some(Ok(_))) => chunks += 1,
                        Ok(end) => panic!("{name} {path} ended after {chunks} chunks: {end:?}"),
                    }
                }
                // A heartbeat every 15 s.
                assert!(chunks >= 10, "{name} {path}: {chunks} chunks");
                format!(
                    "{name} {path}: open for {} s, {chunks} chunks",
                    QUIET.as_secs()
                )
            }));
        }
        if proxy.kind != Kind::Nginx {
            runs.push(tokio::spawn(async move {
                let (mut ws, _) = connect_async(format!("ws://127.0.0.1:{port}/api/ws"))
                    .await
                    .expect("a WebSocket");
                let mut pings = 0;
                loop {
                    // Reading answers the server's pings (every 10 s) with pongs.
                    match tokio::time::timeout_at(until, ws.next()).await {
                        Err(_) => break,
                        Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
                        Ok(Some(Ok(_))) => {}
                        Ok(end) => panic!("{name} WebSocket ended after {pings} pings: {end:?}"),
                    }
                }
                assert!(pings >= 10, "{name} WebSocket: {pings} pings");
                format!(
                    "{name} WebSocket: open for {} s, {pings} pings",
                    QUIET.as_secs()
                )
            }));
        }
        runs.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut answered = 0;
            while Instant::now() + Duration::from_secs(30) < until {
                let answer = client
                    .get(format!("{origin}/api/long-poll?since={head}"))
                    .timeout(PATIENCE * 3)
                    .send()
                    .await
                    .expect("a long poll answered");
                assert_eq!(answer.status(), 200, "{name} long poll");
                answered += 1;
            }
            assert!(answered >= 5, "{name}: {answered} long polls");
            format!("{name} long polls: {answered} held to their 25 s timeout")
        }));
    }
    for run in runs {
        println!("{}", run.await.expect("a quiet run"));
    }
}
