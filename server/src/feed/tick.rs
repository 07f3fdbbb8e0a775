//! The feed's ticks as the server holds them: drafts from the simulator, published ticks with
//! their JSON encoded once, and the slices of them a client is owed.

use std::sync::Arc;

/// A tick as the simulator makes it, before it gets its seq and timestamp.
#[derive(Debug, Clone, PartialEq)]
pub struct TickDraft {
    pub symbol_id: u16,
    pub price: f64,
    pub bid: f64,
    pub ask: f64,
    pub volume: u64,
}

/// A published tick: its seq and symbol for filtering, its time, and its JSON, encoded once.
#[derive(Debug, Clone)]
pub struct StoredTick {
    pub seq: u64,
    pub symbol_id: u16,
    /// The tick's `ts`, in Unix microseconds.
    pub ts: i64,
    pub json: Arc<str>,
}

/// A tick that already has its seq and JSON, for [`Feed::ingest`].
#[derive(Debug, Clone)]
pub struct IngestTick {
    pub seq: u64,
    pub ts: i64,
    pub draft: TickDraft,
    pub json: Arc<str>,
}

/// What [`Feed::ingest`] did with a run of ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ingested {
    pub added: u64,
    /// Ticks at or below the head, skipped.
    pub repeats: u64,
    /// Places where seqs jumped: ticks were missing, and the window restarted.
    pub holes: u64,
}

/// Ticks for one client, still as pre-encoded JSON. See [`tickscope_shared::wire::Batch`].
#[derive(Debug, Clone, PartialEq)]
pub struct BatchSlice {
    pub cursor: u64,
    pub gap: bool,
    pub ticks: Vec<Arc<str>>,
    /// More ticks after `cursor` were due but over the batch limit: ask again at once.
    pub more: bool,
    /// A gap because the client was too far behind: the latest quote per symbol stands for
    /// the ticks it would have had to catch up on.
    pub conflated: bool,
}

impl BatchSlice {
    /// A batch with no ticks that moves the client to `cursor`.
    pub fn empty(cursor: u64) -> Self {
        Self {
            cursor,
            gap: false,
            ticks: Vec::new(),
            more: false,
            conflated: false,
        }
    }
}
