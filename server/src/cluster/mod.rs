//! Scale-out over NATS JetStream: `--role generator` and `--role edge`.
//!
//! The generator runs the simulator into its own [`Feed`], exactly as `--role all` does, and
//! [`forward`]s every tick to one JetStream stream: subject `ticks.<SYMBOL>`, the tick's JSON
//! (encoded once, at publish) as the payload, and its seq as the message id, so a retry after
//! a lost acknowledgement is not stored twice. The market's listings go to the key-value bucket
//! `tickscope`, so every edge serves the same symbols.
//!
//! An edge [`follow`]s the stream with an ordered consumer and [`Feed::ingest`]s the ticks with
//! their seqs unchanged. A cursor therefore means the same on every edge: a client that moves
//! from edge A to edge B resumes where it was. An edge that starts late or restarts first
//! backfills the last `--retention` ticks from the stream and only then serves.
//!
//! Faults: the client reconnects to NATS by itself; the edge recreates its consumer from the
//! stream sequence after the last one it took, and the generator resumes from the last tick
//! the stream holds, out of its own retained window. Ticks are delayed, not lost; a hole
//! (retention exceeded) reaches clients as `gap`. The generator also sends a heartbeat on
//! plain NATS every second, so an edge can tell a quiet feed from a dead generator and report
//! it as stale in `/healthz` and `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use async_nats::jetstream::{self, stream};
use async_nats::{HeaderMap, header};
use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tickscope_shared::wire::Tick;
use tokio::time::sleep;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{Config, Role};
use crate::feed::clock::now_us;
use crate::feed::symbols::{Listing, Universe};
use crate::feed::{Feed, StoredTick};
use crate::metrics::Metrics;

mod edge;
mod generator;

pub use edge::{backfill_range, caught_up, follow, start_edge, watch_heartbeat};
pub use generator::{GeneratorStart, forward, heartbeat, start_generator};

/// Subjects of the ticks: `ticks.<SYMBOL>`.
const SUBJECT_PREFIX: &str = "ticks";
/// How often the generator says it is alive.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// Ticks forwarded per round of publishes: each round is pipelined, then its acks awaited.
const PUBLISH_BATCH: usize = 1000;
/// How long the stream remembers message ids to drop a retried publish.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// Messages an edge ingests in one go when they arrive together.
const INGEST_CHUNK: usize = 1024;

/// The broker connection, shared by a generator's or an edge's tasks.
#[derive(Clone)]
pub struct Broker {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    stream: String,
    heartbeat_subject: String,
}

/// What the cluster tasks report for `/healthz` and `/metrics`.
pub struct ClusterStatus {
    pub role: Role,
    stale_after_us: i64,
    connected: AtomicBool,
    /// Edge: when the generator last showed it is alive, by a tick or a heartbeat. Generator:
    /// when it last reached the broker (Unix µs).
    last_feed_us: AtomicI64,
    /// Edge: the stream sequence of the last message taken. Generator: of the last stored.
    stream_seq: AtomicU64,
    /// Generator: the last tick seq the stream acknowledged.
    forwarded: AtomicU64,
    pub metrics: ClusterMetrics,
}

/// The cluster's Prometheus series; registered by [`ClusterMetrics::register`].
#[derive(Clone, Default)]
pub struct ClusterMetrics {
    pub broker_connected: Gauge,
    pub broker_disconnects: Counter,
    /// Edge: 1 while neither a tick nor a heartbeat came within `--stale-after-ms`.
    pub feed_stale: Gauge,
    pub feed_age_ms: Gauge,
    /// Ticks through the broker: stored (generator) or taken (edge).
    pub broker_ticks: Counter,
    /// Edge: places where the stream skipped ticks (retention exceeded); clients get `gap`.
    pub feed_holes: Counter,
    /// Generator: publish rounds that failed and were retried.
    pub publish_errors: Counter,
    /// Generator: ticks made but not yet stored in the stream.
    pub backlog_ticks: Gauge,
}

impl ClusterMetrics {
    /// Registers the series of a generator or an edge in `metrics` and hands them out.
    pub fn register(metrics: &mut Metrics) -> Self {
        let cluster = Self::default();
        let registry = metrics.registry();
        registry.register(
            "broker_connected",
            "1 while connected to NATS",
            cluster.broker_connected.clone(),
        );
        registry.register(
            "broker_disconnects",
            "Times the NATS connection was lost",
            cluster.broker_disconnects.clone(),
        );
        registry.register(
            "feed_stale",
            "1 while the generator has sent neither a tick nor a heartbeat within --stale-after-ms",
            cluster.feed_stale.clone(),
        );
        registry.register(
            "feed_age_ms",
            "Milliseconds since the generator last sent a tick or a heartbeat",
            cluster.feed_age_ms.clone(),
        );
        registry.register(
            "broker_ticks",
            "Ticks stored in the stream (generator) or taken from it (edge)",
            cluster.broker_ticks.clone(),
        );
        registry.register(
            "feed_holes",
            "Places where ticks were missing from the stream (retention exceeded); clients got gap",
            cluster.feed_holes.clone(),
        );
        registry.register(
            "broker_publish_errors",
            "Rounds of publishes to the stream that failed and were retried",
            cluster.publish_errors.clone(),
        );
        registry.register(
            "broker_backlog_ticks",
            "Ticks made but not yet stored in the stream",
            cluster.backlog_ticks.clone(),
        );
        cluster
    }
}

