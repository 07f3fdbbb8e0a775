//! The feed: every published tick, the retained window, the latest quotes and the candles.
//!
//! The simulator is the only writer ([`Feed::publish`]). Readers never block it for long: the
//! state sits behind a std `RwLock` that is held only to push or copy out pre-encoded ticks,
//! never across an `.await`. Each tick is encoded to JSON once, when it is published, and
//! every transport copies those bytes into its frames, so no client costs a JSON encoding.
//!
//! Waking readers goes through a `watch` channel carrying the head seq. A reader marks the
//! channel seen *before* it reads the window, so a tick published in between still wakes it.
//! A reader that wakes late finds every tick it missed and sends them in one frame.
//!
//! Clients of all symbols that stand at the same cursor need the same bytes, so
//! [`Feed::frame_since`] frames such a batch once and hands every one of them a clone of it
//! (a reference count, not a copy). With thousands of WebSocket clients woken by one publish,
//! the first frames the batch and the rest share it.
//!
//! Beside it: [`simulator`] makes the ticks, [`symbols`] lists the companies and filters them,
//! [`encode`] writes batches from pre-encoded ticks, [`clock`] reads the wall clock.

pub mod clock;
pub mod encode;
mod frame;
pub mod simulator;
pub mod symbols;
mod tick;

pub use frame::Frame;
pub use tick::{BatchSlice, IngestTick, Ingested, StoredTick, TickDraft};

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tickscope_shared::candles::add_trade;
use tickscope_shared::cursor::{ResumePoint, resume_point};
use tickscope_shared::wire::{Candle, Tick};
use tokio::sync::watch;

use self::clock::now_us;
use self::encode::Framing;
use self::frame::FrameCache;
use self::symbols::{SymbolFilter, Universe};

/// How far back candles go: 15 minutes of 1-second candles per symbol.
pub const CANDLE_HISTORY_S: u32 = 15 * 60;

/// The shared handle to the feed; cloning it is cheap.
#[derive(Clone)]
pub struct Feed {
    inner: Arc<FeedInner>,
}

struct FeedInner {
    universe: Arc<Universe>,
    /// A std lock, not tokio's: nothing awaits while holding it, and the critical sections are
    /// a few pushes or copies of `Arc`s.
    state: RwLock<FeedState>,
    /// Locked before `state` when both are needed; the publisher never takes it.
    frames: Mutex<FrameCache>,
    head: watch::Sender<u64>,
    ticks_published: Counter,
    frames_encoded: Counter,
}

struct FeedState {
    /// The last `retention` ticks, oldest first, seqs without holes.
    window: VecDeque<StoredTick>,
    retention: usize,
    /// A client further behind than this gets a conflated snapshot instead of the backlog.
    conflate_after: u64,
    /// A cursor at most this far past the head waits for the feed to reach it instead of
    /// being a gap: on an edge, a cursor from another edge that is a little ahead.
    wait_ahead: u64,
    /// Seq of the newest tick; the seq base before the first.
    head: u64,
    latest: Vec<Option<StoredTick>>,
    /// Per symbol, 1-second candles of the last [`CANDLE_HISTORY_S`] seconds, oldest first.
    candles: Vec<VecDeque<Candle>>,
}

impl Feed {
    /// A feed whose first tick gets seq `seq_base + 1`.
    pub fn new(
        universe: Arc<Universe>,
        retention: u64,
        seq_base: u64,
        ticks_published: Counter,
        frames_encoded: Counter,
    ) -> Self {
        let symbols = universe.len();
        let state = FeedState {
            window: VecDeque::new(),
            retention: retention.max(1) as usize,
            conflate_after: u64::MAX,
            wait_ahead: 0,
            head: seq_base,
            latest: vec![None; symbols],
            candles: vec![VecDeque::new(); symbols],
        };
        Self {
            inner: Arc::new(FeedInner {
                universe,
                state: RwLock::new(state),
                frames: Mutex::default(),
                head: watch::channel(seq_base).0,
                ticks_published,
                frames_encoded,
            }),
        }
    }

    /// Clients more than `ticks` behind get the latest quote per symbol, flagged as a
    /// conflated gap, instead of the ticks in between. Unlimited unless set.
    pub fn conflate_after(self, ticks: u64) -> Self {
        self.write().conflate_after = ticks;
        self
    }

