//! The live session: the market the page shows, and one channel per running transport with
//! its cursor chain, clock offset and statistics. Transport clients report events here; the
//! components read from here at each frame. No DOM and no reactivity, so the rules (what a
//! switch carries over, how a gap resyncs, when a figure counts) are tested in plain Rust.

use std::collections::HashMap;

use tickscope_shared::clock::ClockOffset;
use tickscope_shared::cursor::{Accepted, CursorChain};
use tickscope_shared::wire::{Batch, Candle, Snapshot, SymbolInfo, Tick};

use crate::series::{CandleSeries, Sparkline};
use crate::stats::TransportStats;
use crate::transport::{FeedEvent, Transport};

/// How long a changed price stays highlighted.
const FLASH_US: i64 = 700_000;

/// Every symbol's latest quote and price history.
#[derive(Debug, Default)]
pub struct Market {
    pub symbols: Vec<SymbolInfo>,
    index: HashMap<String, usize>,
    quotes: Vec<Option<Tick>>,
    /// When each symbol's price last changed, and whether up.
    changed: Vec<Option<(i64, bool)>>,
    sparks: Vec<Sparkline>,
    candles: Vec<CandleSeries>,
    /// The newest seq applied: with several transports running, each tick is applied once,
    /// by whichever brings it first.
    applied: u64,
}

/// One watchlist row as the page shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct QuoteRow {
    pub symbol: String,
    pub name: String,
    pub open: f64,
    pub last: Option<Tick>,
    /// `Some(true)` while a rise is highlighted, `Some(false)` for a fall.
    pub flash: Option<bool>,
    pub spark: String,
}

impl Market {
    pub fn new(symbols: Vec<SymbolInfo>, snapshot: &Snapshot) -> Self {
        let count = symbols.len();
        let index = symbols
            .iter()
            .enumerate()
            .map(|(i, info)| (info.symbol.clone(), i))
            .collect();
        let mut market = Self {
            symbols,
            index,
            quotes: vec![None; count],
            changed: vec![None; count],
            sparks: vec![Sparkline::default(); count],
            candles: vec![CandleSeries::default(); count],
            applied: 0,
        };
        market.resync(&snapshot.quotes, snapshot.cursor);
        market
    }

    /// Applies the ticks newer than what was applied, in order.
    fn apply(&mut self, ticks: &[Tick], now_us: i64) {
        for tick in ticks {
            if tick.seq <= self.applied {
                continue;
            }
            let Some(&i) = self.index.get(&tick.symbol) else {
                continue;
            };
            if let Some(previous) = &self.quotes[i]
                && previous.price != tick.price
            {
                self.changed[i] = Some((now_us, tick.price > previous.price));
            }
            self.sparks[i].add(tick.price);
            if tick.volume > 0 {
                self.candles[i].add(tick);
            }
            self.quotes[i] = Some(tick.clone());
            self.applied = self.applied.max(tick.seq);
        }
    }

    /// Replaces every quote with a snapshot's (after a gap): the ticks in between are unknown.
    fn resync(&mut self, quotes: &[Tick], cursor: u64) {
        for tick in quotes {
            if let Some(&i) = self.index.get(&tick.symbol) {
                self.sparks[i].add(tick.price);
                self.quotes[i] = Some(tick.clone());
            }
        }
        self.applied = cursor;
    }

    pub fn backfill(&mut self, symbol: usize, candles: Vec<Candle>) {
        self.candles[symbol].backfill(candles);
    }

    pub fn candles(&self, symbol: usize, now_s: i64, seconds: i64) -> Vec<Candle> {
        self.candles[symbol].last(now_s, seconds)
    }

    pub fn rows(&self, now_us: i64) -> Vec<QuoteRow> {
        self.symbols
            .iter()
            .enumerate()
            .map(|(i, info)| QuoteRow {
                symbol: info.symbol.clone(),
                name: info.name.clone(),
                open: info.open,
                last: self.quotes[i].clone(),
                flash: self.changed[i]
                    .filter(|&(at, _)| now_us - at < FLASH_US)
                    .map(|(_, up)| up),
                spark: self.sparks[i].path(60.0, 18.0),
            })
            .collect()
    }
}

/// One running transport: its client's view of the feed.
pub struct Channel {
    pub kind: Transport,
    pub chain: CursorChain,
    pub clock: ClockOffset,
    pub stats: TransportStats,
    /// Chain breaks seen (should stay 0; shown so a person can trust the figures).
    pub breaks: u64,
    pub last_error: Option<String>,
    /// The protocol its requests went over (`nextHopProtocol`), once the browser said.
    pub protocol: Option<String>,
    /// Set on a switch: the note to make once the new transport's first batch shows whether
    /// anything was missed.
    pending_switch: Option<String>,
}

