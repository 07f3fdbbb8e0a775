//! Wire bytes: every byte each transport puts on the wire, both ways, counted where it crosses
//! the connection.
//!
//! Every accepted connection is wrapped in [`Metered`], which counts each byte the kernel
//! hands the server and each byte the server hands the kernel: the TCP payload, the same
//! bytes a packet capture of the port shows (request and response heads, chunked and SSE
//! framing, WebSocket frame headers and the client's masks, the upgrade handshake). Nothing
//! is estimated.
//!
//! The bytes are charged to what the request they belong to is for ([`attribute`], a
//! middleware that sees every request first): its transport, by route (`/api/time` by its
//! `transport=` parameter, so a transport's clock exchanges are its own cost), or `other`
//! (the app, reference data, `/metrics`); and, when the request names one with `meter=`, a
//! [`Meter`], which is how a page learns what its own transport cost. HTTP/1.1 carries one
//! request at a time, so on a connection:
//! - bytes the server writes belong to the request being answered, the last one to arrive;
//! - bytes it reads belong to the next request, whose head they are, except on an upgraded
//!   WebSocket, where everything the client sends belongs to that connection
//!   ([`Connection::stream`]).
//!
//! Browsers do not pipeline; a client that does has a head that came early charged to the
//! request before it. The totals stay exact either way.
//!
//! Over TLS ([`crate::connection::tls`]) the counter sits under TLS, so what it counts are the TLS
//! records, as a capture of the port shows them. On HTTP/1.1 the handshake is charged to the
//! connection's first request: opening a connection is a cost of what it was opened for.
//! HTTP/2 carries many requests at once on one connection, so there the handshake is `other`
//! and the bytes are charged per stream ([`h2`]).
//!
//! The totals are `tickscope_wire_bytes_total{transport, direction}` in `/metrics`. A meter's
//! totals go back to its page in a `tickscope-wire` header on each HTTP answer and in a
//! report every second on a WebSocket or SSE stream.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{HttpMessage, HttpRequest};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tickscope_shared::wire::WireReport;

use super::forwarded::ClientAddr;
use crate::error::ApiError;
use crate::feed::clock::now_us;
use crate::metrics::Transport;

mod attribute;
mod h2;
mod metered;

pub use attribute::attribute;
use attribute::parse_meter;
pub use h2::Frames;
pub use metered::Metered;

/// Meters kept at most, in all and per client address: a page uses one per transport it
/// runs, so these only bound what a client that makes up names can make the server hold.
pub const MAX_METERS: usize = 65_536;
pub const MAX_METERS_PER_IP: usize = 256;
/// A meter no connection holds is forgotten after this long without a request.
const METER_IDLE: Duration = Duration::from_secs(60);
/// How often a metered WebSocket or SSE stream reports its meter.
pub const REPORT_EVERY: Duration = Duration::from_secs(1);

/// What bytes are charged to: a transport, or everything else the server serves.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Account {
    Transport(Transport),
    Other,
}

impl Account {
    pub const ALL: [Account; 7] = [
        Account::Transport(Transport::Polling),
        Account::Transport(Transport::LongPolling),
        Account::Transport(Transport::WebSocket),
        Account::Transport(Transport::Sse),
        Account::Transport(Transport::Stream),
        Account::Transport(Transport::WebTransport),
        Account::Other,
    ];

    fn index(self) -> usize {
        match self {
            Account::Transport(transport) => transport as usize,
            Account::Other => Transport::ALL.len(),
        }
    }

    /// The account of a request for `path`, before its parameters are read.
    fn of_path(path: &str) -> Option<Account> {
        Some(Account::Transport(match path {
            "/api/poll" => Transport::Polling,
            "/api/long-poll" => Transport::LongPolling,
            "/api/ws" => Transport::WebSocket,
            "/api/sse" => Transport::Sse,
            "/api/stream" => Transport::Stream,
            _ => return None,
        }))
    }
}

