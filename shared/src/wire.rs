//! The JSON shapes every transport speaks.
//!
//! These types are the contract between the server, the browser app, the load generator and
//! the tests. The server writes batches from pre-encoded ticks for speed; a test in the server
//! checks that those bytes parse into exactly these types.

use serde::{Deserialize, Serialize};

/// One trade-and-quote update of one symbol.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tick {
    /// Global sequence number over the whole feed, without holes; each run of the server
    /// starts it above every seq of the runs before (see the server's `--seq-base`).
    pub seq: u64,
    pub symbol: String,
    /// Last trade price.
    pub price: f64,
    pub bid: f64,
    pub ask: f64,
    /// Shares traded in this tick.
    pub volume: u64,
    /// When the tick happened, in Unix microseconds: the simulator's arrival time for it, so a
    /// publish that comes late counts in every client's lag.
    pub ts: i64,
}

/// Ticks after a client's cursor.
///
/// `cursor` is the seq of the newest tick of the whole feed this batch accounts for, whether
/// the client's symbol filter kept it or not: asking again with `since=cursor` goes on with no
/// tick lost and none repeated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    pub cursor: u64,
    /// `true` when the client's `since` was older than the retained window (or not from this
    /// feed). `ticks` then holds the latest quote of each requested symbol, the snapshot to
    /// resync from, and `cursor` is where the feed goes on from.
    pub gap: bool,
    pub ticks: Vec<Tick>,
}

/// The latest quote of every symbol and the cursor they are current at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub cursor: u64,
    pub quotes: Vec<Tick>,
}

/// A listed company.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SymbolInfo {
    pub symbol: String,
    pub name: String,
    pub sector: String,
    /// Opening price of the session, the base of "change since open".
    pub open: f64,
}

/// Answer of `GET /api/symbols`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SymbolList {
    pub symbols: Vec<SymbolInfo>,
}

/// One second of trading of one symbol.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candle {
    /// Start of the second, Unix seconds.
    pub t: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: u64,
    /// Ticks that fell in this second.
    pub ticks: u32,
}

/// Answer of `GET /api/history`: the candles of the last `seconds`, oldest first. Seconds in
/// which the symbol did not trade have no candle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub symbol: String,
    pub seconds: u32,
    pub candles: Vec<Candle>,
}

/// Answer of `GET /api/time`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ServerTime {
    /// Unix microseconds when the server handled the request.
    pub server_time: i64,
}

/// Answer of `GET /api/origins`: where else this server serves the page's API.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Origins {
    /// An origin offering only HTTP/1.1 (`--http1-addr`), on the host the page asked by, for
    /// compare mode's HTTP/1.1 columns; `None` when the server has none.
    pub http1: Option<String>,
    /// The WebTransport endpoint (`--webtransport-addr`, UDP) on the host the page asked by,
    /// `https://<host>:<port>`; `None` when the server has none. `/api/webtransport` names
    /// the certificates to pin.
    #[serde(default)]
    pub webtransport: Option<String>,
}

/// Answer of `GET /api/webtransport`: where the server's WebTransport endpoint is and the
/// certificates a page may pin to reach it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebTransportInfo {
    /// The session's URL on the host the page asked by, without a query:
    /// `https://<host>:<udp port>/api/webtransport`.
    pub url: String,
    /// SHA-256 hashes (lowercase hex) of the certificates the endpoint presents now or will
    /// soon, for `serverCertificateHashes`.
    pub certificate_hashes: Vec<String>,
}

/// Reads the `after` of a WebTransport batch line, which starts
/// `{"type":"batch","after":<cursor>,`: the cursor the batch continues from.
pub fn batch_after(line: &str) -> Option<u64> {
    let rest = line.strip_prefix(r#"{"type":"batch","after":"#)?;
    let end = rest.find(|c: char| !c.is_ascii_digit())?;
    rest[..end].parse().ok()
}

/// The `tickscope-edge` header every answer carries: the edge that answered (`--edge-name`),
/// the `Host` the request arrived with, and the header that shows a proxy carried it (`via`,
/// `forwarded` or `x-forwarded-for`). A page behind a proxy that adds none of those still
/// sees it: `host` is not the host the page asked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EdgeHeader {
    pub name: String,
    pub host: Option<String>,
    pub via: Option<String>,
}