    /// A cursor up to `ticks` past the head waits for the feed to reach it instead of getting a
    /// gap. Edges set this: a client moving from an edge that is a little ahead keeps its
    /// place. Off unless set.
    pub fn wait_ahead(self, ticks: u64) -> Self {
        self.write().wait_ahead = ticks;
        self
    }

    pub fn universe(&self) -> &Arc<Universe> {
        &self.inner.universe
    }

    /// Seq of the newest tick.
    pub fn head(&self) -> u64 {
        *self.inner.head.borrow()
    }

    /// How long ago the tick after `seq` happened (by its `ts`); zero once the window has
    /// let it go, or before it exists.
    pub fn age_after(&self, seq: u64) -> Duration {
        let ts = {
            let state = self.read();
            let index = seq.saturating_add(1).checked_sub(state.oldest());
            let stored = index.and_then(|index| state.window.get(usize::try_from(index).ok()?));
            stored.map(|stored| stored.ts)
        };
        ts.map_or(Duration::ZERO, |ts| {
            Duration::from_micros(u64::try_from(now_us() - ts).unwrap_or(0))
        })
    }

    /// A receiver that wakes on every publish; its value is the head seq.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.head.subscribe()
    }

    /// Gives the drafts their seqs and, all of them, the time of this call as `ts`; encodes
    /// each once, stores them and wakes every reader.
    pub fn publish(&self, drafts: &[TickDraft]) {
        let ts = now_us();
        self.publish_each(drafts.iter().map(|draft| (ts, draft)));
    }

    /// Gives the ticks their seqs and each its own `ts`, the Unix microsecond it happened at
    /// (for the simulator, its arrival time, so a publish that comes late counts in every
    /// client's lag); encodes each once, stores them and wakes every reader.
    pub fn publish_stamped(&self, ticks: &[(i64, TickDraft)]) {
        self.publish_each(ticks.iter().map(|(ts, draft)| (*ts, draft)));
    }

    fn publish_each<'a>(&self, ticks: impl ExactSizeIterator<Item = (i64, &'a TickDraft)>) {
        let count = ticks.len();
        if count == 0 {
            return;
        }
        let head = {
            let mut state = self.write();
            for (ts, draft) in ticks {
                let listing = self.inner.universe.listing(draft.symbol_id);
                let tick = Tick {
                    seq: state.head + 1,
                    symbol: listing.symbol.clone(),
                    price: draft.price,
                    bid: draft.bid,
                    ask: draft.ask,
                    volume: draft.volume,
                    ts,
                };
                let json = serde_json::to_string(&tick).expect("a tick always encodes");
                state.add(
                    StoredTick {
                        seq: tick.seq,
                        symbol_id: draft.symbol_id,
                        ts,
                        json: json.into(),
                    },
                    draft,
                    ts,
                );
            }
            state.head
        };
        self.inner.ticks_published.inc_by(count as u64);
        self.inner.head.send_replace(head);
    }

    /// Adds ticks that already have their seqs (an edge's feed, from the broker), in seq order,
    /// and wakes every reader. A tick at or below the head is a repeat and is skipped. A tick
    /// past `head + 1` means ticks are missing: the window restarts at it, so every cursor
    /// before the hole resumes as a gap, never across it.
    pub fn ingest(&self, ticks: &[IngestTick]) -> Ingested {
        let mut ingested = Ingested::default();
        let head = {
            let mut state = self.write();
            for tick in ticks {
                if tick.seq <= state.head {
                    ingested.repeats += 1;
                    continue;
                }
                if tick.seq != state.head + 1 {
                    // The first tick of a new edge is a jump from nothing, not a hole.
                    if !state.window.is_empty() {
                        ingested.holes += 1;
                    }
                    state.window.clear();
                }
                state.add(
                    StoredTick {
                        seq: tick.seq,
                        symbol_id: tick.draft.symbol_id,
                        ts: tick.ts,
                        json: tick.json.clone(),
                    },
                    &tick.draft,
                    tick.ts,
                );
                ingested.added += 1;
            }
            state.head
        };
        if ingested.added > 0 {
            self.inner.ticks_published.inc_by(ingested.added);
            self.inner.head.send_replace(head);
        }
        ingested
    }

    /// The retained ticks after `since`, at most `max_ticks`: what a generator forwards to the
    /// broker. `None` when `since` has left the window.
    pub fn ticks_after(&self, since: u64, max_ticks: usize) -> Option<Vec<StoredTick>> {
        let state = self.read();
        let from = match resume_point(since, state.oldest(), state.head) {
            ResumePoint::Gap => return None,
            ResumePoint::From(from) => from,
        };
        let skip = (from - state.oldest()) as usize;
        Some(
            state
                .window
                .range(skip.min(state.window.len())..)
                .take(max_ticks)
                .cloned()
                .collect(),
        )
    }

    /// Seq of the oldest retained tick; `head + 1` when none is retained.
    pub fn oldest(&self) -> u64 {
        self.read().oldest()
    }

    /// The ticks after `since` that `filter` passes, at most `max_ticks` of them.
    ///
    /// `since: None` asks for nothing old: an empty batch at the head. A `since` outside the
    /// window (too old, or past the head) gets a gap batch holding the latest quotes.
    pub fn batch_since(
        &self,
        since: Option<u64>,
        filter: &SymbolFilter,
        max_ticks: usize,
    ) -> BatchSlice {
        self.read().batch_since(since, filter, max_ticks)
    }

    /// [`Feed::batch_since`], framed for sending. A batch for all symbols is framed once per
    /// position and shared by every client that asks for it while the head stays put.
    pub fn frame_since(
        &self,
        since: Option<u64>,
        filter: &SymbolFilter,
        framing: Framing,
        max_ticks: usize,
    ) -> Frame {
        self.frame_after(since, since, filter, framing, max_ticks)
    }

    /// [`Feed::frame_since`] for a client whose last batch ended at `after` (WebTransport's
    /// batches name it), which is behind `since` when the batches between held no tick the
    /// client's filter kept.
    fn frame_after(
        &self,
        since: Option<u64>,
        after: Option<u64>,
        filter: &SymbolFilter,
        framing: Framing,
        max_ticks: usize,
    ) -> Frame {
        let shared = match (since, filter) {
            (Some(since), SymbolFilter::All) if after == Some(since) => Some(since),
            _ => None,
        };
        let Some(since) = shared else {
            let slice = self.batch_since(since, filter, max_ticks);
            self.inner.frames_encoded.inc();
            return Frame::encode(framing, after.unwrap_or(slice.cursor), &slice);
        };
        let mut frames = self.frames();
        let (head, slice) = {
            let state = self.read();
            if let Some(frame) = frames.get(framing, since, state.head) {
                return frame.clone();
            }
            (
                state.head,
                state.batch_since(Some(since), filter, max_ticks),
            )
        };
        let frame = Frame::encode(framing, since, &slice);
        self.inner.frames_encoded.inc();
        frames.put(framing, since, head, frame.clone());
        frame
    }

    /// The latest quote of each symbol `filter` passes, and the cursor they are current at.
    pub fn snapshot(&self, filter: &SymbolFilter) -> (u64, Vec<Arc<str>>) {
        let state = self.read();
        (state.head, state.quotes(filter))
    }

    /// The candles of `symbol_id` that started within the last `seconds`, oldest first.
    pub fn history(&self, symbol_id: u16, seconds: u32) -> Vec<Candle> {
        let since_s = now_us() / 1_000_000 - i64::from(seconds);
        let state = self.read();
        state.candles[symbol_id as usize]
            .iter()
            .filter(|candle| candle.t > since_s)
            .cloned()
            .collect()
    }

    fn read(&self) -> RwLockReadGuard<'_, FeedState> {
        // A panic while holding the lock leaves the state consistent (every write completes
        // one push at a time), so a poisoned lock is still safe to use.
        self.inner
            .state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn frames(&self) -> MutexGuard<'_, FrameCache> {
        // The cache holds only finished frames, so a poisoned lock is still safe to use.
        self.inner
            .frames
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, FeedState> {
        self.inner
            .state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl FeedState {
    fn batch_since(
        &self,
        since: Option<u64>,
        filter: &SymbolFilter,
        max_ticks: usize,
    ) -> BatchSlice {
        let Some(since) = since else {
            return BatchSlice::empty(self.head);
        };
        if since > self.head && since - self.head <= self.wait_ahead {
            return BatchSlice::empty(since);
        }
        let from = match resume_point(since, self.oldest(), self.head) {
            ResumePoint::Gap => return self.snapshot_batch(filter, false),
            ResumePoint::From(from) => from,
        };
        if self.head - since > self.conflate_after {
            return self.snapshot_batch(filter, true);
        }
        let skip = (from - self.oldest()) as usize;
        let mut ticks = Vec::new();
        let mut cursor = self.head;
        let mut more = false;
        for stored in self.window.range(skip..) {
            if !filter.passes(stored.symbol_id) {
                continue;
            }
            if ticks.len() == max_ticks {
                more = true;
                break;
            }
            ticks.push(stored.json.clone());
            cursor = stored.seq;
        }
        if !more {
            cursor = self.head;
        }
        BatchSlice {
            cursor,
            gap: false,
            ticks,
            more,
            conflated: false,
        }
    }

    /// A gap batch at the head with the latest quote of each symbol `filter` passes.
    fn snapshot_batch(&self, filter: &SymbolFilter, conflated: bool) -> BatchSlice {
        BatchSlice {
            cursor: self.head,
            gap: true,
            ticks: self.quotes(filter),
            more: false,
            conflated,
        }
    }

    /// Seq of the oldest retained tick; `head + 1` when none is retained.
    fn oldest(&self) -> u64 {
        self.window
            .front()
            .map_or(self.head + 1, |stored| stored.seq)
    }

    fn quotes(&self, filter: &SymbolFilter) -> Vec<Arc<str>> {
        self.latest
            .iter()
            .enumerate()
            .filter(|&(id, _)| filter.passes(id as u16))
            .filter_map(|(_, stored)| stored.as_ref().map(|stored| stored.json.clone()))
            .collect()
    }

    fn add(&mut self, stored: StoredTick, draft: &TickDraft, ts: i64) {
        self.head = stored.seq;
        self.latest[draft.symbol_id as usize] = Some(stored.clone());
        if self.window.len() == self.retention {
            self.window.pop_front();
        }
        self.window.push_back(stored);
        if draft.volume > 0 {
            let candles = &mut self.candles[draft.symbol_id as usize];
            add_trade(
                candles,
                ts,
                draft.price,
                draft.volume,
                i64::from(CANDLE_HISTORY_S),
            );
        }
    }
}

/// One client's position in the feed: its filter and the cursor it has been sent up to.
/// Long polling, WebSocket and SSE all read the feed through this.
#[derive(Debug, Clone)]
pub struct Subscription {
    filter: SymbolFilter,
    cursor: u64,
    /// The cursor of the last batch handed out (or the start): behind `cursor` when batches
    /// without a tick for this filter were passed over.
    sent: u64,
}

impl Subscription {
    /// Starts after `since`; `None` starts at the head (live only).
    pub fn new(feed: &Feed, filter: SymbolFilter, since: Option<u64>) -> Self {
        let cursor = since.unwrap_or_else(|| feed.head());
        Self {
            filter,
            cursor,
            sent: cursor,
        }
    }

    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// The next batch worth sending (ticks, or a gap), moving the cursor past it; `None` when
    /// the client is up to date. A filtered client's cursor moves past ticks of other symbols
    /// silently. Call again while it returns `Some`: a batch may stop at the batch limit.
    pub fn next_frame(&mut self, feed: &Feed, framing: Framing, max_ticks: usize) -> Option<Frame> {
        loop {
            if self.cursor == feed.head() {
                return None;
            }
            let frame = feed.frame_after(
                Some(self.cursor),
                Some(self.sent),
                &self.filter,
                framing,
                max_ticks,
            );
            self.cursor = frame.cursor;
            if frame.gap || frame.ticks > 0 {
                self.sent = frame.cursor;
                return Some(frame);
            }
            if !frame.more {
                return None;
            }
        }
    }

    /// An empty batch at the current cursor: what a long poll answers at its timeout.
    pub fn empty_frame(&self, framing: Framing) -> Frame {
        Frame::encode(framing, self.cursor, &BatchSlice::empty(self.cursor))
    }
}

#[cfg(test)]
mod tests;
