//! The server's settings: one struct, read from flags and `TICKSCOPE_*` variables by clap, and
//! handed to everything that needs it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// What one tickscope process does; see docs/SCALE-OUT.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// Simulator and edge in one process, over the in-process feed; no broker.
    All,
    /// Simulates and publishes the feed to NATS JetStream; serves only /healthz and /metrics.
    Generator,
    /// Serves clients from the feed in NATS JetStream.
    Edge,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::All => "all",
            Role::Generator => "generator",
            Role::Edge => "edge",
        }
    }
}

/// tickscope: one simulated stock-ticker feed, served by polling, long polling, WebSocket and
/// Server-Sent Events, with the browser app on the same port.
#[derive(Debug, Clone, Parser)]
#[command(name = "tickscope", version, about, long_about = None)]
pub struct Config {
    /// What this process does: `all` (simulator and edge, no broker), `generator` (simulates and
    /// publishes to NATS) or `edge` (serves clients from NATS).
    #[arg(long, env = "TICKSCOPE_ROLE", value_enum, default_value_t = Role::All)]
    pub role: Role,

    /// The NATS server generators and edges use (JetStream must be on: `nats-server -js`).
    #[arg(
        long,
        env = "TICKSCOPE_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub nats_url: String,

    /// The JetStream stream that carries the ticks, on subjects `ticks.<SYMBOL>`. Its
    /// retention is `--retention` messages, set by the generator.
    #[arg(long, env = "TICKSCOPE_NATS_STREAM", default_value = "TICKSCOPE_TICKS",
          value_parser = parse_stream_name)]
    pub nats_stream: String,

    /// An edge reports its feed as stale in /healthz and /metrics when neither a tick nor the
    /// generator's heartbeat has come for this long, in milliseconds.
    #[arg(long, env = "TICKSCOPE_STALE_AFTER_MS", default_value_t = 3_000,
          value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub stale_after_ms: u64,

    /// Address to listen on.
    #[arg(long, env = "TICKSCOPE_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,

    /// Number of simulated symbols: the first 12 are named companies, more get generated names.
    #[arg(long, env = "TICKSCOPE_SYMBOLS", default_value_t = 12,
          value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub symbols: u16,

    /// Ticks per second over all symbols (Poisson arrivals). 0 pauses the feed after the
    /// opening quotes.
    #[arg(long, env = "TICKSCOPE_RATE", default_value_t = 50.0, value_parser = parse_rate)]
    pub rate: f64,

    /// Seed of the simulation; the same seed gives the same prices, symbols and volumes.
    /// Without it every run differs.
    #[arg(long, env = "TICKSCOPE_SEED")]
    pub seed: Option<u64>,

    /// Simulated market seconds per real second. Volatilities are annual, so at 1 prices move
    /// as slowly as a real stock's; the default makes a 15-minute chart show a trading day's
    /// worth of movement.
    #[arg(long, env = "TICKSCOPE_SPEED", default_value_t = 30.0, value_parser = parse_speed)]
    pub speed: f64,

    /// Ticks kept for resuming from a cursor; an older cursor gets `gap: true`.
    #[arg(long, env = "TICKSCOPE_RETENTION", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub retention: u64,

    /// The seq before this run's first tick. By default it is the start time in Unix
    /// microseconds: seqs then only grow across restarts (at most 10^6 ticks/s), so a cursor
    /// from an earlier run is always behind the window and resumes as a gap, never on another
    /// run's ticks.
    #[arg(long, env = "TICKSCOPE_SEQ_BASE")]
    pub seq_base: Option<u64>,

    /// Most ticks in one batch; a client further behind gets the rest in the next batch.
    #[arg(long, env = "TICKSCOPE_MAX_BATCH_TICKS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_batch_ticks: u64,

    /// Each worker's fan-out (WebSocket, SSE, HTTP streaming) sends a tick no sooner than this
    /// many times as long as its last pass over its connections took, counted from the tick's
    /// `ts`, so ticks that arrive meanwhile go out with it, in the same write to each socket. A
    /// wait under a millisecond is skipped and none is longer than 100 ms; 0 sends each publish
    /// at once.
    #[arg(long, env = "TICKSCOPE_FANOUT_WAIT", default_value_t = 1.25,
          value_parser = parse_fanout_wait)]
    pub fanout_wait: f64,

    /// Most symbols in one subscription or query.
    #[arg(long, env = "TICKSCOPE_MAX_SYMBOLS", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub max_symbols: u64,

    /// Long-poll hold time when the client names none, in milliseconds.
    #[arg(long, env = "TICKSCOPE_LONG_POLL_TIMEOUT_MS", default_value_t = 25_000)]
    pub long_poll_timeout_ms: u64,

    /// Longest long-poll hold time a client may ask for with `timeout_ms`, in milliseconds.
    #[arg(
        long,
        env = "TICKSCOPE_LONG_POLL_MAX_TIMEOUT_MS",
        default_value_t = 60_000
    )]
    pub long_poll_max_timeout_ms: u64,

    /// Largest WebSocket message a client may send, in bytes; a larger one closes the
    /// connection with 1009.
    #[arg(long, env = "TICKSCOPE_MAX_WS_MESSAGE_BYTES", default_value_t = 4096,
          value_parser = clap::value_parser!(u64).range(64..=1_048_576))]
    pub max_ws_message_bytes: u64,

    /// A client further behind than this many ticks (a slow consumer, or a poll with an old
    /// cursor) gets the latest quote of each symbol, flagged `"gap":true,"conflated":true`,
    /// instead of the backlog.
    #[arg(long, env = "TICKSCOPE_CONFLATE_AFTER_TICKS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub conflate_after_ticks: u64,

    /// A WebSocket or SSE client that takes no data for this long while data waits for it is
    /// dropped (WebSocket close 1008 "too slow"), in milliseconds.
    #[arg(long, env = "TICKSCOPE_SLOW_CLIENT_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub slow_client_timeout_ms: u64,

    /// How often the server pings each WebSocket client, in milliseconds.
    #[arg(long, env = "TICKSCOPE_WS_HEARTBEAT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub ws_heartbeat_ms: u64,

    /// A WebSocket client silent (no pong, no message) this long is dropped, in milliseconds.
    #[arg(long, env = "TICKSCOPE_WS_CLIENT_TIMEOUT_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub ws_client_timeout_ms: u64,

    /// Most messages (of any kind, pings included) a WebSocket client may send in one second;
    /// more close the connection with 1008.
    #[arg(long, env = "TICKSCOPE_MAX_WS_MESSAGES_PER_S", default_value_t = 50,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_ws_messages_per_s: u64,

    /// Time a client has to send a whole request head, in milliseconds; a slower one (a
    /// half-open connection, a slowloris) gets 408 and is closed.
    #[arg(long, env = "TICKSCOPE_REQUEST_HEAD_TIMEOUT_MS", default_value_t = 5_000,
          value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub request_head_timeout_ms: u64,

    /// A peer that acknowledges nothing for this long is dead and its connection is closed, in
    /// milliseconds: TCP_USER_TIMEOUT on every accepted connection, with keepalive probes after
    /// half of it idle. This is how dead SSE and long-poll peers are found; WebSocket peers are
    /// also pinged.
    #[arg(long, env = "TICKSCOPE_DEAD_PEER_TIMEOUT_MS", default_value_t = 20_000,
          value_parser = clap::value_parser!(u64).range(1_000..=600_000))]
    pub dead_peer_timeout_ms: u64,

    /// How often an SSE stream gets a heartbeat event, so proxies keep it open and pages can
    /// tell a quiet feed from a dead one, in milliseconds.
    #[arg(long, env = "TICKSCOPE_SSE_HEARTBEAT_MS", default_value_t = 15_000,
          value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub sse_heartbeat_ms: u64,

    /// Most long-lived connections in all (WebSocket, SSE, held long polls); more get 503
    /// with Retry-After. 0: no limit.
    #[arg(long, env = "TICKSCOPE_MAX_CONNECTIONS", default_value_t = 20_000)]
    pub max_connections: u64,

    /// Most long-lived connections from one IP address; more get 429 with Retry-After.
    /// 0: no limit.
    #[arg(
        long,
        env = "TICKSCOPE_MAX_CONNECTIONS_PER_IP",
        default_value_t = 1_000
    )]
    pub max_connections_per_ip: u64,

    /// Most long polls held at once for one IP address; more get 429. 0: no limit.
    #[arg(long, env = "TICKSCOPE_MAX_LONG_POLLS_PER_IP", default_value_t = 100)]
    pub max_long_polls_per_ip: u64,

    /// Shortest average time between two polls on one connection and page meter (`meter=`;
    /// on HTTP/2 one connection carries every tab's polls), in milliseconds, after a burst of
    /// 3; a sooner poll gets 429 with Retry-After. 0: no limit.
    #[arg(long, env = "TICKSCOPE_MIN_POLL_INTERVAL_MS", default_value_t = 100)]
    pub min_poll_interval_ms: u64,

    /// Origins whose pages may open WebSocket and SSE streams, besides the server's own
    /// (comma-separated, like `https://app.example.com`; `*` allows any). Requests without an
    /// `Origin` header (not from a browser) are always allowed.
    #[arg(long, env = "TICKSCOPE_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Origins allowed to call the HTTP API from another site's pages (CORS;
    /// comma-separated, `*` for any). Off by default.
    #[arg(long, env = "TICKSCOPE_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,

    /// The control socket of a network lab this server runs behind (`just lab` gives it):
    /// `/api/lab` then reads and switches the lab's profile for the page.
    #[arg(long, env = "TICKSCOPE_LAB_CONTROL")]
    pub lab_control: Option<PathBuf>,

    /// A PEM certificate chain: with `--tls-key`, the port serves HTTPS only, offering
    /// HTTP/2 and HTTP/1.1 by ALPN (WebSocket stays on HTTP/1.1). `just run --tls` makes one
    /// for localhost.
    #[arg(long, env = "TICKSCOPE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key of `--tls-cert` (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "TICKSCOPE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// A second HTTPS address that offers only HTTP/1.1 (needs `--tls-cert`), so compare
    /// mode can run the HTTP transports over HTTP/1.1 beside HTTP/2 in one page: a browser
    /// picks one protocol per origin. Pages of the main port may call it (CORS, streams).
    #[arg(long, env = "TICKSCOPE_HTTP1_ADDR", requires = "tls_cert")]
    pub http1_addr: Option<SocketAddr>,

    /// A UDP address for WebTransport over HTTP/3 (`/api/webtransport`); off unless given.
    /// Its certificate is made by the server, short-lived and rotated
    /// (`--webtransport-cert-lifetime-s`); pages pin it by hash (`GET /api/webtransport`).
    #[arg(long, env = "TICKSCOPE_WEBTRANSPORT_ADDR")]
    pub webtransport_addr: Option<SocketAddr>,

    /// Where browsers reach this process's WebTransport endpoint, as `https://HOST:PORT`,
    /// when not at the host the page came from: behind a reverse proxy (which does not carry
    /// WebTransport), each edge's own public name and UDP port.
    #[arg(long, env = "TICKSCOPE_WEBTRANSPORT_URL", value_parser = parse_webtransport_url)]
    pub webtransport_url: Option<String>,

    /// How long each WebTransport certificate is valid, in seconds: at most 14 days, which is
    /// what browsers accept for a certificate pinned by hash. A successor is made at half its
    /// life and published beside it; the server presents the successor from three quarters on.
    #[arg(long, env = "TICKSCOPE_WEBTRANSPORT_CERT_LIFETIME_S", default_value_t = 10 * 86_400,
          value_parser = clap::value_parser!(u64).range(4..=14 * 86_400))]
    pub webtransport_cert_lifetime_s: u64,

    /// The built browser app (trunk's output), served at `/`.
    #[arg(long, env = "TICKSCOPE_STATIC_DIR", default_value = "dist")]
    pub static_dir: PathBuf,

    /// HTTP worker threads; 0 means one per core.
    #[arg(long, env = "TICKSCOPE_WORKERS", default_value_t = 0)]
    pub workers: usize,

    /// This process's name in the `tickscope-edge` header and in wire reports, so a page
    /// behind a balancer can say which edge answered: letters, digits, `.`, `_`, `-` and `:`.
    /// Default: the host name and the port, like `web1:8080`.
    #[arg(long, env = "TICKSCOPE_EDGE_NAME", value_parser = parse_edge_name)]
    pub edge_name: Option<String>,

    /// Addresses of the reverse proxies in front of this server (comma-separated IPs). A
    /// request from one of them is counted against the client `X-Forwarded-For` names (its
    /// last address that is not itself a trusted proxy) in the per-IP limits; from any other
    /// peer the header is ignored, since a client could write it.
    #[arg(long, env = "TICKSCOPE_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<std::net::IpAddr>,

    /// On shutdown, how long open requests get to finish, in milliseconds.
    #[arg(long, env = "TICKSCOPE_SHUTDOWN_TIMEOUT_MS", default_value_t = 5_000)]
    pub shutdown_timeout_ms: u64,
}

