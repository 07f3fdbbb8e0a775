//! The generator: it makes the ticks and stores them, in order, in the JetStream stream.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::sleep;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use std::sync::atomic::Ordering;

use super::{Broker, ClusterStatus, HEARTBEAT_EVERY, PUBLISH_BATCH, SUBJECT_PREFIX, retry};
use crate::config::Config;
use crate::feed::Feed;
use crate::feed::symbols::Universe;

/// Where a generator starts: the market, the seq to continue after and the prices to go on
/// from, as the stream left them.
pub struct GeneratorStart {
    pub universe: Universe,
    /// The seq of the stream's newest tick, if the stream has one.
    pub last_seq: Option<u64>,
    /// Per symbol id, its newest price in the stream.
    pub prices: Vec<(u16, f64)>,
}

/// Readies the stream and the market for a generator. A stream that already holds ticks
/// (a restarted generator) is continued: the same market, seqs on from its newest tick, and
/// prices from its newest quotes, so edges see no gap and no jump.
pub async fn start_generator(
    broker: &Broker,
    config: &Config,
    generated: Universe,
    shutdown: &CancellationToken,
) -> anyhow::Result<GeneratorStart> {
    retry("creating the stream", shutdown, || async {
        broker.ensure_stream(config.retention).await.map(Some)
    })
    .await?;
    let stored = retry("reading the market", shutdown, || async {
        broker.stored_universe().await.map(Some)
    })
    .await?;
    let universe = match stored {
        Some(listings) => {
            if listings != generated.listings() {
                warn!(
                    stored = listings.len(),
                    "the stream already carries a market; continuing it instead of this \
                     run's --symbols and --seed"
                );
            }
            Universe::new(listings)
        }
        None => {
            retry("storing the market", shutdown, || async {
                broker.store_universe(generated.listings()).await.map(Some)
            })
            .await?;
            generated
        }
    };
    let last = retry("reading the stream's newest tick", shutdown, || async {
        broker.last_tick().await.map(Some)
    })
    .await?;
    let prices = match last {
        Some(_) => {
            retry("reading the newest prices", shutdown, || async {
                broker.last_prices(&universe).await.map(Some)
            })
            .await?
        }
        None => Vec::new(),
    };
    if let Some((stream_seq, tick)) = &last {
        info!(
            seq = tick.seq,
            stream_seq, "continuing the feed already in the stream"
        );
    }
    Ok(GeneratorStart {
        universe,
        last_seq: last.map(|(_, tick)| tick.seq),
        prices,
    })
}

/// The generator's forwarder: every tick of `feed`, in order, into the stream. When the
/// broker is away it keeps trying; on its return it asks the stream for its newest tick and
/// goes on after it, out of the feed's retained window. Ticks that left the window meanwhile
/// are skipped, and edges see the hole and send `gap`.
pub async fn forward(
    feed: Feed,
    broker: Broker,
    status: Arc<ClusterStatus>,
    shutdown: CancellationToken,
) {
    let subjects: Vec<String> = feed
        .universe()
        .listings()
        .iter()
        .map(|listing| format!("{SUBJECT_PREFIX}.{}", listing.symbol))
        .collect();
    let mut published = feed.subscribe();
    let mut cursor = feed.head();
    status.forwarded.store(cursor, Ordering::Relaxed);
    let mut pause = Duration::from_millis(100);
    loop {
        published.borrow_and_update();
        let Some(ticks) = feed.ticks_after(cursor, PUBLISH_BATCH) else {
            let oldest = feed.oldest();
            warn!(
                from = cursor + 1,
                to = oldest - 1,
                "ticks left the retained window before NATS took them; edges will send a gap"
            );
            cursor = oldest - 1;
            continue;
        };
        let Some(last) = ticks.last() else {
            tokio::select! {
                changed = published.changed() => if changed.is_err() { return },
                () = shutdown.cancelled() => return,
            }
            continue;
        };
        match broker.publish(&subjects, &ticks).await {
            Ok(stream_seq) => {
                status.alive();
                cursor = last.seq;
                status.forwarded.store(cursor, Ordering::Relaxed);
                status.stream_seq.store(stream_seq, Ordering::Relaxed);
                status.metrics.broker_ticks.inc_by(ticks.len() as u64);
                pause = Duration::from_millis(100);
            }
            Err(err) => {
                status.metrics.publish_errors.inc();
                warn!("publishing to NATS: {err:#}; retrying");
                tokio::select! {
                    () = sleep(pause) => {}
                    () = shutdown.cancelled() => return,
                }
                pause = (pause * 2).min(Duration::from_secs(2));
                // Some of the round may have been stored: go on after what the stream holds.
                if let Ok(Some((_, tick))) = broker.last_tick().await {
                    cursor = tick.seq;
                }
            }
        }
    }
}

/// The generator's heartbeat on plain NATS, so edges can tell a quiet feed from a dead one.
pub async fn heartbeat(
    feed: Feed,
    broker: Broker,
    status: Arc<ClusterStatus>,
    shutdown: CancellationToken,
) {
    let mut every = tokio::time::interval(HEARTBEAT_EVERY);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let payload = Bytes::from(feed.head().to_string());
        match broker
            .client
            .publish(broker.heartbeat_subject.clone(), payload)
            .await
        {
            Ok(()) if status.connected.load(Ordering::Relaxed) => status.alive(),
            Ok(()) => {}
            Err(err) => warn!("sending the heartbeat: {err}"),
        }
    }
}
