//! An edge: it backfills from the stream, then follows it into its own feed, and watches the
//! generator's heartbeat.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use futures_util::StreamExt;
use tokio::time::sleep;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use std::sync::atomic::Ordering;

use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::pull::OrderedConfig;

use super::{Broker, ClusterStatus, INGEST_CHUNK, decode_tick, retry};
use crate::feed::symbols::Universe;
use crate::feed::{Feed, IngestTick, TickDraft};

/// Readies an edge: waits for the broker and for a generator to have stored the market.
pub async fn start_edge(broker: &Broker, shutdown: &CancellationToken) -> anyhow::Result<Universe> {
    let listings = retry(
        "reading the market a generator stores in NATS",
        shutdown,
        || broker.stored_universe(),
    )
    .await?;
    Ok(Universe::new(listings))
}

/// Where an edge's first consumer starts, and the stream sequence it must reach before the
/// edge serves: the last `retention` messages of the stream.
pub async fn backfill_range(
    broker: &Broker,
    retention: u64,
    shutdown: &CancellationToken,
) -> anyhow::Result<(u64, u64)> {
    retry("reading the stream", shutdown, || async {
        let mut stream = broker.stream().await?;
        let state = &stream.info().await?.state;
        let start = state
            .first_sequence
            .max((state.last_sequence + 1).saturating_sub(retention))
            .max(1);
        Ok(Some((start, state.last_sequence)))
    })
    .await
}

/// The edge's follower: the stream into `feed`, from stream sequence `start` on. A consumer
/// that fails (the broker restarted, the connection dropped) is made again from the message
/// after the last one taken.
pub async fn follow(
    feed: Feed,
    broker: Broker,
    status: Arc<ClusterStatus>,
    start: u64,
    shutdown: CancellationToken,
) {
    let mut next = start;
    let mut pause = Duration::from_millis(100);
    loop {
        match take(&feed, &broker, &status, &mut next, &shutdown).await {
            Ok(()) => return,
            Err(err) => warn!("following the stream: {err:#}; resuming at {next}"),
        }
        tokio::select! {
            () = sleep(pause) => {}
            () = shutdown.cancelled() => return,
        }
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

/// One ordered consumer from `next` until it fails (`Err`) or `shutdown` (`Ok`).
async fn take(
    feed: &Feed,
    broker: &Broker,
    status: &ClusterStatus,
    next: &mut u64,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let stream = broker.stream().await?;
    let consumer = stream
        .create_consumer(OrderedConfig {
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: *next,
            },
            ..Default::default()
        })
        .await
        .context("creating the consumer")?;
    let mut messages = consumer.messages().await?.ready_chunks(INGEST_CHUNK);
    let universe = feed.universe().clone();
    let mut ticks = Vec::with_capacity(INGEST_CHUNK);
    loop {
        let chunk = tokio::select! {
            chunk = messages.next() => chunk,
            () = shutdown.cancelled() => return Ok(()),
        };
        let Some(chunk) = chunk else {
            return Err(anyhow!("the consumer ended"));
        };
        let mut failed = None;
        for message in chunk {
            let message = match message {
                Ok(message) => message,
                Err(err) => {
                    failed = Some(anyhow!(err));
                    break;
                }
            };
            let stream_seq = message
                .info()
                .map_err(|err| anyhow!("a message without JetStream info: {err}"))?
                .stream_sequence;
            match ingest_tick(&message.payload, &universe) {
                Ok(tick) => ticks.push(tick),
                Err(err) => warn!(stream_seq, "skipping a message: {err:#}"),
            }
            *next = stream_seq + 1;
        }
        if !ticks.is_empty() {
            let ingested = feed.ingest(&ticks);
            status.metrics.broker_ticks.inc_by(ticks.len() as u64);
            status.metrics.feed_holes.inc_by(ingested.holes);
            status.alive();
            ticks.clear();
        }
        status.stream_seq.store(*next - 1, Ordering::Relaxed);
        if let Some(err) = failed {
            return Err(err);
        }
    }
}

/// Keeps the edge's view of the generator's heartbeat; ticks count as one too.
pub async fn watch_heartbeat(
    broker: Broker,
    status: Arc<ClusterStatus>,
    shutdown: CancellationToken,
) {
    let mut beats = match broker
        .client
        .subscribe(broker.heartbeat_subject.clone())
        .await
    {
        Ok(beats) => beats,
        Err(err) => {
            warn!("subscribing to the generator's heartbeat: {err}");
            return;
        }
    };
    loop {
        tokio::select! {
            beat = beats.next() => match beat {
                Some(_) => status.alive(),
                None => return,
            },
            () = shutdown.cancelled() => return,
        }
    }
}

/// Waits until the edge has taken the stream up to `stream_seq`.
pub async fn caught_up(
    feed: &Feed,
    status: &ClusterStatus,
    stream_seq: u64,
    shutdown: &CancellationToken,
) {
    let mut published = feed.subscribe();
    while status.stream_seq.load(Ordering::Relaxed) < stream_seq {
        tokio::select! {
            changed = published.changed() => if changed.is_err() { return },
            () = shutdown.cancelled() => return,
        }
    }
}

/// A message's tick, ready for [`Feed::ingest`]; its JSON is kept as it came.
fn ingest_tick(payload: &[u8], universe: &Universe) -> anyhow::Result<IngestTick> {
    let tick = decode_tick(payload)?;
    let symbol_id = universe
        .id(&tick.symbol)
        .ok_or_else(|| anyhow!("a tick of {:?}, not in the market", tick.symbol))?;
    let json = std::str::from_utf8(payload).context("a tick that is not UTF-8")?;
    Ok(IngestTick {
        seq: tick.seq,
        ts: tick.ts,
        draft: TickDraft {
            symbol_id,
            price: tick.price,
            bid: tick.bid,
            ask: tick.ask,
            volume: tick.volume,
        },
        json: json.into(),
    })
}
