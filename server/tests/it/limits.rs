//! Limits and origins: each refusal is a clear status with `{"error"}` (and `Retry-After`
//! where waiting helps), and a refused client takes nothing from the others.

use reqwest::StatusCode;
use reqwest::header::{ORIGIN, RETRY_AFTER};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, http};

use crate::helpers::{TestServer, next_ws_batch};

/// Opens an SSE stream and returns the response, whatever its status.
async fn open_sse(server: &TestServer, origin: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(server.url("/api/sse"));
    if let Some(origin) = origin {
        request = request.header(ORIGIN, origin);
    }
    request.send().await.expect("an answer")
}

/// A WebSocket handshake's outcome: `Ok` when upgraded, else the refusal's status.
async fn ws_handshake(server: &TestServer, origin: Option<&str>) -> Result<(), http::StatusCode> {
    let mut request = server.ws_url().into_client_request().unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
    }
    match connect_async(request).await {
        Ok(_) => Ok(()),
        Err(tungstenite::Error::Http(response)) => Err(response.status()),
        Err(other) => panic!("a handshake answer, not {other}"),
    }
}

async fn error_of(response: reqwest::Response) -> String {
    let body: serde_json::Value = response.json().await.expect("a JSON error body");
    body["error"].as_str().expect("an error message").to_owned()
}

#[tokio::test]
async fn connections_over_the_server_limit_get_503_with_retry_after() {
    let server = TestServer::start(|config| {
        config.max_connections = 2;
        config.max_connections_per_ip = 0;
    });
    let first = open_sse(&server, None).await;
    let mut ws = server.ws_subscribe(None, None).await;
    let refused = open_sse(&server, None).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.headers().contains_key(RETRY_AFTER));
    assert!(error_of(refused).await.contains("most connections"));
    assert_eq!(
        ws_handshake(&server, None).await,
        Err(http::StatusCode::SERVICE_UNAVAILABLE)
    );
    // The held ones go on, and a closed one frees its place.
    next_ws_batch(&mut ws).await;
    drop(first);
    let mut admitted = false;
    for _ in 0..100 {
        if open_sse(&server, None).await.status() == StatusCode::OK {
            admitted = true;
            break;
        }
        // The server sees the closed stream when it reads or writes it; ask again after the
        // next tick.
        next_ws_batch(&mut ws).await;
    }
    assert!(admitted, "a place freed by a closed stream is given again");
}

#[tokio::test]
async fn one_ip_over_its_limit_gets_429() {
    let server = TestServer::start(|config| config.max_connections_per_ip = 1);
    let _held = server.ws_subscribe(None, None).await;
    let refused = open_sse(&server, None).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().contains_key(RETRY_AFTER));
    assert!(error_of(refused).await.contains("127.0.0.1"));
}

#[tokio::test]
async fn long_polls_per_ip_are_limited() {
    let server = TestServer::start(|config| {
        config.rate = 0.0;
        config.max_long_polls_per_ip = 1;
    });
    let head = server.snapshot().await.cursor;
    let url = server.url(&format!("/api/long-poll?since={head}&timeout_ms=60000"));
    let held = tokio::spawn(reqwest::get(url.clone()));
    // The first is held once the server counts it.
    while !server
        .metrics()
        .await
        .contains(r#"tickscope_clients{transport="long_polling"} 1"#)
    {
        tokio::task::yield_now().await;
    }
    let refused = reqwest::get(url).await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(error_of(refused).await.contains("long polls"));
    held.abort();
}

#[tokio::test]
async fn polling_faster_than_the_minimum_interval_gets_429() {
    let server = TestServer::start(|config| config.min_poll_interval_ms = 60_000);
    let client = reqwest::Client::new();
    let url = server.url("/api/poll");
    // A burst of three on one connection, then the interval applies.
    for _ in 0..3 {
        assert_eq!(
            client.get(&url).send().await.unwrap().status(),
            StatusCode::OK
        );
    }
    let refused = client.get(&url).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = refused.headers()[RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((59..=60).contains(&retry), "Retry-After {retry}");
    assert!(error_of(refused).await.contains("minimum interval"));
    // Another connection is another client.
    assert_eq!(reqwest::get(&url).await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn streams_refuse_pages_of_other_origins() {
    let server = TestServer::start(|_| {});
    let own = format!("http://{}", server.addr);
    assert_eq!(
        ws_handshake(&server, Some("https://evil.example")).await,
        Err(http::StatusCode::FORBIDDEN)
    );
    let refused = open_sse(&server, Some("https://evil.example")).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(error_of(refused).await.contains("https://evil.example"));
    assert_eq!(ws_handshake(&server, Some(&own)).await, Ok(()));
    assert_eq!(open_sse(&server, Some(&own)).await.status(), StatusCode::OK);
    assert_eq!(
        ws_handshake(&server, None).await,
        Ok(()),
        "programs send no Origin"
    );

    let allowing =
        TestServer::start(|config| config.allowed_origins = vec!["https://app.example".into()]);
    assert_eq!(
        ws_handshake(&allowing, Some("https://app.example")).await,
        Ok(())
    );
    assert_eq!(
        open_sse(&allowing, Some("https://app.example"))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        ws_handshake(&allowing, Some("https://evil.example")).await,
        Err(http::StatusCode::FORBIDDEN)
    );
}

#[tokio::test]
async fn cors_is_off_unless_configured() {
    let ask = |server: &TestServer| {
        reqwest::Client::new()
            .get(server.url("/api/snapshot"))
            .header(ORIGIN, "https://app.example")
            .send()
    };
    let closed = TestServer::start(|_| {});
    let answer = ask(&closed).await.unwrap();
    assert!(!answer.headers().contains_key("access-control-allow-origin"));
    let open = TestServer::start(|config| config.cors_origins = vec!["https://app.example".into()]);
    let answer = ask(&open).await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(
        answer.headers()["access-control-allow-origin"],
        "https://app.example"
    );
}
