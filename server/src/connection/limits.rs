//! Admission limits: connections in all and per IP, long polls per IP, and how often one
//! connection may poll. Each refusal is an [`ApiError`] with `Retry-After`.
//!
//! "Connections" are the long-lived ones: WebSocket and SSE streams and held long polls. A
//! [`Slot`] holds one of them until it is dropped. Counters are plain integers behind a std
//! mutex, taken for a few instructions and never across an await.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use actix_web::HttpRequest;

use super::forwarded::ClientAddr;
use crate::config::Config;
use crate::error::ApiError;

/// What a connection is, for the limits that apply to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Stream,
    LongPoll,
}

/// Polls one connection may make back to back before the interval applies.
pub const POLL_BURST: f64 = 3.0;

/// How long a refused client is told to wait before trying again.
const RETRY_AFTER: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct Limits {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    max_connections: usize,
    max_per_ip: usize,
    max_long_polls_per_ip: usize,
    min_poll_interval: Duration,
    clients: ClientAddr,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    open: usize,
    per_ip: HashMap<IpAddr, PerIp>,
    /// Each polling connection's (peer address's) tokens and when they were counted.
    /// Per connection and page meter: on HTTP/2 one connection carries every tab's polls.
    polls: HashMap<(SocketAddr, Option<u64>), (f64, Instant)>,
    /// `polls` is swept of full buckets when it grows past this.
    sweep_at: usize,
}

#[derive(Debug, Default, Clone, Copy)]
struct PerIp {
    open: usize,
    long_polls: usize,
}

/// One admitted connection; dropping it gives its place back.
#[derive(Debug)]
pub struct Slot {
    limits: Limits,
    ip: IpAddr,
    kind: Kind,
}

/// 0 in a limit's setting means no limit.
fn limit(setting: u64) -> usize {
    match setting {
        0 => usize::MAX,
        n => n as usize,
    }
}