impl EncodeLabelValue for Account {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        match self {
            Account::Transport(transport) => transport.encode(encoder),
            Account::Other => std::fmt::Write::write_str(encoder, "other"),
        }
    }
}

/// Which way bytes went.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Direction {
    /// Server to client.
    Down,
    /// Client to server.
    Up,
}

impl EncodeLabelValue for Direction {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        let text = match self {
            Direction::Down => "down",
            Direction::Up => "up",
        };
        std::fmt::Write::write_str(encoder, text)
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WireLabel {
    transport: Account,
    direction: Direction,
}

/// One page transport's running cost, named by the page (`meter=`).
#[derive(Debug, Default)]
pub struct Meter {
    name: u64,
    /// The edge that counts it, named in its reports.
    edge: Arc<str>,
    up: AtomicU64,
    down: AtomicU64,
    requests: AtomicU64,
    /// Seconds since the server started when a request last named it.
    used_s: AtomicU64,
}

impl Meter {
    /// The name the page gave it.
    pub fn name(&self) -> u64 {
        self.name
    }

    /// The totals so far, read now.
    pub fn report(&self) -> WireReport {
        WireReport {
            up: self.up.load(Ordering::Relaxed),
            down: self.down.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            at: now_us(),
            edge: Some(self.edge.to_string()),
        }
    }
}

/// The meters pages named, bounded in all and per address.
#[derive(Default)]
struct Meters {
    by_name: HashMap<(IpAddr, u64), Arc<Meter>>,
    per_ip: HashMap<IpAddr, usize>,
}

/// The server's wire accounts: the totals per transport and direction, and the meters.
pub struct Wire {
    totals: Family<WireLabel, Counter>,
    /// `[account][direction]`, the handles to `totals` made once.
    counters: [[Counter; 2]; 7],
    meters: Mutex<Meters>,
    started: Instant,
    /// This process's name (`--edge-name`), which every meter's report carries.
    edge: Arc<str>,
    /// Who a request's client is, for the meters per address.
    clients: ClientAddr,
}

impl Wire {
    /// The accounts of the process named `edge`, which finds clients behind proxies with
    /// `clients`.
    pub fn new(edge: &str, clients: ClientAddr) -> Arc<Self> {
        let totals = Family::<WireLabel, Counter>::default();
        let counters = Account::ALL.map(|account| {
            [Direction::Down, Direction::Up].map(|direction| {
                totals
                    .get_or_create(&WireLabel {
                        transport: account,
                        direction,
                    })
                    .clone()
            })
        });
        Arc::new(Self {
            totals,
            counters,
            meters: Mutex::new(Meters::default()),
            started: Instant::now(),
            edge: edge.into(),
            clients,
        })
    }