/// The health of the cluster side, as `/healthz` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClusterHealth {
    pub role: &'static str,
    pub broker: &'static str,
    /// `live`, or `stale` when the generator has been silent for `--stale-after-ms`.
    pub feed: &'static str,
    /// Milliseconds since the generator last showed it is alive.
    pub feed_age_ms: i64,
    pub stream_seq: u64,
    /// Generator: ticks not yet stored in the stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backlog_ticks: Option<u64>,
}

impl ClusterStatus {
    pub fn new(config: &Config, metrics: ClusterMetrics) -> Self {
        Self {
            role: config.role,
            stale_after_us: config.stale_after_ms as i64 * 1000,
            connected: AtomicBool::new(false),
            last_feed_us: AtomicI64::new(now_us()),
            stream_seq: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            metrics,
        }
    }

    /// Reads the state, and brings the gauges up to date with it.
    pub fn health(&self, feed: &Feed) -> ClusterHealth {
        let connected = self.connected.load(Ordering::Relaxed);
        let age_ms = (now_us() - self.last_feed_us.load(Ordering::Relaxed)).max(0) / 1000;
        let stale = self.role == Role::Edge && age_ms * 1000 > self.stale_after_us;
        let backlog = (self.role == Role::Generator)
            .then(|| feed.head() - self.forwarded.load(Ordering::Relaxed).min(feed.head()));
        self.metrics.feed_stale.set(i64::from(stale));
        self.metrics.feed_age_ms.set(age_ms);
        self.metrics.backlog_ticks.set(backlog.unwrap_or(0) as i64);
        ClusterHealth {
            role: self.role.as_str(),
            broker: if connected {
                "connected"
            } else {
                "disconnected"
            },
            feed: if stale { "stale" } else { "live" },
            feed_age_ms: age_ms,
            stream_seq: self.stream_seq.load(Ordering::Relaxed),
            backlog_ticks: backlog,
        }
    }

    fn set_connected(&self, connected: bool) {
        let was = self.connected.swap(connected, Ordering::Relaxed);
        self.metrics.broker_connected.set(i64::from(connected));
        if was && !connected {
            self.metrics.broker_disconnects.inc();
        }
    }

    fn alive(&self) {
        self.last_feed_us.store(now_us(), Ordering::Relaxed);
    }
}

