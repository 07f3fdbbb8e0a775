//! One simple client per transport against a running server: update lag (receive time minus
//! tick `ts`, on the server's clock), ticks, requests and bytes, with the cursor chain checked.
//!
//! `just bench` runs it; the full load generator with many clients is `tickscope-load`'s job.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Parser;
use eventsource_stream::Eventsource;
use futures_util::{SinkExt, StreamExt};
use tickscope_shared::clock::{ClockOffset, ClockSample};
use tickscope_shared::cursor::CursorChain;
use tickscope_shared::lag::percentile;
use tickscope_shared::wire::{Batch, ClientMessage, ServerMessage, ServerTime, Snapshot};
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser)]
#[command(about = "Measures update lag of each transport with one client")]
struct Args {
    /// Base URL of a running tickscope server.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Seconds to measure each transport.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Polling interval, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    poll_interval_ms: u64,
}

/// What one transport's client saw.
struct Probe {
    chain: CursorChain,
    offset_us: i64,
    lags_us: Vec<i64>,
    requests: u64,
    empty: u64,
    bytes: u64,
    broken: u64,
}

impl Probe {
    fn new(start: u64, offset_us: i64) -> Self {
        Self {
            chain: CursorChain::new(Some(start), true),
            offset_us,
            lags_us: Vec::new(),
            requests: 0,
            empty: 0,
            bytes: 0,
            broken: 0,
        }
    }

    fn cursor(&self) -> u64 {
        self.chain.cursor().expect("the chain starts at a cursor")
    }