impl Channel {
    pub fn new(kind: Transport, since: u64, now_us: i64) -> Self {
        Self {
            kind,
            chain: CursorChain::new(Some(since), true),
            clock: ClockOffset::default(),
            stats: TransportStats::new(now_us, kind.stall_after_us()),
            breaks: 0,
            protocol: None,
            last_error: None,
            pending_switch: None,
        }
    }

    /// The cursor to start another transport from.
    pub fn cursor(&self) -> u64 {
        self.chain.cursor().unwrap_or(0)
    }
}

/// The market and the running channels.
pub struct Session {
    pub market: Market,
    pub channels: Vec<Channel>,
    /// The last thing worth telling the person (a switch, a resync, a broken chain).
    pub notice: String,
}

impl Session {
    /// The transports still trying to connect for the first time after `after_us`: a request
    /// the browser holds back (no connection to this site is free) never fails, it waits.
    pub fn waiting(&self, now_us: i64, after_us: i64) -> Vec<Transport> {
        self.channels
            .iter()
            .filter(|channel| channel.stats.connecting_for_us(now_us) > after_us)
            .map(|channel| channel.kind)
            .collect()
    }

    pub fn new(market: Market) -> Self {
        Self {
            market,
            channels: Vec::new(),
            notice: String::new(),
        }
    }

    #[cfg(test)]
    fn channel(&self, kind: impl Into<Transport>) -> Option<&Channel> {
        let kind = kind.into();
        self.channels.iter().find(|channel| channel.kind == kind)
    }

    /// The cursor everything shown is current at.
    #[cfg(test)]
    fn cursor(&self) -> u64 {
        self.market.applied
    }

    /// Replaces the running channels with one of `kind`, carrying the previous channel's
    /// chain over so the switch itself is checked for loss. Returns the cursor to start from.
    pub fn switch_to(&mut self, kind: impl Into<Transport>, now_us: i64) -> u64 {
        let kind = kind.into();
        let previous = self.channels.drain(..).next();
        let mut channel = Channel::new(kind, self.market.applied, now_us);
        if let Some(previous) = previous {
            channel.chain = previous.chain;
            channel.pending_switch = Some(format!(
                "switched from {} to {}",
                previous.kind.label(),
                kind.label()
            ));
        }
        let since = channel.cursor();
        self.channels.push(channel);
        since
    }

    /// Runs every transport of `kinds` side by side, each from the current cursor with a
    /// chain of its own.
    pub fn compare(&mut self, kinds: &[Transport], now_us: i64) -> u64 {
        let since = self.market.applied;
        self.channels = kinds
            .iter()
            .map(|&kind| Channel::new(kind, since, now_us))
            .collect();
        self.notice = format!("comparing {} transports from cursor {since}", kinds.len());
        since
    }

    /// Takes one event of the transport `kind`.
    pub fn handle(&mut self, kind: impl Into<Transport>, event: FeedEvent, now_us: i64) {
        let kind = kind.into();
        let Some(channel) = self
            .channels
            .iter_mut()
            .find(|channel| channel.kind == kind)
        else {
            // A late event of a transport that was stopped.
            return;
        };
        match event {
            FeedEvent::Batch {
                batch,
                bytes,
                at_us,
            } => {
                // Kept on the client's clock; the stats add the best offset known when they
                // are shown, so an early, rough offset never stays in the figures.
                let apart: Vec<i64> = batch.ticks.iter().map(|tick| at_us - tick.ts).collect();
                channel.stats.batch(at_us, &apart, bytes);
                Self::accept(channel, &mut self.market, &mut self.notice, &batch, now_us);
            }
            FeedEvent::Request { at_us } => channel.stats.request(at_us),
            FeedEvent::Answer {
                at_us,
                empty,
                timed_out,
            } => channel.stats.answer(at_us, empty, timed_out),
            FeedEvent::Clock(sample) => channel.clock.add(sample),
            FeedEvent::Protocol(protocol) => channel.protocol = Some(protocol),
            FeedEvent::Wire(report) => channel.stats.wire(now_us, report),
            FeedEvent::Heard { at_us, bytes } => {
                channel.stats.bytes(at_us, bytes);
                channel.stats.heard(at_us);
            }
            FeedEvent::Connected => {
                channel.stats.heard(now_us);
                channel.last_error = None;
            }
            FeedEvent::Reconnecting {
                attempt,
                retry_in_ms,
                reason,
            } => {
                channel.stats.reconnecting(attempt, retry_in_ms);
                channel.last_error = Some(reason);
            }
        }
    }