impl Broker {
    /// Connects to `--nats-url`, retrying in the background until the server is there; the
    /// connection's ups and downs go to `status`.
    pub async fn connect(config: &Config, status: Arc<ClusterStatus>) -> anyhow::Result<Self> {
        let events = status.clone();
        let client = async_nats::ConnectOptions::new()
            .name(format!("tickscope-{}", config.role.as_str()))
            .retry_on_initial_connect()
            // Loopback or a LAN: come back quickly once the broker is back.
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis(250 * attempts.min(8) as u64)
            })
            .event_callback(move |event| {
                let status = events.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            info!("connected to NATS");
                            status.set_connected(true);
                        }
                        async_nats::Event::Disconnected => {
                            warn!("disconnected from NATS; reconnecting");
                            status.set_connected(false);
                        }
                        other => info!(event = %other, "NATS"),
                    }
                }
            })
            .connect(config.nats_url.as_str())
            .await
            .with_context(|| format!("connecting to NATS at {}", config.nats_url))?;
        Ok(Self {
            jetstream: jetstream::new(client.clone()),
            heartbeat_subject: format!("tickscope.{}.heartbeat", config.nats_stream),
            stream: config.nats_stream.clone(),
            client,
        })
    }

    async fn stream(&self) -> anyhow::Result<stream::Stream> {
        self.jetstream
            .get_stream(&self.stream)
            .await
            .with_context(|| format!("opening the JetStream stream {}", self.stream))
    }

    /// Creates the stream, or sets its retention to `retention` ticks if it exists.
    async fn ensure_stream(&self, retention: u64) -> anyhow::Result<()> {
        self.jetstream
            .create_or_update_stream(stream::Config {
                name: self.stream.clone(),
                subjects: vec![format!("{SUBJECT_PREFIX}.>")],
                max_messages: retention as i64,
                discard: stream::DiscardPolicy::Old,
                storage: stream::StorageType::File,
                duplicate_window: DUPLICATE_WINDOW,
                ..Default::default()
            })
            .await
            .with_context(|| format!("creating the JetStream stream {}", self.stream))?;
        Ok(())
    }

    /// The stream that keeps the one newest copy of the market's listings. (A plain stream:
    /// async-nats 0.50's key-value API does not parse nats-server 2.9's answers.)
    async fn market_stream(&self) -> anyhow::Result<stream::Stream> {
        self.jetstream
            .get_or_create_stream(stream::Config {
                name: format!("{}_MARKET", self.stream),
                subjects: vec![self.market_subject()],
                max_messages_per_subject: 1,
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .context("opening the stream of the market's listings")
    }

    fn market_subject(&self) -> String {
        format!("tickscope.{}.market", self.stream)
    }

    /// The market the stream's ticks belong to, if a generator has stored one.
    async fn stored_universe(&self) -> anyhow::Result<Option<Vec<Listing>>> {
        let stream = self.market_stream().await?;
        let message = match stream
            .get_last_raw_message_by_subject(&self.market_subject())
            .await
        {
            Ok(message) => message,
            Err(err) if err.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(None),
            Err(err) => return Err(err.into()),
        };
        let listings = serde_json::from_slice(&message.payload)
            .context("reading the market stored in NATS")?;
        Ok(Some(listings))
    }

    async fn store_universe(&self, listings: &[Listing]) -> anyhow::Result<()> {
        let json = serde_json::to_vec(listings).expect("listings encode");
        self.market_stream().await?;
        self.jetstream
            .publish(self.market_subject(), json.into())
            .await?
            .await?;
        Ok(())
    }

    /// The newest tick in the stream, if any, with its stream sequence.
    async fn last_tick(&self) -> anyhow::Result<Option<(u64, Tick)>> {
        let mut stream = self.stream().await?;
        let last = stream.info().await?.state.last_sequence;
        if last == 0 {
            return Ok(None);
        }
        let message = stream.get_raw_message(last).await?;
        Ok(Some((last, decode_tick(&message.payload)?)))
    }

    /// The newest price of each symbol that has one in the stream, by symbol id.
    async fn last_prices(&self, universe: &Universe) -> anyhow::Result<Vec<(u16, f64)>> {
        let stream = self.stream().await?;
        let mut prices = Vec::new();
        for (id, listing) in universe.listings().iter().enumerate() {
            let subject = format!("{SUBJECT_PREFIX}.{}", listing.symbol);
            match stream.get_last_raw_message_by_subject(&subject).await {
                Ok(message) => prices.push((id as u16, decode_tick(&message.payload)?.price)),
                Err(err) if err.kind() == LastRawMessageErrorKind::NoMessageFound => {}
                Err(err) => return Err(err.into()),
            }
        }
        Ok(prices)
    }

    /// Publishes `ticks` pipelined, then waits for every acknowledgement; returns the stream
    /// sequence of the last.
    async fn publish(&self, subjects: &[String], ticks: &[StoredTick]) -> anyhow::Result<u64> {
        let mut acks = Vec::with_capacity(ticks.len());
        for tick in ticks {
            let mut headers = HeaderMap::new();
            headers.insert(header::NATS_MESSAGE_ID, tick.seq.to_string().as_str());
            let ack = self
                .jetstream
                .publish_with_headers(
                    subjects[tick.symbol_id as usize].clone(),
                    headers,
                    Bytes::copy_from_slice(tick.json.as_bytes()),
                )
                .await?;
            acks.push(ack);
        }
        let mut last = 0;
        for ack in acks {
            last = ack.await?.sequence;
        }
        Ok(last)
    }
}

/// Runs `attempt` until it succeeds or `shutdown`, with a growing pause between tries. Used
/// at start, when the broker may not be up yet.
async fn retry<T, F>(
    what: &str,
    shutdown: &CancellationToken,
    mut attempt: impl FnMut() -> F,
) -> anyhow::Result<T>
where
    F: Future<Output = anyhow::Result<Option<T>>>,
{
    let mut pause = Duration::from_millis(100);
    loop {
        match attempt().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => info!("{what}: waiting"),
            Err(err) => warn!("{what}: {err:#}; retrying"),
        }
        tokio::select! {
            () = sleep(pause) => {}
            () = shutdown.cancelled() => return Err(anyhow!("stopped while {what}")),
        }
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

fn decode_tick(payload: &[u8]) -> anyhow::Result<Tick> {
    serde_json::from_slice(payload).context("a message that is not a tick")
}
