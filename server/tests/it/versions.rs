//! HTTP/1.1 beside HTTP/2 in one page: a browser uses one protocol per origin, so
//! `--http1-addr` serves the same app on a second HTTPS port that offers only HTTP/1.1, and
//! compare mode runs each HTTP transport on both origins. The second port answers the main
//! port's pages (CORS, Resource Timing, streams) and no one else's.

use std::process::Command;

use fantoccini::Client;
use tickscope_shared::wire::Origins;

use crate::browser::{chain_ticks, click, dist_dir, text, wait_text};
use crate::chromedriver::{ChromeDriver, console_errors};
use crate::helpers::TestServer;
use crate::tls::Certificate;

fn server(certificate: &Certificate) -> TestServer {
    let (cert, key) = (certificate.cert.clone(), certificate.key.clone());
    TestServer::start(move |config| {
        config.static_dir = dist_dir();
        config.rate = 20.0;
        config.tls_cert = Some(cert);
        config.tls_key = Some(key);
        config.http1_addr = Some("127.0.0.1:0".parse().unwrap());
    })
}

/// curl to `url` trusting `certificate`, with `args`: the answer's status line, headers and
/// body, and the HTTP version it went over (`1.1`, `2`).
fn curl(certificate: &Certificate, args: &[&str], url: &str) -> (String, String) {
    let output = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "10", "--include"])
        .arg("--cacert")
        .arg(&certificate.cert)
        .args(["--write-out", "\n%{http_version}"])
        .args(args)
        .arg(url)
        .output()
        .expect("running curl (just test installs it)");
    assert!(output.status.success(), "curl {args:?} {url}: {output:?}");
    let out = String::from_utf8_lossy(&output.stdout).into_owned();
    let (answer, version) = out.rsplit_once('\n').expect("curl's --write-out line");
    (answer.to_owned(), version.to_owned())
}

/// The value of header `name` in `answer` (curl `--include`), if there.
fn header<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    answer.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

#[tokio::test]
async fn the_http1_port_speaks_only_http1_and_only_to_the_main_ports_pages() {
    let certificate = Certificate::new();
    let server = server(&certificate);
    let main = format!("https://localhost:{}", server.addr.port());
    let (answer, version) = curl(&certificate, &["--http2"], &format!("{main}/api/origins"));
    assert_eq!(version, "2");
    let body = answer.split("\r\n\r\n").nth(1).expect("a body");
    let origins: Origins = serde_json::from_str(body).expect("the origins as JSON");
    let http1 = origins.http1.expect("the server names its HTTP/1.1 origin");
    assert!(
        http1.starts_with("https://localhost:") && http1 != main,
        "{http1}, on the host asked by, at another port"
    );

    // curl asks for HTTP/2 and gets HTTP/1.1: ALPN offers nothing else there.
    let poll = format!("{http1}/api/poll?since=0&meter=00000000000000a1");
    let (answer, version) = curl(
        &certificate,
        &["--http2", "-H", &format!("Origin: {main}")],
        &poll,
    );
    assert_eq!(version, "1.1", "{answer}");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // The main port's pages may read the answer, its meter report and its timing.
    assert_eq!(
        header(&answer, "access-control-allow-origin"),
        Some(main.as_str())
    );
    assert_eq!(header(&answer, "timing-allow-origin"), Some(main.as_str()));
    let exposed = header(&answer, "access-control-expose-headers").unwrap_or_default();
    assert!(exposed.contains("tickscope-wire"), "{exposed}");
    assert!(header(&answer, "tickscope-wire").is_some());

    // Another site's page gets the answer without CORS headers (the browser keeps it from the
    // page), and no stream at all.
    let evil = "Origin: https://evil.example";
    let (answer, _) = curl(&certificate, &["-H", evil], &poll);
    assert!(
        header(&answer, "access-control-allow-origin").is_none(),
        "{answer}"
    );
    assert!(header(&answer, "timing-allow-origin").is_none(), "{answer}");
    let sse = format!("{http1}/api/sse?since=0");
    let (answer, _) = curl(&certificate, &["-H", evil], &sse);
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(answer.contains(r#""error""#), "{answer}");
    // The same port under another name is another site too.
    let (answer, _) = curl(
        &certificate,
        &[
            "-H",
            &format!("Origin: {}", main.replace("localhost", "127.0.0.1")),
        ],
        &sse,
    );
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    server.shut_down().await.expect("a clean shutdown");
}

/// The row's protocol cell, once the browser has said.
async fn protocol(browser: &Client, row: &str) -> String {
    wait_text(
        browser,
        &format!("{row} [data-testid=protocol]"),
        "the HTTP version",
        |t| t != "-" && !t.is_empty(),
    )
    .await
}

#[tokio::test]
async fn compare_mode_runs_each_http_transport_over_http2_and_http1_side_by_side() {
    let certificate = Certificate::new();
    let server = server(&certificate);
    let driver = ChromeDriver::start().await;
    let browser = driver.browser_with(&["--ignore-certificate-errors"]).await;
    browser
        .goto(&format!("https://localhost:{}/", server.addr.port()))
        .await
        .expect("loading the app over https");
    wait_text(&browser, "[data-testid=chain]", "ticks", |t| {
        chain_ticks(t) > 0
    })
    .await;
    click(&browser, "[data-testid=mode-compare-versions]").await;
    for id in ["polling-1000", "long-polling", "sse", "stream"] {
        for (row, version) in [
            (format!("[data-testid=compare-row-{id}]"), "HTTP/2 over TLS"),
            (
                format!("[data-testid=compare-row-{id}-http1]"),
                "HTTP/1.1 over TLS",
            ),
        ] {
            // Each one's chain grows, whole, and the browser says which version carried it
            // (cross-origin, it says so only when the answer allows its timing).
            let cell = format!("{row} [data-testid=breaks]");
            let before = chain_ticks(&text(&browser, &cell).await);
            let chain = wait_text(&browser, &cell, &format!("{row} ticks"), |t| {
                chain_ticks(t) > before
            })
            .await;
            assert!(chain.ends_with(" 0 gaps · 0 breaks"), "{row}: {chain}");
            assert_eq!(protocol(&browser, &row).await, version, "{row}");
            // The meter's reports reach the page across origins too.
            wait_text(
                &browser,
                &format!("{row} [data-testid=wire-down]"),
                "wire bytes",
                |t| t != "-" && !t.is_empty(),
            )
            .await;
        }
    }
    assert_eq!(
        protocol(&browser, "[data-testid=compare-row-websocket]").await,
        "HTTP/1.1 over TLS"
    );
    assert!(
        text(&browser, "[data-testid=compare-row-websocket-http1]")
            .await
            .is_empty(),
        "WebSocket runs once: it is on HTTP/1.1 already"
    );
    let errors = console_errors(&browser).await;
    assert!(errors.is_empty(), "the browser logged {errors:#?}");
}