impl EdgeHeader {
    pub const HEADER: &'static str = "tickscope-edge";

    /// `NAME; host=HOST; via=HEADER`, the parts after the name only when known.
    pub fn to_header(&self) -> String {
        let mut value = self.name.clone();
        for (key, part) in [("host", &self.host), ("via", &self.via)] {
            if let Some(part) = part {
                value.push_str(&format!("; {key}={part}"));
            }
        }
        value
    }

    /// Reads [`EdgeHeader::to_header`]'s form back; `None` without a name.
    pub fn from_header(value: &str) -> Option<Self> {
        let mut parts = value.split(';').map(str::trim);
        let name = parts.next().filter(|name| !name.is_empty())?.to_owned();
        let mut header = Self {
            name,
            ..Self::default()
        };
        for part in parts {
            match part.split_once('=') {
                Some(("host", host)) => header.host = Some(host.to_owned()),
                Some(("via", via)) => header.via = Some(via.to_owned()),
                _ => {}
            }
        }
        Some(header)
    }

    /// Whether a proxy carried the request of a page that asked `page_host` (its
    /// `location.host`), and what shows it.
    pub fn proxy(&self, page_host: &str) -> Option<String> {
        if let Some(via) = &self.via {
            return Some(format!("the edge got {via} headers"));
        }
        match &self.host {
            Some(host) if !host.eq_ignore_ascii_case(page_host) => Some(format!(
                "the page asked {page_host}, the edge was asked {host}"
            )),
            _ => None,
        }
    }
}

/// Body of every 4xx answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

/// What a WebSocket client sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// Replace the subscription. No `symbols` means every symbol; no `since` means live only.
    Subscribe {
        #[serde(default)]
        symbols: Option<Vec<String>>,
        #[serde(default)]
        since: Option<u64>,
    },
    /// Ask for the server's clock; `t` is echoed back untouched.
    Ping { t: f64 },
}

/// What the server sends over WebSocket, and HTTP streaming line by line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    Batch(Batch),
    Pong {
        t: f64,
        /// Unix microseconds when the server answered.
        server_time: i64,
    },
    /// The page's meter, sent every second on a metered stream (`meter=` in its URL).
    Wire(WireReport),
    /// HTTP streaming's sign of life when no tick comes, with the server's clock (Unix µs).
    Heartbeat {
        server_time: i64,
    },
    /// WebTransport's first line on the control stream: the session's batches continue from
    /// `cursor` (the `since` asked for, or the head when none was).
    Subscribed {
        cursor: u64,
    },
}

/// What a meter (one page's transport, named by `meter=` on each of its requests) has cost on
/// the wire so far: TCP payload bytes both ways, counted by the server where they cross the
/// connection, and the HTTP requests made. `at` is the server's clock (Unix µs) when it was
/// read; bytes the server wrote after that (such as the answer carrying this report) come in
/// the next one. `edge` names the process that counted them (`--edge-name`): behind a
/// balancer each edge counts only what crossed its own sockets, so a page adds up the latest
/// report of every edge.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireReport {
    /// Bytes from the client to the server.
    pub up: u64,
    /// Bytes from the server to the client.
    pub down: u64,
    pub requests: u64,
    pub at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge: Option<String>,
}

impl WireReport {
    /// The response header HTTP answers carry a meter's report in.
    pub const HEADER: &'static str = "tickscope-wire";

    /// The header's value: `up=1;down=2;requests=3;at=4`, then `;edge=NAME` when named.
    pub fn to_header(&self) -> String {
        let mut value = format!(
            "up={};down={};requests={};at={}",
            self.up, self.down, self.requests, self.at
        );
        if let Some(edge) = &self.edge {
            value.push_str(";edge=");
            value.push_str(edge);
        }
        value
    }

