//! What HTTP/2 does to the HTTP transports, measured in a real headless Chromium against a
//! server on https (`just bench-http` starts one): the page runs each HTTP transport over
//! HTTP/1.1 (Chromium's `--disable-http2`) and then over HTTP/2, and the lag panel's own
//! figures give the bytes per delivered tick each way (the server's count of the TLS records,
//! proven against the client's socket by the `tls` tests), requests per tick and lag. Then,
//! when the server has an HTTP/1.1-only port (`--http1-addr`), the same in one page: compare
//! mode with each HTTP transport over HTTP/2 and over HTTP/1.1 at once, on the same ticks.

// Shared with the tests; each example uses part of it.
#[allow(dead_code)]
#[path = "../tests/it/chromedriver.rs"]
mod chromedriver;

use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use fantoccini::{Client, Locator};

use chromedriver::ChromeDriver;

#[derive(Parser)]
#[command(about = "Bytes per tick and lag of the HTTP transports over HTTP/1.1 and HTTP/2")]
struct Args {
    /// Base URL of a tickscope server on https that serves the built app.
    #[arg(long, default_value = "https://localhost:8443")]
    url: String,
    /// Seconds each transport is measured, after 3 s to settle.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// The transports, as the switch names them (`transport-<id>`).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "polling-1000,long-polling,sse,stream"
    )]
    transports: Vec<String>,
}

/// What the lag panel says at one instant.
#[derive(Debug, Clone)]
struct Reading {
    up: f64,
    down: f64,
    requests: f64,
    ticks: f64,
    p50_us: f64,
    p99_us: f64,
    protocol: String,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let driver = ChromeDriver::start().await;
    println!(
        "| transport | HTTP | down B/tick | up B/tick | B/tick both ways | requests/tick | p50 ms | p99 ms |"
    );
    println!("|---|---|--:|--:|--:|--:|--:|--:|");
    let mut totals: Vec<(String, String, f64)> = Vec::new();
    for (flags, expect) in [
        (
            &["--ignore-certificate-errors", "--disable-http2"][..],
            "http/1.1",
        ),
        (&["--ignore-certificate-errors"][..], "h2"),
    ] {
        let browser = driver.browser_with(flags).await;
        browser.goto(&args.url).await?;
        for id in &args.transports {
            browser
                .wait()
                .at_most(Duration::from_secs(20))
                .for_element(Locator::Css(&format!("[data-testid=transport-{id}]")))
                .await
                .with_context(|| format!("the switch has no {id}"))?
                .click()
                .await?;
            // Settle: the transport connected, its first wire report in, its clock measured.
            tokio::time::sleep(Duration::from_secs(3)).await;
            let start = read(&browser).await?;
            tokio::time::sleep(Duration::from_secs(args.seconds)).await;
            let end = read(&browser).await?;
            if end.protocol != expect {
                bail!("{id} went over {:?}, not {expect}", end.protocol);
            }
            let ticks = end.ticks - start.ticks;
            if ticks <= 0.0 {
                bail!("{id} delivered no ticks in {} s", args.seconds);
            }
            let down = (end.down - start.down) / ticks;
            let up = (end.up - start.up) / ticks;
            let requests = (end.requests - start.requests) / ticks;
            let version = if expect == "h2" { "2" } else { "1.1" };
            println!(
                "| {id} | {version} | {down:.0} | {up:.0} | {:.0} | {requests:.3} | {:.2} | {:.2} |",
                down + up,
                end.p50_us / 1000.0,
                end.p99_us / 1000.0
            );
            totals.push((id.clone(), version.to_string(), down + up));
        }
        let errors = chromedriver::console_errors(&browser).await;
        anyhow::ensure!(errors.is_empty(), "the browser logged errors: {errors:#?}");
        browser.close().await?;
    }
    println!();
    summary(&args.transports, &totals);
    let browser = driver.browser_with(&["--ignore-certificate-errors"]).await;
    side_by_side(&browser, &args).await?;
    browser.close().await?;
    Ok(())
}

/// Each transport's bytes per tick on HTTP/2 against HTTP/1.1.
fn summary(transports: &[String], totals: &[(String, String, f64)]) {
    for id in transports {
        let of = |version: &str| {
            totals
                .iter()
                .find(|(t, v, _)| t == id && v == version)
                .map(|(_, _, bytes)| *bytes)
        };
        if let (Some(h1), Some(h2)) = (of("1.1"), of("2")) {
            println!(
                "{id}: HTTP/2 moves {:.0}% of HTTP/1.1's bytes per tick ({:+.0}%)",
                100.0 * h2 / h1,
                100.0 * (h2 - h1) / h1
            );
        }
    }
}

