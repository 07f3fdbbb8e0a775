//! tickscope deployed as production runs it: a real `nats-server`, a generator, two edges and
//! each of the reverse proxies Debian ships, with `deploy/`'s configurations. Headless Chromium
//! runs every transport through each proxy over HTTPS and HTTP/2 (WebTransport on its own UDP
//! path to an edge), and polls land on both edges with an unbroken cursor chain: no sticky
//! sessions.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use tickscope::{Config, Role};
use tickscope_shared::cursor::CursorChain;
use tickscope_shared::wire::{Batch, EdgeHeader};

use crate::browser::{chain_ticks, click, dist_dir, text, wait_text};
use crate::chromedriver::{ChromeDriver, console_errors};
use crate::helpers::{PATIENCE, TestServer, accept};
use crate::nats::NatsServer;
use crate::proxy::{Kind, Proxy, free_port, https_get};
use crate::tls::Certificate;

/// NATS, a generator, edges `edge-a` and `edge-b`, and a proxy with its shipped configuration
/// at `https://localhost:PORT`.
pub(crate) struct Deployment {
    pub proxy: Proxy,
    _edges: [TestServer; 2],
    pub certificate: Certificate,
    _generator: TestServer,
    _nats: NatsServer,
}

fn cluster(config: &mut Config, role: Role, nats: &NatsServer) {
    config.role = role;
    config.nats_url = nats.url();
    config.seq_base = None;
    config.rate = 50.0;
}

