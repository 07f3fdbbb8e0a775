//! Scale-out over a real `nats-server`: one generator, two edges, clients on both. A cursor
//! moves between edges, edges restart, NATS restarts and the generator dies; clients lose
//! nothing without a `gap`.

use std::time::Duration;

use serde_json::Value;
use tickscope::{Config, Role};
use tickscope_shared::cursor::CursorChain;
use tokio::time::{Instant, sleep};

use crate::helpers::{PATIENCE, TestServer, accept, metric, next_sse_batch, next_ws_batch};
use crate::nats::NatsServer;

fn role(config: &mut Config, role: Role, nats: &NatsServer) {
    config.role = role;
    config.nats_url = nats.url();
    // Seqs as in production, from the clock: a restarted generator must go on after the
    // stream, not restart at a base of its own.
    config.seq_base = None;
    config.rate = 200.0;
    config.stale_after_ms = 500;
}

async fn generator(nats: &NatsServer) -> TestServer {
    ready(TestServer::start(|config| {
        role(config, Role::Generator, nats)
    }))
    .await
}

async fn edge(nats: &NatsServer) -> TestServer {
    ready(TestServer::start(|config| role(config, Role::Edge, nats))).await
}

/// Waits until `server` has left its 503 "starting" phase: connected to NATS and, for an
/// edge, backfilled. Every request is answered, 503 or not; none fails.
async fn ready(server: TestServer) -> TestServer {
    until_served(&server.url("/healthz")).await;
    server
}

/// Asks `url` on a new connection each time until the answer is not 503 "starting"; returns
/// how many 503s came first. Panics on a failed request: a reset or a refused connection.
async fn until_served(url: &str) -> u32 {
    let deadline = Instant::now() + PATIENCE;
    let mut starting = 0;
    loop {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let status = client
            .get(url)
            .send()
            .await
            .unwrap_or_else(|err| panic!("a request while starting failed: {err:?}"))
            .status();
        if status != 503 {
            assert_eq!(status, 200);
            return starting;
        }
        starting += 1;
        assert!(
            Instant::now() < deadline,
            "still starting after {PATIENCE:?}"
        );
        sleep(Duration::from_millis(5)).await;
    }
}

async fn until_served_owned(url: String) -> u32 {
    until_served(&url).await
}

/// Follows `server` by long polls until `chain` has `ticks` more ticks.
async fn follow(server: &TestServer, chain: &mut CursorChain, ticks: u64) {
    let until = chain.ticks() + ticks;
    while chain.ticks() < until {
        let cursor = chain.cursor().expect("a chain with a cursor");
        accept(
            chain,
            &server
                .long_poll(&format!("since={cursor}&timeout_ms=5000"))
                .await,
        );
    }
}

/// A chain that starts at `server`'s head.
async fn chain_at_head(server: &TestServer) -> CursorChain {
    CursorChain::new(Some(server.snapshot().await.cursor), true)
}

async fn health(server: &TestServer) -> Value {
    server.get_json("/healthz").await
}

