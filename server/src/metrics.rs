//! Prometheus metrics, served as text at `/metrics`.
//!
//! Handles to every per-transport series are made once at start, so the hot path only
//! touches atomics. `bytes_sent` counts payload bytes (HTTP bodies, WebSocket message
//! payloads, SSE event text), without HTTP headers or WebSocket framing; `wire_bytes` counts
//! everything on the wire, both ways ([`crate::connection::wire`]).

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::query::Reconnect;

/// The six ways the feed travels.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Transport {
    Polling,
    LongPolling,
    WebSocket,
    Sse,
    /// HTTP streaming: newline-delimited JSON in one long response (`/api/stream`).
    Stream,
    /// WebTransport over HTTP/3 (`--webtransport-addr`), a QUIC stream per batch.
    WebTransport,
}

impl Transport {
    pub const ALL: [Transport; 6] = [
        Transport::Polling,
        Transport::LongPolling,
        Transport::WebSocket,
        Transport::Sse,
        Transport::Stream,
        Transport::WebTransport,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Polling => "polling",
            Transport::LongPolling => "long_polling",
            Transport::WebSocket => "websocket",
            Transport::Sse => "sse",
            Transport::Stream => "stream",
            Transport::WebTransport => "webtransport",
        }
    }
}

impl EncodeLabelValue for Transport {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransportLabel {
    transport: Transport,
}

impl EncodeLabelValue for Reconnect {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        let text = match self {
            Reconnect::Silent => "silent",
            Reconnect::Error => "error",
        };
        std::fmt::Write::write_str(encoder, text)
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReconnectLabel {
    transport: Transport,
    reason: Reconnect,
}

/// The series of one transport.
#[derive(Debug, Clone, Default)]
pub struct TransportMetrics {
    /// HTTP requests: one per poll, one per WebSocket handshake or SSE stream.
    pub requests: Counter,
    /// Open WebSocket and SSE connections, held long polls; polling holds none.
    pub clients: Gauge,
    /// Messages sent: poll answers, WebSocket messages, SSE events (heartbeats included).
    pub messages_sent: Counter,
    pub bytes_sent: Counter,
    /// Clients dropped for taking no data while data waited (slow consumers).
    pub slow_dropped: Counter,
    /// Clients dropped for silence: no message and no pong within the client timeout.
    pub silent_dropped: Counter,
    /// Connections the kernel closed because the peer stopped acknowledging ([`crate::connection::peer`]).
    pub dead_peers: Counter,
    /// Frames a client's socket did not take whole at once, on the connections the fan-out
    /// writes to: finished by the connection's own task (backpressure).
    pub backpressured: Counter,
}

/// Every metric of the server.
pub struct Metrics {
    registry: Registry,
    pub ticks_published: Counter,
    pub empty_polls: Counter,
    pub long_poll_timeouts: Counter,
    /// Batches framed for sending; clients at the same position share one frame.
    pub frames_encoded: Counter,
    transports: [TransportMetrics; 6],
    reconnects: Family<ReconnectLabel, Counter>,
    heap_allocated: Gauge,
    heap_free: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tickscope");
        let ticks_published = Counter::default();
        let empty_polls = Counter::default();
        let long_poll_timeouts = Counter::default();
        let frames_encoded = Counter::default();
        registry.register(
            "ticks_published",
            "Ticks the simulator published",
            ticks_published.clone(),
        );
        registry.register(
            "empty_polls",
            "Polls answered with no ticks",
            empty_polls.clone(),
        );
        registry.register(
            "long_poll_timeouts",
            "Long polls answered empty at their timeout",
            long_poll_timeouts.clone(),
        );
        registry.register(
            "frames_encoded",
            "Batches framed for sending; every client at the same cursor shares one",
            frames_encoded.clone(),
        );
        let requests = Family::<TransportLabel, Counter>::default();
        let clients = Family::<TransportLabel, Gauge>::default();
        let messages_sent = Family::<TransportLabel, Counter>::default();
        let bytes_sent = Family::<TransportLabel, Counter>::default();
        let slow_dropped = Family::<TransportLabel, Counter>::default();
        let silent_dropped = Family::<TransportLabel, Counter>::default();
        let dead_peers = Family::<TransportLabel, Counter>::default();
        let backpressured = Family::<TransportLabel, Counter>::default();
        registry.register(
            "backpressured_writes",
            "Frames a client's full socket did not take at once, finished by the connection's \
             own task (WebSocket, and SSE and HTTP streaming over HTTP/1.1)",
            backpressured.clone(),
        );
        registry.register(
            "slow_clients_dropped",
            "Clients dropped for taking no data while data waited",
            slow_dropped.clone(),
        );
        registry.register(
            "silent_clients_dropped",
            "Clients dropped for sending nothing, not even a pong, within the client timeout",
            silent_dropped.clone(),
        );
        registry.register(
            "dead_peers",
            "Connections the kernel closed because their peer acknowledged nothing for \
             --dead-peer-timeout-ms (a vanished client: sent data unacknowledged, or keepalive \
             probes unanswered)",
            dead_peers.clone(),
        );
        registry.register("requests", "HTTP requests per transport", requests.clone());
        registry.register(
            "clients",
            "Connected clients per transport",
            clients.clone(),
        );
        registry.register(
            "messages_sent",
            "Poll answers, WebSocket messages and SSE events sent per transport",
            messages_sent.clone(),
        );
        registry.register(
            "bytes_sent",
            "Payload bytes sent per transport",
            bytes_sent.clone(),
        );
        let heap_allocated = Gauge::default();
        let heap_free = Gauge::default();
        registry.register(
            "heap_allocated_bytes",
            "Bytes the allocator has handed out and not had back (glibc mallinfo2; 0 elsewhere)",
            heap_allocated.clone(),
        );
        registry.register(
            "heap_free_bytes",
            "Bytes the allocator holds free in its arenas, counted in RSS but not in use",
            heap_free.clone(),
        );
        let reconnects = Family::<ReconnectLabel, Counter>::default();
        registry.register(
            "client_reconnects",
            "Streams opened again by clients, by the reason they gave: silent (the client heard \
             nothing for two heartbeat intervals) or error",
            reconnects.clone(),
        );
        let transports = Transport::ALL.map(|transport| {
            let label = TransportLabel { transport };
            TransportMetrics {
                requests: requests.get_or_create(&label).clone(),
                clients: clients.get_or_create(&label).clone(),
                messages_sent: messages_sent.get_or_create(&label).clone(),
                bytes_sent: bytes_sent.get_or_create(&label).clone(),
                slow_dropped: slow_dropped.get_or_create(&label).clone(),
                silent_dropped: silent_dropped.get_or_create(&label).clone(),
                dead_peers: dead_peers.get_or_create(&label).clone(),
                backpressured: backpressured.get_or_create(&label).clone(),
            }
        });
        Self {
            registry,
            ticks_published,
            empty_polls,
            long_poll_timeouts,
            frames_encoded,
            transports,
            reconnects,
            heap_allocated,
            heap_free,
        }
    }