impl Deployment {
    pub async fn start(kind: Kind) -> Self {
        let nats = NatsServer::start();
        let generator = TestServer::start(|config| cluster(config, Role::Generator, &nats));
        let port = free_port();
        let edge = |name: &'static str| {
            TestServer::start(|config| {
                cluster(config, Role::Edge, &nats);
                config.edge_name = Some(name.into());
                config.static_dir = dist_dir();
                config.webtransport_addr = Some("127.0.0.1:0".parse().unwrap());
                // The page's origin is the proxy's; its WebTransport sessions go to the edge.
                config.allowed_origins = vec![format!("https://localhost:{port}")];
                config.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
            })
        };
        let edges = [edge("edge-a"), edge("edge-b")];
        let certificate = Certificate::new();
        let addrs: Vec<SocketAddr> = edges.iter().map(|edge| edge.addr).collect();
        let proxy = Proxy::start(kind, port, &addrs, Some(&certificate)).await;
        let deployment = Self {
            proxy,
            _edges: edges,
            certificate,
            _generator: generator,
            _nats: nats,
        };
        deployment.until_both_edges_serve().await;
        deployment
    }

    /// Waits until the balancer sends requests to both edges (their health checks passed).
    async fn until_both_edges_serve(&self) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let mut seen = BTreeSet::new();
        while seen.len() < 2 {
            let answer = https_get(&self.certificate, self.proxy.port, "/readyz").await;
            if answer.status == 200 {
                seen.insert(edge_of(&answer).name);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} sent requests to {seen:?} only: {}",
                self.proxy.kind.name(),
                self.proxy.log()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

fn edge_of(answer: &crate::proxy::Answer) -> EdgeHeader {
    answer
        .header(EdgeHeader::HEADER)
        .and_then(EdgeHeader::from_header)
        .expect("every answer names its edge")
}

/// Polls and long polls, each on a connection of its own through the round-robin balancer:
/// every request is free to land on either edge, and the chain stays whole.
async fn polls_need_no_sticky_sessions(deployment: &Deployment) {
    let (certificate, port) = (&deployment.certificate, deployment.proxy.port);
    let mut answered_by = Vec::new();
    let start = https_get(certificate, port, "/api/snapshot").await;
    let snapshot: tickscope_shared::wire::Snapshot =
        serde_json::from_str(&start.body).expect("a snapshot");
    let mut cursor = snapshot.cursor;
    let mut chain = CursorChain::new(Some(cursor), true);
    for round in 0..24 {
        let path = if round % 2 == 0 {
            format!("/api/long-poll?since={cursor}")
        } else {
            format!("/api/poll?since={cursor}")
        };
        let answer = https_get(certificate, port, &path).await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
        let edge = edge_of(&answer);
        assert_eq!(edge.via.as_deref(), Some("x-forwarded-for"), "{edge:?}");
        answered_by.push(edge.name);
        let batch: Batch = serde_json::from_str(&answer.body).expect("a batch");
        accept(&mut chain, &batch);
        cursor = batch.cursor;
    }
    let edges: BTreeSet<&String> = answered_by.iter().collect();
    assert_eq!(
        edges.len(),
        2,
        "{}: every poll went to {answered_by:?}",
        deployment.proxy.kind.name()
    );
    assert_eq!(chain.gaps(), 0);
    assert!(chain.ticks() > 0, "the polls brought ticks");
}

/// Headless Chromium through the proxy over HTTPS: the page says a proxy is in its path,
/// polls are counted at both edges, and compare mode runs all six transports for 20 s with
/// every chain whole and a clean browser log.
async fn the_page_runs_every_transport_through(deployment: &Deployment) {
    let driver = ChromeDriver::start().await;
    let browser = driver
        .browser_with_quic_and(&["--ignore-certificate-errors"])
        .await;
    browser
        .goto(&format!("{}/", deployment.proxy.origin(true)))
        .await
        .expect("loading the app through the proxy");
    wait_text(&browser, "[data-testid=chain]", "ticks", |t| {
        chain_ticks(t) > 0
    })
    .await;
    let path = text(&browser, "[data-testid=path]").await;
    assert!(path.contains("through a proxy"), "{path}");
    assert_eq!(
        text(&browser, "[data-testid=protocol]").await,
        "HTTP/1.1 over TLS",
        "the WebSocket's own connection"
    );

    // Polls over one HTTP/2 connection, balanced request by request: both edges count them.
    click(&browser, "[data-testid=transport-polling-250]").await;
    wait_text(&browser, "[data-testid=edge]", "both edges counting", |t| {
        t.contains("edge-a") && t.contains("edge-b")
    })
    .await;
    assert_eq!(
        text(&browser, "[data-testid=protocol]").await,
        "HTTP/2 over TLS"
    );

    click(&browser, "[data-testid=mode-compare]").await;
    let ids = [
        "polling-1000",
        "long-polling",
        "websocket",
        "sse",
        "stream",
        "webtransport",
    ];
    // 20 s at 50 ticks a second.
    for id in ids {
        wait_text(
            &browser,
            &format!("[data-testid=compare-row-{id}] [data-testid=breaks]"),
            &format!("{id} running"),
            |t| chain_ticks(t) > 0,
        )
        .await;
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    tokio::time::sleep_until(deadline).await;
    for id in ids {
        let chain = text(
            &browser,
            &format!("[data-testid=compare-row-{id}] [data-testid=breaks]"),
        )
        .await;
        assert!(
            chain.ends_with("0 gaps · 0 breaks") && chain_ticks(&chain) > 500,
            "{} {id}: {chain}",
            deployment.proxy.kind.name()
        );
    }
    let errors = console_errors(&browser).await;
    assert!(errors.is_empty(), "the browser logged errors: {errors:#?}");
    browser.close().await.unwrap();
}

async fn deployed_behind(kind: Kind) {
    let deployment = Deployment::start(kind).await;
    polls_need_no_sticky_sessions(&deployment).await;
    the_page_runs_every_transport_through(&deployment).await;
}

#[tokio::test]
async fn behind_nginx_every_transport_runs_and_polls_need_no_sticky_session() {
    deployed_behind(Kind::Nginx).await;
}

#[tokio::test]
async fn behind_haproxy_every_transport_runs_and_polls_need_no_sticky_session() {
    deployed_behind(Kind::Haproxy).await;
}

#[tokio::test]
async fn behind_caddy_every_transport_runs_and_polls_need_no_sticky_session() {
    deployed_behind(Kind::Caddy).await;
}