/// Compare mode with HTTP/1.1 beside HTTP/2: every row read at the start and the end of one
/// window, so both versions carry the same ticks at the same moments.
async fn side_by_side(browser: &Client, args: &Args) -> anyhow::Result<()> {
    browser.goto(&args.url).await?;
    let Ok(button) = browser
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("[data-testid=mode-compare-versions]"))
        .await
    else {
        println!("\nThe server has no HTTP/1.1 port (--http1-addr): no side-by-side run.");
        return Ok(());
    };
    button.click().await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rows = |id: &str| [id.to_string(), format!("{id}-http1")];
    let mut start = Vec::new();
    for id in &args.transports {
        for row in rows(id) {
            start.push(read_row(browser, &row).await?);
        }
    }
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    println!(
        "\nSide by side in one page (compare mode, {} s, the same ticks):\n",
        args.seconds
    );
    println!(
        "| transport | HTTP | down B/tick | up B/tick | B/tick both ways | requests/tick | p50 ms | p99 ms |"
    );
    println!("|---|---|--:|--:|--:|--:|--:|--:|");
    let mut totals = Vec::new();
    let mut start = start.into_iter();
    for id in &args.transports {
        for (row, expect) in rows(id).into_iter().zip(["h2", "http/1.1"]) {
            let (start, end) = (start.next().expect("read"), read_row(browser, &row).await?);
            if end.protocol != expect {
                bail!("{row} went over {:?}, not {expect}", end.protocol);
            }
            let ticks = end.ticks - start.ticks;
            if ticks <= 0.0 {
                bail!("{row} delivered no ticks in {} s", args.seconds);
            }
            let (down, up) = ((end.down - start.down) / ticks, (end.up - start.up) / ticks);
            let version = if expect == "h2" { "2" } else { "1.1" };
            println!(
                "| {id} | {version} | {down:.0} | {up:.0} | {:.0} | {:.3} | {:.2} | {:.2} |",
                down + up,
                (end.requests - start.requests) / ticks,
                end.p50_us / 1000.0,
                end.p99_us / 1000.0
            );
            totals.push((id.clone(), version.to_string(), down + up));
        }
    }
    println!();
    summary(&args.transports, &totals);
    let errors = chromedriver::console_errors(browser).await;
    anyhow::ensure!(errors.is_empty(), "the browser logged errors: {errors:#?}");
    Ok(())
}

/// One compare row's figures (`compare-row-<row>`).
async fn read_row(browser: &Client, row: &str) -> anyhow::Result<Reading> {
    let values = browser
        .execute(
            "const r = document.querySelector(`[data-testid=compare-row-${arguments[0]}]`); \
             const chain = r.querySelector('[data-testid=breaks]').textContent; \
             const ticks = (chain.match(/([0-9]+) ticks/) || [0, ''])[1]; \
             return [r.dataset.wireUp, r.dataset.wireDown, r.dataset.wireRequests, ticks, \
                     r.dataset.lagP50Us, r.dataset.lagP99Us, r.dataset.protocol || ''];",
            vec![row.into()],
        )
        .await?;
    reading(&values)
}

async fn read(browser: &Client) -> anyhow::Result<Reading> {
    let values = browser
        .execute(
            "const p = document.querySelector('[data-testid=lag-panel]'); \
             const chain = document.querySelector('[data-testid=chain]').textContent; \
             const ticks = (chain.match(/([0-9]+) ticks/) || [0, ''])[1]; \
             return [p.dataset.wireUp, p.dataset.wireDown, p.dataset.wireRequests, ticks, \
                     p.dataset.lagP50Us, p.dataset.lagP99Us, p.dataset.protocol || ''];",
            vec![],
        )
        .await?;
    reading(&values)
}

/// The seven figures the page's scripts return, in `Reading`'s order.
fn reading(values: &serde_json::Value) -> anyhow::Result<Reading> {
    let field = |i: usize| -> anyhow::Result<f64> {
        values
            .get(i)
            .and_then(|value| value.as_str())
            .and_then(|value| value.parse().ok())
            .with_context(|| format!("the panel has not all its figures yet: {values}"))
    };
    Ok(Reading {
        up: field(0)?,
        down: field(1)?,
        requests: field(2)?,
        ticks: field(3)?,
        p50_us: field(4)?,
        p99_us: field(5)?,
        protocol: values
            .get(6)
            .and_then(|value| value.as_str())
            .unwrap_or_default()
            .to_string(),
    })
}