impl Config {
    /// The defaults, as `tickscope` with no flags and no environment would run; tests start
    /// from here and change what they need.
    pub fn defaults() -> Self {
        Self::parse_from(["tickscope"])
    }

    /// Checks what single flags cannot: relations between them.
    pub fn validate(&self) -> Result<(), String> {
        if self.long_poll_timeout_ms > self.long_poll_max_timeout_ms {
            return Err(format!(
                "--long-poll-timeout-ms ({}) is above --long-poll-max-timeout-ms ({})",
                self.long_poll_timeout_ms, self.long_poll_max_timeout_ms
            ));
        }
        for origin in self.allowed_origins.iter().chain(&self.cors_origins) {
            validate_origin(origin)?;
        }
        if self.ws_client_timeout_ms <= self.ws_heartbeat_ms {
            return Err(format!(
                "--ws-client-timeout-ms ({}) must be longer than --ws-heartbeat-ms ({})",
                self.ws_client_timeout_ms, self.ws_heartbeat_ms
            ));
        }
        Ok(())
    }

    /// How much longer a fan-out waits before its next pass, after one that took `last_pass`,
    /// when the oldest tick it has to send happened `waited` ago.
    pub fn fanout_wait(&self, last_pass: Duration, waited: Duration) -> Duration {
        let wait = last_pass
            .mul_f64(self.fanout_wait)
            .min(MAX_FANOUT_WAIT)
            .saturating_sub(waited);
        if wait < MIN_FANOUT_WAIT {
            Duration::ZERO
        } else {
            wait
        }
    }