    fn batch(&mut self, batch: &Batch, bytes: usize) {
        let server_now_us = now_us() + self.offset_us;
        self.bytes += bytes as u64;
        if batch.ticks.is_empty() {
            self.empty += 1;
        }
        if self.chain.accept(batch).is_err() {
            self.broken += 1;
        }
        self.lags_us
            .extend(batch.ticks.iter().map(|tick| server_now_us - tick.ts));
    }
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_micros() as i64
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let http = reqwest::Client::new();
    wait_until_ready(&http, &args.url).await?;
    let offset_us = clock_offset(&http, &args.url).await?;
    println!(
        "server {} ; clock offset {offset_us} us ; {} s per transport ; polling every {} ms\n",
        args.url, args.seconds, args.poll_interval_ms
    );
    println!(
        "| transport | ticks | ticks/s | mean lag ms | p50 lag ms | p99 lag ms | max lag ms | requests | empty | bytes/tick | chain |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let (first, _): (serde_json::Value, _) = get(&http, &format!("{}/healthz", args.url)).await?;
    let began = Instant::now();
    for transport in ["polling", "long-polling", "websocket", "sse"] {
        let start: Snapshot = get(&http, &format!("{}/api/snapshot", args.url)).await?.0;
        let mut probe = Probe::new(start.cursor, offset_us);
        let until = Instant::now() + Duration::from_secs(args.seconds);
        match transport {
            "polling" => polling(&http, &args, &mut probe, until).await?,
            "long-polling" => long_polling(&http, &args, &mut probe, until).await?,
            "websocket" => websocket(&args, &mut probe, until).await?,
            _ => sse(&http, &args, &mut probe, until).await?,
        }
        report(transport, &mut probe, args.seconds);
    }
    let (last, _): (serde_json::Value, _) = get(&http, &format!("{}/healthz", args.url)).await?;
    let published = last["cursor"].as_u64().unwrap_or(0) - first["cursor"].as_u64().unwrap_or(0);
    println!(
        "\npublished {published} ticks in {:.1} s: {:.1} ticks/s",
        began.elapsed().as_secs_f64(),
        published as f64 / began.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn get<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
) -> anyhow::Result<(T, usize)> {
    let response = http
        .get(url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    if !response.status().is_success() {
        bail!("GET {url}: {}", response.status());
    }
    let body = response.bytes().await?;
    Ok((serde_json::from_slice(&body)?, body.len()))
}

/// Waits for a server that is still starting, for at most 10 s.
async fn wait_until_ready(http: &reqwest::Client, url: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match http.get(format!("{url}/healthz")).send().await {
            Ok(response) if response.status().is_success() => return Ok(()),
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            _ => bail!("no server answered at {url} within 10 s"),
        }
    }
}

/// Sixteen `/api/time` exchanges; the offset of the one with the shortest round trip.
async fn clock_offset(http: &reqwest::Client, url: &str) -> anyhow::Result<i64> {
    let mut clock = ClockOffset::new(16);
    for _ in 0..16 {
        let sent_us = now_us();
        let (time, _): (ServerTime, _) = get(http, &format!("{url}/api/time")).await?;
        clock.add(ClockSample {
            sent_us,
            server_us: time.server_time,
            received_us: now_us(),
        });
    }
    clock.offset_us().context("no clock sample")
}

async fn polling(
    http: &reqwest::Client,
    args: &Args,
    probe: &mut Probe,
    until: Instant,
) -> anyhow::Result<()> {
    let mut every = tokio::time::interval(Duration::from_millis(args.poll_interval_ms));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while Instant::now() < until {
        every.tick().await;
        let url = format!("{}/api/poll?since={}", args.url, probe.cursor());
        let (batch, bytes) = get(http, &url).await?;
        probe.requests += 1;
        probe.batch(&batch, bytes);
    }
    Ok(())
}

async fn long_polling(
    http: &reqwest::Client,
    args: &Args,
    probe: &mut Probe,
    until: Instant,
) -> anyhow::Result<()> {
    while Instant::now() < until {
        let url = format!("{}/api/long-poll?since={}", args.url, probe.cursor());
        let (batch, bytes) = get(http, &url).await?;
        probe.requests += 1;
        probe.batch(&batch, bytes);
    }
    Ok(())
}

async fn websocket(args: &Args, probe: &mut Probe, until: Instant) -> anyhow::Result<()> {
    let ws_url = format!("{}/api/ws", args.url.replacen("http", "ws", 1));
    let (mut ws, _) = tokio_tungstenite::connect_async(&ws_url).await?;
    probe.requests += 1;
    let subscribe = ClientMessage::Subscribe {
        symbols: None,
        since: Some(probe.cursor()),
    };
    ws.send(Message::text(serde_json::to_string(&subscribe)?))
        .await?;
    while let Ok(Some(message)) = tokio::time::timeout_at(until.into(), ws.next()).await {
        if let Message::Text(text) = message?
            && let ServerMessage::Batch(batch) = serde_json::from_str(&text)?
        {
            probe.batch(&batch, text.len());
        }
    }
    Ok(())
}

async fn sse(
    http: &reqwest::Client,
    args: &Args,
    probe: &mut Probe,
    until: Instant,
) -> anyhow::Result<()> {
    let url = format!("{}/api/sse?since={}", args.url, probe.cursor());
    let response = http.get(&url).send().await?;
    probe.requests += 1;
    let mut events = response.bytes_stream().eventsource();
    while let Ok(Some(event)) = tokio::time::timeout_at(until.into(), events.next()).await {
        let event = event?;
        if event.event == "heartbeat" {
            continue;
        }
        let batch: Batch = serde_json::from_str(&event.data)?;
        probe.batch(&batch, event.data.len());
    }
    Ok(())
}

fn report(transport: &str, probe: &mut Probe, seconds: u64) {
    probe.lags_us.sort_unstable();
    let ticks = probe.lags_us.len();
    let ms = |us: i64| format!("{:.1}", us as f64 / 1000.0);
    let mean = probe.lags_us.iter().sum::<i64>() as f64 / ticks.max(1) as f64 / 1000.0;
    let (p50, p99, max) = if ticks == 0 {
        ("-".to_owned(), "-".to_owned(), "-".to_owned())
    } else {
        (
            ms(percentile(&probe.lags_us, 50.0)),
            ms(percentile(&probe.lags_us, 99.0)),
            ms(probe.lags_us[ticks - 1]),
        )
    };
    let chain = if probe.broken == 0 {
        "continuous".to_owned()
    } else {
        format!("{} breaks", probe.broken)
    };
    println!(
        "| {transport} | {ticks} | {:.1} | {mean:.1} | {p50} | {p99} | {max} | {} | {} | {:.0} | {chain} |",
        ticks as f64 / seconds as f64,
        probe.requests,
        probe.empty,
        probe.bytes as f64 / ticks.max(1) as f64,
    );
}