    fn accept(
        channel: &mut Channel,
        market: &mut Market,
        notice: &mut String,
        batch: &Batch,
        now_us: i64,
    ) {
        match channel.chain.accept(batch) {
            Ok(Accepted::Continued { ticks }) => {
                market.apply(&batch.ticks, now_us);
                if let Some(switch) = channel.pending_switch.take() {
                    *notice = format!(
                        "{switch} at cursor {}: 0 ticks missed, 0 repeated ({ticks} caught up)",
                        batch.cursor - ticks as u64
                    );
                }
            }
            Ok(Accepted::Resynced { cursor }) => {
                market.resync(&batch.ticks, cursor);
                let switch = channel.pending_switch.take();
                *notice = match switch {
                    Some(switch) => format!(
                        "{switch}: the cursor was older than the server keeps; resynced from the snapshot at {cursor}"
                    ),
                    None => format!(
                        "{}: the server no longer had our cursor (restart or long outage); resynced from the snapshot at {cursor}",
                        channel.kind.label()
                    ),
                };
            }
            Err(err) => {
                channel.breaks += 1;
                *notice = format!("{}: feed broken ({err}); resyncing", channel.kind.label());
                channel.chain = CursorChain::new(Some(batch.cursor), true);
                market.apply(&batch.ticks, now_us);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::TransportKind;
    use tickscope_shared::clock::ClockSample;

    fn info(symbol: &str) -> SymbolInfo {
        SymbolInfo {
            symbol: symbol.into(),
            name: format!("{symbol} Inc"),
            sector: "Tech".into(),
            open: 10.0,
        }
    }

    fn tick(seq: u64, symbol: &str, price: f64) -> Tick {
        Tick {
            seq,
            symbol: symbol.into(),
            price,
            bid: price - 0.01,
            ask: price + 0.01,
            volume: 100,
            ts: 1_000_000 * seq as i64,
        }
    }

    fn batch(cursor: u64, ticks: Vec<Tick>) -> FeedEvent {
        FeedEvent::Batch {
            batch: Batch {
                cursor,
                gap: false,
                ticks,
            },
            bytes: 100,
            at_us: 1_000_000 * cursor as i64 + 500,
        }
    }

    fn session() -> Session {
        let snapshot = Snapshot {
            cursor: 2,
            quotes: vec![tick(1, "AAA", 10.0), tick(2, "BBB", 20.0)],
        };
        Session::new(Market::new(vec![info("AAA"), info("BBB")], &snapshot))
    }

    #[test]
    fn a_switch_carries_the_chain_and_says_nothing_was_missed() {
        let mut session = session();
        let polling = TransportKind::Polling { interval_ms: 1000 };
        assert_eq!(session.switch_to(polling, 0), 2);
        session.handle(
            polling,
            batch(4, vec![tick(3, "AAA", 11.0), tick(4, "BBB", 19.0)]),
            0,
        );
        assert_eq!(session.cursor(), 4);
        assert_eq!(session.switch_to(TransportKind::WebSocket, 0), 4);
        session.handle(
            TransportKind::WebSocket,
            batch(6, vec![tick(5, "AAA", 12.0), tick(6, "AAA", 12.5)]),
            0,
        );
        assert_eq!(
            session.notice,
            "switched from Polling 1 s to WebSocket at cursor 4: 0 ticks missed, 0 repeated (2 caught up)"
        );
        let rows = session.market.rows(0);
        assert_eq!(rows[0].last.as_ref().unwrap().price, 12.5);
        assert_eq!(rows[0].flash, Some(true));
    }

    #[test]
    fn a_transport_that_never_connects_is_named_as_waiting() {
        let mut session = session();
        session.switch_to(TransportKind::Sse, 0);
        assert!(session.waiting(3_000_000, 4_000_000).is_empty());
        assert_eq!(
            session.waiting(5_000_000, 4_000_000),
            [Transport::from(TransportKind::Sse)]
        );
        session.handle(TransportKind::Sse, FeedEvent::Connected, 5_000_000);
        assert!(session.waiting(9_000_000, 4_000_000).is_empty());
    }

    #[test]
    fn a_broken_chain_is_counted_and_told() {
        let mut session = session();
        session.switch_to(TransportKind::Sse, 0);
        session.handle(TransportKind::Sse, batch(5, vec![tick(5, "AAA", 11.0)]), 0);
        let channel = session.channel(TransportKind::Sse).unwrap();
        assert_eq!(channel.breaks, 1);
        assert!(session.notice.contains("feed broken"), "{}", session.notice);
    }

    #[test]
    fn a_gap_resyncs_from_the_snapshot() {
        let mut session = session();
        session.switch_to(TransportKind::LongPolling, 0);
        let gap = FeedEvent::Batch {
            batch: Batch {
                cursor: 900,
                gap: true,
                ticks: vec![tick(880, "AAA", 15.0), tick(899, "BBB", 25.0)],
            },
            bytes: 100,
            at_us: 0,
        };
        session.handle(TransportKind::LongPolling, gap, 0);
        assert_eq!(session.cursor(), 900);
        assert!(session.notice.contains("resynced from the snapshot at 900"));
        assert_eq!(
            session
                .channel(TransportKind::LongPolling)
                .unwrap()
                .chain
                .gaps(),
            1
        );
    }

    #[test]
    fn compare_mode_applies_each_tick_once_and_keeps_chains_apart() {
        let mut session = session();
        let since = session.compare(&Transport::compared(false, true), 0);
        assert_eq!(since, 2);
        let ws = TransportKind::WebSocket;
        let polling = TransportKind::Polling { interval_ms: 1000 };
        session.handle(ws, batch(3, vec![tick(3, "AAA", 11.0)]), 0);
        session.handle(ws, batch(4, vec![tick(4, "AAA", 12.0)]), 0);
        session.handle(
            polling,
            batch(4, vec![tick(3, "AAA", 11.0), tick(4, "AAA", 12.0)]),
            0,
        );
        assert_eq!(
            session.market.sparks[0]
                .path(60.0, 18.0)
                .matches('L')
                .count(),
            2
        );
        assert_eq!(session.channel(polling).unwrap().chain.ticks(), 2);
        assert_eq!(session.channel(ws).unwrap().breaks, 0);
    }

    #[test]
    fn compare_mode_keeps_a_transport_on_http1_apart_from_it_on_the_page_origin() {
        let mut session = session();
        let transports = Transport::compared(true, true);
        assert_eq!(
            transports.len(),
            10,
            "four HTTP transports twice, WebSocket and WebTransport once"
        );
        assert_eq!(Transport::compared(true, false).len(), 9);
        assert_eq!(Transport::compared(false, false).len(), 5);
        session.compare(&transports, 0);
        let (page, http1) = (
            Transport::from(TransportKind::Sse),
            Transport::http1(TransportKind::Sse),
        );
        session.handle(page, batch(3, vec![tick(3, "AAA", 11.0)]), 0);
        session.handle(http1, batch(3, vec![tick(3, "AAA", 11.0)]), 0);
        session.handle(http1, batch(4, vec![tick(4, "AAA", 12.0)]), 0);
        assert_eq!(session.channel(page).unwrap().chain.ticks(), 1);
        assert_eq!(session.channel(http1).unwrap().chain.ticks(), 2);
        assert_eq!(http1.label(), "SSE · HTTP/1.1");
        assert_eq!(http1.id(), "sse-http1");
    }

    #[test]
    fn lag_shows_once_the_clock_is_known_and_with_the_best_offset() {
        let mut session = session();
        let ws = TransportKind::WebSocket;
        session.switch_to(ws, 0);
        session.handle(ws, batch(3, vec![tick(3, "AAA", 11.0)]), 0);
        let channel = &mut session.channels[0];
        assert!(
            channel
                .stats
                .view(4_000_000, channel.clock.offset_us())
                .lag
                .is_none()
        );
        // A rough first exchange (a 10 ms round trip), then a quiet one.
        session.handle(
            ws,
            FeedEvent::Clock(ClockSample {
                sent_us: 0,
                server_us: 9_000,
                received_us: 10_000,
            }),
            0,
        );
        session.handle(
            ws,
            FeedEvent::Clock(ClockSample {
                sent_us: 0,
                server_us: 1_000,
                received_us: 2_000,
            }),
            0,
        );
        session.handle(ws, batch(4, vec![tick(4, "AAA", 12.0)]), 0);
        let channel = &mut session.channels[0];
        let lag = channel
            .stats
            .view(4_000_500, channel.clock.offset_us())
            .lag
            .unwrap();
        assert_eq!(lag.current_us, 500, "receive time + offset (0) - ts");
        assert_eq!(
            lag.max_us, 500,
            "the batch that came before the quiet exchange has the same offset"
        );
    }
}