    /// Reads [`WireReport::to_header`]'s form back; `None` if any field is missing or bad.
    pub fn from_header(value: &str) -> Option<Self> {
        let mut report = WireReport::default();
        let mut seen = 0u8;
        for field in value.split(';') {
            let (name, number) = field.trim().split_once('=')?;
            match name {
                "up" => (report.up, seen) = (number.parse().ok()?, seen | 1),
                "down" => (report.down, seen) = (number.parse().ok()?, seen | 2),
                "requests" => (report.requests, seen) = (number.parse().ok()?, seen | 4),
                "at" => (report.at, seen) = (number.parse().ok()?, seen | 8),
                "edge" => report.edge = Some(number.to_owned()),
                _ => {}
            }
        }
        (seen == 15).then_some(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_message_is_flat_with_a_type_tag() {
        let msg = ServerMessage::Batch(Batch {
            cursor: 7,
            gap: false,
            ticks: vec![],
        });
        let json = serde_json::to_string(&msg).unwrap();
        assert_eq!(
            json,
            r#"{"type":"batch","cursor":7,"gap":false,"ticks":[]}"#
        );
    }

    #[test]
    fn wire_reports_round_trip_through_their_header() {
        let report = WireReport {
            up: 1,
            down: 22,
            requests: 333,
            at: 1_700_000_000_000_000,
            edge: None,
        };
        assert_eq!(
            report.to_header(),
            "up=1;down=22;requests=333;at=1700000000000000"
        );
        assert_eq!(
            WireReport::from_header(&report.to_header()),
            Some(report.clone())
        );
        let named = WireReport {
            edge: Some("web1:8080".into()),
            ..report.clone()
        };
        assert!(named.to_header().ends_with(";edge=web1:8080"));
        assert_eq!(
            WireReport::from_header(&named.to_header()),
            Some(named.clone())
        );
        assert!(
            serde_json::to_string(&named)
                .unwrap()
                .ends_with(r#","edge":"web1:8080"}"#)
        );
        assert_eq!(WireReport::from_header("up=1;down=2;requests=3"), None);
        assert_eq!(WireReport::from_header("up=x;down=2;requests=3;at=4"), None);
        let json = serde_json::to_string(&ServerMessage::Wire(report)).unwrap();
        assert_eq!(
            json,
            r#"{"type":"wire","up":1,"down":22,"requests":333,"at":1700000000000000}"#
        );
    }

    #[test]
    fn the_edge_header_round_trips_and_shows_a_proxy() {
        let direct = EdgeHeader {
            name: "web1:8080".into(),
            host: Some("localhost:8080".into()),
            via: None,
        };
        assert_eq!(direct.to_header(), "web1:8080; host=localhost:8080");
        assert_eq!(
            EdgeHeader::from_header(&direct.to_header()),
            Some(direct.clone())
        );
        assert_eq!(direct.proxy("localhost:8080"), None);
        // nginx's proxy_pass alone adds nothing but names the upstream as the host.
        assert!(
            direct
                .proxy("localhost:8443")
                .unwrap()
                .contains("asked localhost:8443")
        );
        let forwarded = EdgeHeader {
            via: Some("x-forwarded-for".into()),
            ..direct
        };
        assert_eq!(
            EdgeHeader::from_header("web1:8080; host=localhost:8080; via=x-forwarded-for"),
            Some(forwarded.clone())
        );
        assert!(forwarded.proxy("localhost:8080").is_some());
        assert_eq!(EdgeHeader::from_header(""), None);
    }

    #[test]
    fn subscribe_defaults_to_all_symbols_live_only() {
        let msg: ClientMessage = serde_json::from_str(r#"{"type":"subscribe"}"#).unwrap();
        assert_eq!(
            msg,
            ClientMessage::Subscribe {
                symbols: None,
                since: None
            }
        );
    }

    #[test]
    fn unknown_fields_and_types_are_rejected() {
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"subscribe","x":1}"#).is_err());
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"unsubscribe"}"#).is_err());
        assert!(
            serde_json::from_str::<ClientMessage>(r#"{"type":"subscribe","since":-1}"#).is_err()
        );
    }

    #[test]
    fn a_webtransport_batch_names_what_it_continues_from() {
        let line = r#"{"type":"batch","after":41,"cursor":43,"gap":false,"ticks":[]}"#;
        assert_eq!(batch_after(line), Some(41));
        assert!(matches!(
            serde_json::from_str::<ServerMessage>(line).unwrap(),
            ServerMessage::Batch(Batch { cursor: 43, .. })
        ));
        assert_eq!(batch_after(r#"{"type":"batch","cursor":43}"#), None);
        assert_eq!(batch_after(r#"{"type":"batch","after":x}"#), None);
    }
}