    /// `--edge-name`, or the host name and the port this process listens on.
    pub fn edge_name(&self) -> String {
        if let Some(name) = &self.edge_name {
            return name.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|name| name.trim().to_owned())
            .and_then(|name| parse_edge_name(&name).ok())
            .unwrap_or_else(|| "tickscope".into());
        format!("{host}:{}", self.addr.port())
    }

    pub fn slow_client_timeout(&self) -> Duration {
        Duration::from_millis(self.slow_client_timeout_ms)
    }

    pub fn ws_heartbeat(&self) -> Duration {
        Duration::from_millis(self.ws_heartbeat_ms)
    }

    pub fn ws_client_timeout(&self) -> Duration {
        Duration::from_millis(self.ws_client_timeout_ms)
    }

    pub fn webtransport_cert_lifetime(&self) -> Duration {
        Duration::from_secs(self.webtransport_cert_lifetime_s)
    }

    pub fn stale_after(&self) -> Duration {
        Duration::from_millis(self.stale_after_ms)
    }

    pub fn sse_heartbeat(&self) -> Duration {
        Duration::from_millis(self.sse_heartbeat_ms)
    }
}

fn parse_webtransport_url(text: &str) -> Result<String, String> {
    let authority = text.strip_prefix("https://").unwrap_or("");
    let valid = authority
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
        && !authority.contains('/');
    if valid {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "a WebTransport URL is https://HOST:PORT with no path, got {text:?}"
        ))
    }
}