    /// Registers `tickscope_wire_bytes_total`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "wire_bytes",
            "TCP payload bytes on the server's connections (UDP payloads for webtransport), per \
             transport (other: the app, \
             reference data, metrics) and direction (down: to the client)",
            self.totals.clone(),
        );
    }

    fn add(&self, charge: &Charge, direction: Direction, bytes: u64) {
        self.counters[charge.account.index()][direction as usize].inc_by(bytes);
        if let Some(meter) = &charge.meter {
            let total = match direction {
                Direction::Down => &meter.down,
                Direction::Up => &meter.up,
            };
            total.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// The bytes charged to `account` going `direction` so far.
    #[cfg(test)]
    fn total(&self, account: Account, direction: Direction) -> u64 {
        self.counters[account.index()][direction as usize].get()
    }

    /// Starts the accounts of a connection just accepted.
    pub fn connection(self: &Arc<Self>) -> Rc<Connection> {
        Rc::new(Connection {
            wire: self.clone(),
            pending_up: Cell::new(0),
            pending_down: Cell::new(Some(0)),
            streaming: Cell::new(false),
            charge: RefCell::new(Charge::OTHER),
            h2: RefCell::new(None),
            handover: RefCell::new(None),
        })
    }

    /// Charges a WebTransport session's QUIC bytes (UDP payloads, both ways) since its last
    /// charge to the transport's totals and the page's meter.
    pub fn quic(&self, meter: Option<&Arc<Meter>>, down: u64, up: u64) {
        let charge = Charge {
            account: Account::Transport(Transport::WebTransport),
            meter: meter.cloned(),
        };
        self.add(&charge, Direction::Down, down);
        self.add(&charge, Direction::Up, up);
    }

    /// The meter `name` of the client at `ip` (`meter=` in a WebTransport session's URL),
    /// counting the session as one request.
    pub fn session_meter(&self, ip: IpAddr, name: &str) -> Result<Option<Arc<Meter>>, ApiError> {
        let meter = self.meter(ip, parse_meter(name)?);
        if let Some(meter) = &meter {
            meter.requests.fetch_add(1, Ordering::Relaxed);
        }
        Ok(meter)
    }

    /// The meter `name` of the client at `ip`, made if new; `None` when the client or the
    /// server holds as many as it may.
    fn meter(&self, ip: IpAddr, name: u64) -> Option<Arc<Meter>> {
        let now_s = self.started.elapsed().as_secs();
        let mut meters = self
            .meters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let meter = match meters.by_name.get(&(ip, name)) {
            Some(meter) => meter.clone(),
            None => {
                let held = meters.per_ip.get(&ip).copied().unwrap_or(0);
                if held >= MAX_METERS_PER_IP || meters.by_name.len() >= MAX_METERS {
                    meters.forget_idle(now_s);
                    let held = meters.per_ip.get(&ip).copied().unwrap_or(0);
                    if held >= MAX_METERS_PER_IP || meters.by_name.len() >= MAX_METERS {
                        return None;
                    }
                }
                let meter = Arc::new(Meter {
                    name,
                    edge: self.edge.clone(),
                    ..Meter::default()
                });
                meters.by_name.insert((ip, name), meter.clone());
                *meters.per_ip.entry(ip).or_insert(0) += 1;
                meter
            }
        };
        meter.used_s.store(now_s, Ordering::Relaxed);
        Some(meter)
    }

    /// The meters kept now.
    #[cfg(test)]
    fn meters(&self) -> usize {
        let meters = self
            .meters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        meters.by_name.len()
    }
}

impl Meters {
    /// Drops the meters no connection holds that no request has named for [`METER_IDLE`].
    fn forget_idle(&mut self, now_s: u64) {
        let idle_s = METER_IDLE.as_secs();
        let per_ip = &mut self.per_ip;
        self.by_name.retain(|(ip, _), meter| {
            let keep = Arc::strong_count(meter) > 1
                || now_s.saturating_sub(meter.used_s.load(Ordering::Relaxed)) < idle_s;
            if !keep && let Some(held) = per_ip.get_mut(ip) {
                *held -= 1;
                if *held == 0 {
                    per_ip.remove(ip);
                }
            }
            keep
        });
    }
}

/// What a request's bytes are charged to.
#[derive(Clone)]
struct Charge {
    account: Account,
    meter: Option<Arc<Meter>>,
}

impl Charge {
    const OTHER: Charge = Charge {
        account: Account::Other,
        meter: None,
    };
}

/// The meter a request named, in its extensions for the handlers that report it.
#[derive(Clone)]
struct Metering(Option<Arc<Meter>>);

/// The meter `req` named (`meter=`), if any.
pub fn meter(req: &HttpRequest) -> Option<Arc<Meter>> {
    req.extensions()
        .get::<Metering>()
        .and_then(|metering| metering.0.clone())
}

/// One connection's accounts, shared by its [`Metered`] socket and its requests (through the
/// connection's data, [`Connection::of`]). Lives on the connection's worker thread.
pub struct Connection {
    wire: Arc<Wire>,
    /// Bytes read that belong to the next request (its head), charged when it begins.
    pending_up: Cell<u64>,
    /// Bytes written before the first request (the TLS handshake's), charged to it: opening
    /// the connection is a cost of what it was opened for. `None` once it began.
    pending_down: Cell<Option<u64>>,
    /// Upgraded: what the client sends is charged as it comes.
    streaming: Cell<bool>,
    charge: RefCell<Charge>,
    /// HTTP/2: the streams' accounts; [`Metered`]'s counts then wait there to be shared.
    h2: RefCell<Option<Box<h2::Streams>>>,
    /// Where the socket goes once the current response is written, instead of being shut
    /// down: a stream the server takes out of actix-http (`transport::push`).
    handover: RefCell<Option<Handover>>,
}

/// What takes a connection's socket after its last response ([`Connection::hand_over`]).
pub type Handover = Box<dyn FnOnce(crate::connection::tls::Io)>;

impl Connection {
    /// The accounts of `req`'s connection.
    pub fn of(req: &HttpRequest) -> Option<Rc<Connection>> {
        req.conn_data::<Rc<Connection>>().cloned()
    }

    fn add(&self, direction: Direction, bytes: u64) {
        self.wire.add(&self.charge.borrow(), direction, bytes);
    }

    /// Counted under TLS on an HTTP/2 connection: waits to be shared among frames.
    fn raw(&self, direction: Direction, bytes: u64) -> bool {
        match &mut *self.h2.borrow_mut() {
            Some(streams) => {
                streams.raw[direction as usize] += bytes;
                true
            }
            None => false,
        }
    }

    fn received(&self, bytes: u64) {
        if self.raw(Direction::Up, bytes) {
            return;
        }
        if self.streaming.get() {
            self.add(Direction::Up, bytes);
        } else {
            self.pending_up.set(self.pending_up.get() + bytes);
        }
    }

    fn sent(&self, bytes: u64) {
        if self.raw(Direction::Down, bytes) {
            return;
        }
        match self.pending_down.get() {
            Some(pending) => self.pending_down.set(Some(pending + bytes)),
            None => self.add(Direction::Down, bytes),
        }
    }

    /// A request begins. On HTTP/1.1 it is charged what was read since the last one (its
    /// head), and what the server writes from now on; on HTTP/2, its stream's bytes.
    fn begin(&self, charge: Charge) {
        if let Some(streams) = &mut *self.h2.borrow_mut() {
            streams.bind(charge, &|charge, direction, bytes| {
                self.wire.add(charge, direction, bytes);
            });
            return;
        }
        *self.charge.borrow_mut() = charge;
        self.streaming.set(false);
        self.settle();
    }

    /// The handshake chose HTTP/2: the connection serves many requests at once, so its
    /// handshake is its own (`other`), and bytes are charged per stream from now on.
    fn start_h2(&self) {
        self.settle();
        *self.h2.borrow_mut() = Some(Box::new(h2::Streams::new()));
    }

    /// `plaintext` crossed TLS going `direction` on an HTTP/2 connection.
    fn h2_carried<'a>(&self, direction: Direction, plaintext: impl IntoIterator<Item = &'a [u8]>) {
        if let Some(streams) = &mut *self.h2.borrow_mut() {
            streams.carried(direction, plaintext, &|charge, direction, bytes| {
                self.wire.add(charge, direction, bytes);
            });
        }
    }

    /// Charges the bytes read and not yet charged to the current request.
    fn settle(&self) {
        let pending = self.pending_up.replace(0);
        if pending > 0 {
            self.add(Direction::Up, pending);
        }
        if let Some(pending) = self.pending_down.take()
            && pending > 0
        {
            self.add(Direction::Down, pending);
        }
    }

    /// The connection was upgraded (WebSocket), or its stream taken over: everything the
    /// client sends from now on is charged to the current request as it comes.
    pub fn stream(&self) {
        self.settle();
        self.streaming.set(true);
    }

    /// Once the current response is written (one that closes the connection), its socket
    /// goes to `to` instead of being shut down ([`crate::connection::tls::Io`]'s shutdown). If the
    /// connection ends first, `to` is dropped unused.
    pub fn hand_over(&self, to: Handover) {
        *self.handover.borrow_mut() = Some(to);
    }

    pub(crate) fn take_handover(&self) -> Option<Handover> {
        self.handover.borrow_mut().take()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Read and never followed by a request (a client that left mid-head): the last
        // request's, the nearest thing it belongs to.
        self.settle();
        // HTTP/2: TLS bytes no frame came with (the close_notify, a torn record).
        if let Some(streams) = self.h2.get_mut().take() {
            for direction in [Direction::Down, Direction::Up] {
                let raw = streams.raw[direction as usize];
                if raw > 0 {
                    self.wire.add(&Charge::OTHER, direction, raw);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection() -> (Arc<Wire>, Rc<Connection>) {
        let wire = Wire::new("test", ClientAddr::default());
        let connection = wire.connection();
        (wire, connection)
    }

    fn charge(account: Account, meter: Option<&Arc<Meter>>) -> Charge {
        Charge {
            account,
            meter: meter.cloned(),
        }
    }

    const POLL: Account = Account::Transport(Transport::Polling);
    const WS: Account = Account::Transport(Transport::WebSocket);

    #[test]
    fn a_request_is_charged_its_head_and_its_answer() {
        let (wire, connection) = connection();
        let meter = Arc::new(Meter::default());
        connection.received(300);
        connection.begin(charge(POLL, Some(&meter)));
        connection.sent(500);
        // The next request's head arrives before the next request begins.
        connection.received(310);
        assert_eq!(wire.total(POLL, Direction::Up), 300);
        connection.begin(charge(Account::Other, None));
        connection.sent(1000);
        assert_eq!(wire.total(POLL, Direction::Up), 300);
        assert_eq!(wire.total(POLL, Direction::Down), 500);
        assert_eq!(wire.total(Account::Other, Direction::Up), 310);
        assert_eq!(wire.total(Account::Other, Direction::Down), 1000);
        let report = meter.report();
        assert_eq!((report.up, report.down), (300, 500));
    }

    #[test]
    fn an_upgraded_connection_charges_what_comes_as_it_comes() {
        let (wire, connection) = connection();
        connection.received(400);
        connection.begin(charge(WS, None));
        connection.stream();
        connection.sent(129);
        connection.received(60);
        assert_eq!(wire.total(WS, Direction::Up), 460);
        assert_eq!(wire.total(WS, Direction::Down), 129);
    }

    #[test]
    fn bytes_left_unclaimed_go_to_the_last_request() {
        let (wire, connection) = connection();
        connection.begin(charge(POLL, None));
        connection.received(7);
        drop(connection);
        assert_eq!(wire.total(POLL, Direction::Up), 7);
    }

    #[test]
    fn meters_are_bounded_per_address_and_forgotten_when_idle() {
        let wire = Wire::new("test", ClientAddr::default());
        let ip: IpAddr = "127.0.0.9".parse().unwrap();
        let other: IpAddr = "127.0.0.10".parse().unwrap();
        let held: Vec<_> = (0..MAX_METERS_PER_IP as u64)
            .map(|name| wire.meter(ip, name).expect("under the limit"))
            .collect();
        assert!(
            wire.meter(ip, 1 << 40).is_none(),
            "over the per-address limit"
        );
        assert!(
            wire.meter(ip, 3).is_some(),
            "a meter it has is still its own"
        );
        assert!(
            wire.meter(other, 1).is_some(),
            "another address is not harmed"
        );
        drop(held);
        // Not yet idle for long enough: still refused.
        assert!(wire.meter(ip, 1 << 40).is_none());
        // Idle now (the clock moved on): forgotten, and the new one made.
        let mut meters = wire.meters.lock().unwrap();
        meters.forget_idle(METER_IDLE.as_secs() + 1);
        drop(meters);
        assert!(wire.meter(ip, 1 << 40).is_some());
        assert_eq!(
            wire.meters(),
            1,
            "every idle meter forgotten, the new one kept"
        );
    }
}
