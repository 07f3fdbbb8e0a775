//! Measures the browser app against its budgets in a real headless Chromium: time to the first
//! painted prices, Chromium's CPU while the page follows the feed, and whether the page keeps
//! up (its cursor against the server's head). `just bench` runs it; the sizes of the built
//! files are measured there too.

// Shared with the tests; each example uses part of it.
#[allow(dead_code)]
#[path = "../tests/it/chromedriver.rs"]
mod chromedriver;

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use fantoccini::{Client, Locator};

use chromedriver::ChromeDriver;

#[derive(Parser)]
#[command(about = "Measures the app's first paint, CPU use and backlog in headless Chromium")]
struct Args {
    /// Base URL of a running tickscope server that serves the built app.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Seconds to watch CPU use and backlog.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Page loads for the first-paint figure.
    #[arg(long, default_value_t = 5)]
    loads: usize,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let driver = ChromeDriver::start().await;

    let mut paints = Vec::new();
    for _ in 0..args.loads {
        let browser = driver.browser().await;
        browser.goto(&args.url).await?;
        paints.push(first_prices_ms(&browser).await?);
        browser.close().await?;
    }
    println!(
        "first prices painted after navigation: {} ms (first load, empty cache), median of {} loads {:.0} ms, max {:.0} ms",
        paints[0].round(),
        paints.len(),
        median(&mut paints.clone()),
        paints.iter().cloned().fold(0.0, f64::max)
    );

    let browser = driver.browser().await;
    browser.goto(&args.url).await?;
    first_prices_ms(&browser).await?;
    // Let the transport settle before measuring.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let http = reqwest::Client::new();
    let (cpu_start, wall_start) = (chromium_cpu_s(&driver)?, Instant::now());
    let backlog_start = backlog(&http, &args.url, &browser).await?;
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let backlog_end = backlog(&http, &args.url, &browser).await?;
    let cpu = (chromium_cpu_s(&driver)? - cpu_start) / wall_start.elapsed().as_secs_f64();
    println!(
        "over {} s on the default transport: Chromium (all its processes) used {:.1}% of one core; \
         backlog (server head minus page cursor) {backlog_start} ticks at the start, {backlog_end} at the end",
        args.seconds,
        cpu * 100.0
    );
    let errors = chromedriver::console_errors(&browser).await;
    anyhow::ensure!(errors.is_empty(), "the browser logged errors: {errors:#?}");
    browser.close().await?;
    Ok(())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Milliseconds from navigation to the app's `tickscope-first-prices` mark.
async fn first_prices_ms(browser: &Client) -> anyhow::Result<f64> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mark = browser
            .execute(
                "const m = performance.getEntriesByName('tickscope-first-prices'); \
                 return m.length ? m[0].startTime : null;",
                vec![],
            )
            .await?;
        if let Some(ms) = mark.as_f64() {
            return Ok(ms);
        }
        if Instant::now() > deadline {
            bail!("no prices painted within 15 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Ticks the page is behind: the server's head minus the cursor the page shows.
async fn backlog(http: &reqwest::Client, url: &str, browser: &Client) -> anyhow::Result<i64> {
    let chain = browser
        .find(Locator::Css("[data-testid=chain]"))
        .await?
        .text()
        .await?;
    let health: serde_json::Value = http
        .get(format!("{url}/healthz"))
        .send()
        .await?
        .json()
        .await?;
    let page: i64 = chain
        .strip_prefix("cursor ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("reading the cursor from {chain:?}"))?;
    Ok(health["cursor"].as_i64().unwrap_or(0) - page)
}

/// CPU seconds (user + system) of every process of this driver's Chromium.
fn chromium_cpu_s(driver: &ChromeDriver) -> anyhow::Result<f64> {
    let ticks_per_s = 100.0; // USER_HZ on Linux.
    let mut total = 0.0;
    for pid in driver.browser_pids() {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the ")" that closes the command name: utime and stime are 12th and 13th.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let utime: f64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0.0);
        let stime: f64 = fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0.0);
        total += (utime + stime) / ticks_per_s;
    }
    Ok(total)
}