fn parse_edge_name(text: &str) -> Result<String, String> {
    let valid = !text.is_empty()
        && text.len() <= 64
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'));
    if valid {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "an edge name is 1 to 64 letters, digits, '.', '_', '-' or ':', got {text:?}"
        ))
    }
}

fn parse_stream_name(text: &str) -> Result<String, String> {
    let valid = !text.is_empty()
        && text.len() <= 64
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if valid {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "a stream name is 1 to 64 letters, digits, '_' or '-', got {text:?}"
        ))
    }
}

fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text
        .parse()
        .map_err(|_| format!("rate must be a number of ticks per second, got {text:?}"))?;
    if !(0.0..=1_000_000.0).contains(&rate) {
        return Err(format!(
            "rate must be between 0 and 1000000 ticks/s, got {rate}"
        ));
    }
    Ok(rate)
}

/// A shorter wait is skipped: tokio's timers count whole milliseconds.
const MIN_FANOUT_WAIT: Duration = Duration::from_millis(1);
/// The longest a fan-out waits, whatever its last pass took.
const MAX_FANOUT_WAIT: Duration = Duration::from_millis(100);

fn parse_fanout_wait(text: &str) -> Result<f64, String> {
    let wait: f64 = text
        .parse()
        .map_err(|_| format!("fanout wait must be a number, got {text:?}"))?;
    if !(0.0..=10.0).contains(&wait) {
        return Err(format!("fanout wait must be from 0 to 10, got {wait}"));
    }
    Ok(wait)
}