    /// Counts a stream opened again by its client, for `reason`.
    pub fn reconnected(&self, transport: Transport, reason: Reconnect) {
        self.reconnects
            .get_or_create(&ReconnectLabel { transport, reason })
            .inc();
    }

    pub fn transport(&self, transport: Transport) -> &TransportMetrics {
        &self.transports[transport as usize]
    }

    /// Counts a client of `transport` until the guard is dropped.
    pub fn client(&self, transport: Transport) -> ClientGuard {
        let gauge = self.transport(transport).clients.clone();
        gauge.inc();
        ClientGuard(gauge)
    }

    /// Counts one message of `bytes` payload bytes sent over `transport`.
    pub fn sent(&self, transport: Transport, bytes: usize) {
        let series = self.transport(transport);
        series.messages_sent.inc();
        series.bytes_sent.inc_by(bytes as u64);
    }

    /// The registry, for the series another module owns (the wire totals, the cluster's).
    pub fn registry(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        if let Some(heap) = heap() {
            self.heap_allocated.set(heap.allocated as i64);
            self.heap_free.set(heap.free as i64);
        }
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// What the allocator holds, for telling a leak (allocated grows) from fragmentation (free
/// grows) in a soak.
struct Heap {
    allocated: usize,
    free: usize,
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn heap() -> Option<Heap> {
    // SAFETY: mallinfo2 takes no arguments and returns a plain struct of counters; glibc
    // computes it under its arena locks.
    let info = unsafe { libc::mallinfo2() };
    Some(Heap {
        allocated: info.uordblks + info.hblkhd,
        free: info.fordblks,
    })
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn heap() -> Option<Heap> {
    None
}

/// Holds one count in a clients gauge; dropping it gives the count back.
pub struct ClientGuard(Gauge);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_per_transport_series() {
        let metrics = Metrics::new();
        metrics.ticks_published.inc_by(5);
        metrics.sent(Transport::Sse, 10);
        let guard = metrics.client(Transport::WebSocket);
        let text = metrics.render();
        assert!(text.contains("tickscope_ticks_published_total 5"), "{text}");
        assert!(
            text.contains(r#"tickscope_bytes_sent_total{transport="sse"} 10"#),
            "{text}"
        );
        assert!(
            text.contains(r#"tickscope_clients{transport="websocket"} 1"#),
            "{text}"
        );
        let allocated = text
            .lines()
            .find_map(|line| line.strip_prefix("tickscope_heap_allocated_bytes "))
            .and_then(|value| value.parse::<u64>().ok());
        if cfg!(all(target_os = "linux", target_env = "gnu")) {
            assert!(allocated > Some(0), "the heap in use shows: {text}");
        }
        drop(guard);
        assert!(
            metrics
                .render()
                .contains(r#"tickscope_clients{transport="websocket"} 0"#)
        );
    }
}