impl Limits {
    pub fn new(config: &Config) -> Self {
        Self {
            inner: Arc::new(Inner {
                max_connections: limit(config.max_connections),
                max_per_ip: limit(config.max_connections_per_ip),
                max_long_polls_per_ip: limit(config.max_long_polls_per_ip),
                min_poll_interval: Duration::from_millis(config.min_poll_interval_ms),
                clients: ClientAddr::new(&config.trusted_proxies),
                state: Mutex::default(),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Counters only; a panic elsewhere cannot leave them half-written.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Admits one more connection of `kind` from `ip`, or says which limit it hit.
    pub fn admit(&self, ip: IpAddr, kind: Kind) -> Result<Slot, ApiError> {
        let inner = &self.inner;
        let mut state = self.state();
        if state.open >= inner.max_connections {
            return Err(ApiError::Unavailable {
                message: format!(
                    "the server holds its most connections ({}); try again later",
                    inner.max_connections
                ),
                retry_after: RETRY_AFTER,
            });
        }
        let per_ip = state.per_ip.get(&ip).copied().unwrap_or_default();
        if per_ip.open >= inner.max_per_ip {
            return Err(ApiError::TooMany {
                message: format!(
                    "{ip} holds its most connections ({}); close one first",
                    inner.max_per_ip
                ),
                retry_after: RETRY_AFTER,
            });
        }
        if kind == Kind::LongPoll && per_ip.long_polls >= inner.max_long_polls_per_ip {
            return Err(ApiError::TooMany {
                message: format!(
                    "{ip} holds its most long polls at once ({}); wait for one to answer",
                    inner.max_long_polls_per_ip
                ),
                retry_after: RETRY_AFTER,
            });
        }
        state.open += 1;
        let entry = state.per_ip.entry(ip).or_default();
        entry.open += 1;
        if kind == Kind::LongPoll {
            entry.long_polls += 1;
        }
        Ok(Slot {
            limits: self.clone(),
            ip,
            kind,
        })
    }

    /// Refuses a poll when the connection polls faster than one per minimum interval on
    /// average, per page meter (`meter=`) it names: over HTTP/2 one connection carries the
    /// polls of every tab and transport of a browser. A burst of [`POLL_BURST`] is let
    /// through, so a page switching between polling rates on one keep-alive connection is
    /// not refused.
    pub fn poll(&self, peer: SocketAddr, meter: Option<u64>) -> Result<(), ApiError> {
        let peer = (peer, meter);
        let min = self.inner.min_poll_interval;
        if min.is_zero() {
            return Ok(());
        }
        let now = Instant::now();
        let mut state = self.state();
        // A token bucket: POLL_BURST tokens, one back per interval, one spent per poll.
        let (tokens, last) = state.polls.get(&peer).copied().unwrap_or((POLL_BURST, now));
        let tokens =
            (tokens + now.duration_since(last).as_secs_f64() / min.as_secs_f64()).min(POLL_BURST);
        if tokens < 1.0 {
            return Err(ApiError::TooMany {
                message: format!(
                    "polling faster than once per {} ms, the minimum interval",
                    min.as_millis()
                ),
                retry_after: min.mul_f64(1.0 - tokens),
            });
        }
        state.polls.insert(peer, (tokens - 1.0, now));
        if state.polls.len() > state.sweep_at {
            // A connection idle for a whole burst's worth of intervals is back to full.
            let full = min.mul_f64(POLL_BURST);
            state
                .polls
                .retain(|_, &mut (_, last)| now.duration_since(last) < full);
            state.sweep_at = (state.polls.len() * 2).max(1024);
        }
        Ok(())
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.state().open
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.limits.state();
        state.open -= 1;
        if let Some(entry) = state.per_ip.get_mut(&self.ip) {
            entry.open -= 1;
            if self.kind == Kind::LongPoll {
                entry.long_polls -= 1;
            }
            if entry.open == 0 {
                state.per_ip.remove(&self.ip);
            }
        }
    }
}

impl Limits {
    /// The address a request counts against: its client's, behind a trusted proxy too.
    pub fn client_ip(&self, req: &HttpRequest) -> IpAddr {
        self.inner.clients.ip(req.peer_addr(), req.headers())
    }

    /// Whom a poll's rate is kept for (with its meter): the connection it came on, or behind
    /// a trusted proxy, whose connections to this server carry many clients' polls, the
    /// client's address.
    pub fn poller(&self, req: &HttpRequest) -> SocketAddr {
        let peer = peer(req);
        let client = self.client_ip(req);
        if client == peer.ip() {
            peer
        } else {
            SocketAddr::new(client, 0)
        }
    }
}

/// The connection's peer as this server sees it (a proxy's, behind one).
pub fn peer(req: &HttpRequest) -> SocketAddr {
    req.peer_addr()
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(adjust: impl FnOnce(&mut Config)) -> Limits {
        let mut config = Config::defaults();
        adjust(&mut config);
        Limits::new(&config)
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn counts_connections_in_all_and_per_ip_and_gives_them_back() {
        let limits = limits(|config| {
            config.max_connections = 3;
            config.max_connections_per_ip = 2;
        });
        let a1 = limits.admit(A, Kind::Stream).unwrap();
        let _a2 = limits.admit(A, Kind::Stream).unwrap();
        assert!(matches!(
            limits.admit(A, Kind::Stream),
            Err(ApiError::TooMany { .. })
        ));
        let _b1 = limits.admit(B, Kind::Stream).unwrap();
        assert!(matches!(
            limits.admit(B, Kind::Stream),
            Err(ApiError::Unavailable { .. })
        ));
        drop(a1);
        assert_eq!(limits.open(), 2);
        limits.admit(B, Kind::Stream).unwrap();
    }

    #[test]
    fn long_polls_have_their_own_limit_per_ip() {
        let limits = limits(|config| config.max_long_polls_per_ip = 1);
        let held = limits.admit(A, Kind::LongPoll).unwrap();
        assert!(limits.admit(A, Kind::LongPoll).is_err());
        assert!(
            limits.admit(A, Kind::Stream).is_ok(),
            "streams are not long polls"
        );
        assert!(
            limits.admit(B, Kind::LongPoll).is_ok(),
            "another IP is another client"
        );
        drop(held);
        assert!(limits.admit(A, Kind::LongPoll).is_ok());
    }

    #[test]
    fn polls_faster_than_the_interval_are_refused_per_connection_after_a_burst() {
        let limits = limits(|config| config.min_poll_interval_ms = 60_000);
        let one: SocketAddr = "10.0.0.1:4000".parse().unwrap();
        let other: SocketAddr = "10.0.0.1:4001".parse().unwrap();
        for _ in 0..3 {
            limits.poll(one, Some(7)).unwrap();
        }
        let Err(ApiError::TooMany { retry_after, .. }) = limits.poll(one, Some(7)) else {
            panic!("a fourth poll at once is refused");
        };
        assert!(retry_after > Duration::from_secs(59));
        limits.poll(other, Some(7)).unwrap();
        // Another page's polls on the same (HTTP/2) connection have their own bucket.
        limits.poll(one, Some(8)).unwrap();
    }

    #[test]
    fn zero_means_no_limit() {
        let limits = limits(|config| {
            config.max_connections_per_ip = 0;
            config.min_poll_interval_ms = 0;
        });
        let slots: Vec<_> = (0..5000)
            .map(|_| limits.admit(A, Kind::Stream).unwrap())
            .collect();
        assert_eq!(slots.len(), 5000);
        let peer: SocketAddr = "10.0.0.1:4000".parse().unwrap();
        for _ in 0..10 {
            limits.poll(peer, None).unwrap();
        }
    }
}