fn parse_speed(text: &str) -> Result<f64, String> {
    let speed: f64 = text
        .parse()
        .map_err(|_| format!("speed must be a number, got {text:?}"))?;
    if !(0.0..=100_000.0).contains(&speed) || speed == 0.0 {
        return Err(format!(
            "speed must be above 0 and at most 100000, got {speed}"
        ));
    }
    Ok(speed)
}

/// Checks the shape of a configured origin: `*`, or `scheme://host[:port]` with no path.
fn validate_origin(origin: &str) -> Result<(), String> {
    if origin == "*" {
        return Ok(());
    }
    let valid = origin.split_once("://").is_some_and(|(scheme, rest)| {
        matches!(scheme, "http" | "https") && !rest.is_empty() && !rest.contains('/')
    });
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{origin:?} is not an origin; write it as scheme://host[:port], like https://app.example.com"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let config = Config::defaults();
        assert_eq!(config.addr.to_string(), "127.0.0.1:8080");
        assert_eq!(config.symbols, 12);
        assert!(config.validate().is_ok());
    }

    #[test]
    fn bad_values_are_refused_with_reasons() {
        let err = Config::try_parse_from(["tickscope", "--rate=-1"]).unwrap_err();
        assert!(err.to_string().contains("rate must be between"));
        let config =
            Config::try_parse_from(["tickscope", "--long-poll-timeout-ms", "70000"]).unwrap();
        assert!(config.validate().unwrap_err().contains("above"));
        let err = Config::try_parse_from(["tickscope", "--edge-name", "a b"]).unwrap_err();
        assert!(err.to_string().contains("an edge name is"));
        for bad in ["http://a:1", "https://a", "https://a:1/x", "https://:1"] {
            let err = Config::try_parse_from(["tickscope", "--webtransport-url", bad]).unwrap_err();
            assert!(err.to_string().contains("https://HOST:PORT"), "{bad}");
        }
        assert!(
            Config::try_parse_from(["tickscope", "--webtransport-url", "https://[::1]:4433"])
                .is_ok()
        );
    }

    #[test]
    fn an_edge_is_named_by_flag_or_by_host_and_port() {
        let named = Config::try_parse_from(["tickscope", "--edge-name", "edge-a"]).unwrap();
        assert_eq!(named.edge_name(), "edge-a");
        let unnamed = Config::try_parse_from(["tickscope", "--addr", "127.0.0.1:9081"]).unwrap();
        assert!(
            unnamed.edge_name().ends_with(":9081"),
            "{}",
            unnamed.edge_name()
        );
    }

    #[test]
    fn a_tick_waits_as_long_as_the_last_pass_less_its_age_within_bounds() {
        let config = Config::try_parse_from(["tickscope", "--fanout-wait", "1.5"]).unwrap();
        let ms = Duration::from_millis;
        assert_eq!(config.fanout_wait(ms(10), ms(0)), ms(15));
        assert_eq!(config.fanout_wait(ms(10), ms(6)), ms(9));
        assert_eq!(
            config.fanout_wait(ms(10), ms(14) + ms(1) / 2),
            Duration::ZERO
        );
        assert_eq!(config.fanout_wait(ms(10), ms(30)), Duration::ZERO);
        assert_eq!(
            config.fanout_wait(Duration::from_micros(600), ms(0)),
            Duration::ZERO
        );
        assert_eq!(config.fanout_wait(ms(400), ms(0)), ms(100));
        let off = Config::try_parse_from(["tickscope", "--fanout-wait", "0"]).unwrap();
        assert_eq!(off.fanout_wait(ms(40), ms(0)), Duration::ZERO);
        for bad in ["-1", "11", "soon"] {
            let arg = format!("--fanout-wait={bad}");
            let err = Config::try_parse_from(["tickscope", arg.as_str()]).unwrap_err();
            assert!(err.to_string().contains("fanout wait must be"), "{err}");
        }
    }

    #[test]
    fn configured_origins_are_checked() {
        assert!(validate_origin("https://app.example.com").is_ok());
        assert!(validate_origin("http://127.0.0.1:8081").is_ok());
        assert!(validate_origin("*").is_ok());
        for bad in [
            "app.example.com",
            "https://app.example.com/path",
            "ftp://x",
            "https://",
        ] {
            assert!(validate_origin(bad).is_err(), "{bad}");
        }
    }
}