/// Polls `/healthz` until `done` holds: these states (a broker gone, a generator silent) are
/// seen from outside only there.
async fn until_health(server: &TestServer, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let health = health(server).await;
        if done(&health) {
            return health;
        }
        assert!(Instant::now() < deadline, "waited for {what}; {health}");
        sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_cursor_moves_between_edges_without_loss() {
    let nats = NatsServer::start();
    let generator = generator(&nats).await;
    let (a, b) = (edge(&nats).await, edge(&nats).await);
    let mut chain = chain_at_head(&a).await;
    for _ in 0..3 {
        follow(&a, &mut chain, 100).await;
        // WebSocket on B, from where A left off.
        let mut ws = b.ws_subscribe(None, chain.cursor()).await;
        let until = chain.ticks() + 50;
        while chain.ticks() < until {
            accept(&mut chain, &next_ws_batch(&mut ws).await);
        }
        drop(ws);
        // SSE on A again, from where B left off.
        let mut events = a
            .sse(&format!("since={}", chain.cursor().unwrap()), None)
            .await;
        let until = chain.ticks() + 50;
        while chain.ticks() < until {
            accept(&mut chain, &next_sse_batch(&mut events).await);
        }
        follow(&b, &mut chain, 50).await;
    }
    assert_eq!(chain.gaps(), 0, "no gap moving between edges");
    // The generator serves no clients, and says so.
    let refused = reqwest::get(generator.url("/api/snapshot")).await.unwrap();
    assert_eq!(refused.status(), 404);
    let body: Value = refused.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("edge"), "{body}");
    // Both edges hold the same ticks under the same seqs, byte for byte.
    let since = chain.cursor().unwrap() - 100;
    let (on_a, on_b) = (
        reqwest::get(a.url(&format!("/api/poll?since={since}")))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        reqwest::get(b.url(&format!("/api/poll?since={since}")))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    let prefix = |text: &str| text.split("},{").nth(50).map(str::to_owned);
    assert_eq!(prefix(&on_a), prefix(&on_b));
    assert!(prefix(&on_a).is_some(), "100 ticks to compare: {on_a}");
    for server in [a, b, generator] {
        server.shut_down().await.unwrap();
    }
}

#[tokio::test]
async fn a_restarted_edge_backfills_and_resumes_cursors() {
    let nats = NatsServer::start();
    let generator = generator(&nats).await;
    let a = edge(&nats).await;
    let mut chain = chain_at_head(&a).await;
    follow(&a, &mut chain, 50).await;
    a.shut_down().await.unwrap();
    // While A is down, the feed goes on: B, started later, sees the ticks A missed.
    let b = edge(&nats).await;
    b.wait_for_head(chain.cursor().unwrap() + 300).await;
    let a = edge(&nats).await;
    follow(&a, &mut chain, 500).await;
    assert_eq!(
        chain.gaps(),
        0,
        "the restarted edge backfilled what it missed"
    );
    let candles: Value = a.get_json("/api/history?symbol=ACME&seconds=60").await;
    assert!(
        !candles["candles"].as_array().unwrap().is_empty(),
        "candles rebuilt from the stream: {candles}"
    );
    for server in [a, b, generator] {
        server.shut_down().await.unwrap();
    }
}

#[tokio::test]
async fn a_nats_restart_delays_ticks_and_loses_none() {
    let mut nats = NatsServer::start();
    let generator = generator(&nats).await;
    let (a, b) = (edge(&nats).await, edge(&nats).await);
    let mut on_a = chain_at_head(&a).await;
    follow(&a, &mut on_a, 50).await;
    let mut on_b = on_a.clone();
    let mut ws = b.ws_subscribe(None, on_b.cursor()).await;

    assert_eq!(reqwest::get(a.url("/readyz")).await.unwrap().status(), 200);
    nats.kill();
    until_health(&a, "edge A to see NATS go", |h| {
        h["cluster"]["broker"] == "disconnected"
    })
    .await;
    // A balancer's health check takes the edge out while it cannot follow the feed.
    let readiness = reqwest::get(a.url("/readyz")).await.unwrap();
    assert_eq!(readiness.status(), 503);
    let body: Value = readiness.json().await.unwrap();
    assert_eq!(body["error"], "not ready: NATS is disconnected");
    // The generator goes on making ticks while the broker is away.
    let backlog = until_health(&generator, "ticks made while NATS is away", |h| {
        h["cluster"]["backlog_ticks"].as_u64() > Some(100)
    })
    .await;
    let made_during_outage = backlog["cursor"].as_u64().unwrap();
    nats.restart();

    // Past the outage on both edges, by long polls on A and the open WebSocket on B.
    while on_a.cursor().unwrap() <= made_during_outage {
        follow(&a, &mut on_a, 1).await;
    }
    while on_b.cursor().unwrap() <= made_during_outage {
        accept(&mut on_b, &next_ws_batch(&mut ws).await);
    }
    assert_eq!((on_a.gaps(), on_b.gaps()), (0, 0), "delayed, never lost");
    let metrics = a.metrics().await;
    assert_eq!(metric(&metrics, "tickscope_feed_holes_total"), 0);
    assert!(metric(&metrics, "tickscope_broker_disconnects_total") >= 1);
    until_health(&generator, "the backlog to drain", |h| {
        h["cluster"]["backlog_ticks"] == 0 && h["status"] == "ok"
    })
    .await;
    for server in [a, b, generator] {
        server.shut_down().await.unwrap();
    }
}

#[tokio::test]
async fn a_dead_generator_shows_as_stale_and_a_new_one_goes_on() {
    let nats = NatsServer::start();
    let generator = generator(&nats).await;
    let a = edge(&nats).await;
    let mut chain = chain_at_head(&a).await;
    follow(&a, &mut chain, 50).await;
    generator.shut_down().await.unwrap();

    let stale = until_health(&a, "the edge to report a stale feed", |h| {
        h["status"] == "stale"
    })
    .await;
    assert_eq!(stale["cluster"]["feed"], "stale");
    assert_eq!(stale["cluster"]["broker"], "connected");
    // Every edge is stale alike: each stays ready, so a balancer keeps serving what it has.
    let readiness: Value = a.get_json("/readyz").await;
    assert_eq!(readiness["ready"], true);
    assert_eq!(readiness["feed"], "stale");
    assert_eq!(metric(&a.metrics().await, "tickscope_feed_stale"), 1);
    // Still serving: the snapshot and what it has.
    assert_eq!(a.snapshot().await.quotes.len(), 12);
    let cursor = chain.cursor().unwrap();
    accept(&mut chain, &a.poll(&format!("since={cursor}")).await);

    let generator = self::generator(&nats).await;
    until_health(&a, "the feed to be live again", |h| h["status"] == "ok").await;
    follow(&a, &mut chain, 200).await;
    assert_eq!(
        chain.gaps(),
        0,
        "the new generator goes on after the stream"
    );
    assert_eq!(metric(&a.metrics().await, "tickscope_feed_stale"), 0);
    for server in [a, generator] {
        server.shut_down().await.unwrap();
    }
}

#[tokio::test]
async fn a_nats_outage_longer_than_the_window_is_a_gap_never_a_silent_loss() {
    let mut nats = NatsServer::start();
    // A window of 1 s of ticks, on the generator and in the stream.
    let small = |config: &mut Config, as_role: Role| {
        role(config, as_role, &nats);
        config.retention = 200;
    };
    let generator = ready(TestServer::start(|config| small(config, Role::Generator))).await;
    let a = ready(TestServer::start(|config| small(config, Role::Edge))).await;
    let mut chain = chain_at_head(&a).await;
    follow(&a, &mut chain, 50).await;

    nats.kill();
    until_health(&generator, "more ticks made than the window holds", |h| {
        h["cluster"]["backlog_ticks"].as_u64() > Some(400)
    })
    .await;
    nats.restart();
    let made_during_outage = health(&generator).await["cursor"].as_u64().unwrap();
    while chain.cursor().unwrap() <= made_during_outage {
        follow(&a, &mut chain, 1).await;
    }
    assert_eq!(chain.gaps(), 1, "the lost stretch arrives as one gap");
    assert!(metric(&a.metrics().await, "tickscope_feed_holes_total") >= 1);
    for server in [a, generator] {
        server.shut_down().await.unwrap();
    }
}

#[tokio::test]
async fn an_edge_waiting_for_nats_answers_starting_then_serves() {
    let mut nats = NatsServer::start();
    nats.kill();
    let a = TestServer::start(|config| role(config, Role::Edge, &nats));
    let starting = reqwest::get(a.url("/healthz")).await.unwrap();
    assert_eq!(starting.status(), 503);
    assert_eq!(starting.headers()["retry-after"], "1");
    let body: Value = starting.json().await.unwrap();
    assert_eq!(body["status"], "starting", "{body}");
    let feed = reqwest::get(a.url("/api/snapshot")).await.unwrap();
    assert_eq!(feed.status(), 503);

    // Clients keep asking while the edge gets ready: each is answered, 503 until it serves.
    let askers: Vec<_> = ["/healthz", "/api/snapshot", "/healthz", "/api/symbols"]
        .into_iter()
        .map(|path| tokio::spawn(until_served_owned(a.url(path))))
        .collect();
    nats.restart();
    let generator = generator(&nats).await;
    for asker in askers {
        assert!(asker.await.unwrap() > 0, "asked while starting");
    }
    let a = ready(a).await;
    let mut chain = chain_at_head(&a).await;
    follow(&a, &mut chain, 50).await;
    for server in [a, generator] {
        server.shut_down().await.unwrap();
    }
}
