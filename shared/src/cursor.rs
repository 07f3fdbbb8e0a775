//! The cursor chain: how a client proves it lost and repeated nothing.
//!
//! Every tick carries a global `seq` (1, 2, 3, ... with no holes) and every batch a `cursor`,
//! the newest seq of the whole feed it accounts for. A client that holds cursor `c` and asks
//! with `since=c` must get exactly the ticks after `c` up to the new cursor that its filter
//! keeps. [`CursorChain`] checks that rule batch by batch; a client that sees every symbol can
//! check it to the tick, one with a filter can check order and bounds.
//!
//! The server side of the rule is [`resume_point`]: where a `since` lands in the retained
//! window.

use std::collections::BTreeMap;

use crate::wire::Batch;

/// Where a client's `since` lands against the server's retained window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumePoint {
    /// The ticks after `since` are all retained: serve from seq `since + 1`.
    From(u64),
    /// `since` is older than the oldest retained tick, or newer than the feed's head (a cursor
    /// from another run of the server): the client must resync from the snapshot.
    Gap,
}

/// Decides where to resume a client that holds `since` when the window retains the seqs
/// `oldest..=head` (`oldest == head + 1` when nothing is retained).
pub fn resume_point(since: u64, oldest: u64, head: u64) -> ResumePoint {
    if since > head || since.saturating_add(1) < oldest {
        ResumePoint::Gap
    } else {
        ResumePoint::From(since + 1)
    }
}

/// A break in the chain: something was lost, repeated or out of order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("cursor went back from {held} to {got}")]
    CursorWentBack { held: u64, got: u64 },
    #[error("tick {seq} repeated or out of order after {after}")]
    Repeated { seq: u64, after: u64 },
    #[error("ticks {first}..={last} missing without a gap flag")]
    Missing { first: u64, last: u64 },
    #[error("tick {seq} is past the batch cursor {cursor}")]
    PastCursor { seq: u64, cursor: u64 },
}

/// What an accepted batch did to the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// The batch continued the chain; `ticks` new ticks.
    Continued { ticks: usize },
    /// The server flagged a gap; the batch's ticks are a snapshot and the chain restarts at
    /// its cursor.
    Resynced { cursor: u64 },
}

/// The cursor a client holds, and the check that each batch continues it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorChain {
    cursor: Option<u64>,
    every_symbol: bool,
    ticks: u64,
    gaps: u64,
}

impl CursorChain {
    /// A chain starting at `since` (`None`: live only, the first batch sets the cursor).
    /// `every_symbol` says the client subscribed to all symbols, so seqs must have no holes.
    pub fn new(since: Option<u64>, every_symbol: bool) -> Self {
        Self {
            cursor: since,
            every_symbol,
            ticks: 0,
            gaps: 0,
        }
    }

    /// The cursor to resume from.
    pub fn cursor(&self) -> Option<u64> {
        self.cursor
    }

    /// Ticks accepted so far, snapshots after a gap not counted.
    pub fn ticks(&self) -> u64 {
        self.ticks
    }

    /// Gaps the server flagged.
    pub fn gaps(&self) -> u64 {
        self.gaps
    }

    /// Checks `batch` against the chain and, when it continues it, moves the cursor.
    /// On error the chain is left as it was.
    pub fn accept(&mut self, batch: &Batch) -> Result<Accepted, ChainError> {
        self.accept_seqs(
            batch.cursor,
            batch.gap,
            batch.ticks.iter().map(|tick| tick.seq),
        )
    }

    /// [`CursorChain::accept`] for a batch given by its cursor, gap flag and tick seqs, for
    /// readers that do not decode whole ticks.
    pub fn accept_seqs(
        &mut self,
        cursor: u64,
        gap: bool,
        seqs: impl Iterator<Item = u64> + Clone,
    ) -> Result<Accepted, ChainError> {
        if gap {
            self.cursor = Some(cursor);
            self.gaps += 1;
            return Ok(Accepted::Resynced { cursor });
        }
        if let Some(held) = self.cursor
            && cursor < held
        {
            return Err(ChainError::CursorWentBack { held, got: cursor });
        }
        // With no cursor yet (live only), the first tick sets where the chain starts.
        let mut last = match (self.cursor, seqs.clone().next()) {
            (Some(held), _) => held,
            (None, Some(first)) => first - 1,
            (None, None) => cursor,
        };
        let mut count = 0;
        for seq in seqs {
            if seq <= last {
                return Err(ChainError::Repeated { seq, after: last });
            }
            if seq > cursor {
                return Err(ChainError::PastCursor { seq, cursor });
            }
            if self.every_symbol && seq != last + 1 {
                return Err(ChainError::Missing {
                    first: last + 1,
                    last: seq - 1,
                });
            }
            last = seq;
            count += 1;
        }
        if self.every_symbol && last != cursor {
            return Err(ChainError::Missing {
                first: last + 1,
                last: cursor,
            });
        }
        self.cursor = Some(cursor);
        self.ticks += count as u64;
        Ok(Accepted::Continued { ticks: count })
    }
}

/// Batches that may arrive out of order, put back in the order the server sent them.
/// WebTransport sends each batch on a stream of its own, so a lost packet holds up only its
/// batch; every batch names the cursor it continues from (`after`) and its own (`cursor`).
#[derive(Debug, Clone)]
pub struct Reorder<T> {
    /// The cursor the next batch in order continues from; `None` until the start is known.
    next: Option<u64>,
    held: BTreeMap<u64, (u64, T)>,
    limit: usize,
}

/// More batches came ahead of a missing one than a client holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooFarAhead {
    pub waiting_for: Option<u64>,
    pub held: usize,
}

impl std::fmt::Display for TooFarAhead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} batches held waiting for the one after {:?}",
            self.held, self.waiting_for
        )
    }
}

impl<T> Reorder<T> {
    /// Batches continue from `start` (`None`: not known yet, see [`Reorder::start`]); at most
    /// `limit` are held while one is missing.
    pub fn new(start: Option<u64>, limit: usize) -> Self {
        Self {
            next: start,
            held: BTreeMap::new(),
            limit,
        }
    }

    /// Learns where the batches start, when it was not known; the batches it releases.
    pub fn start(&mut self, cursor: u64) -> Vec<T> {
        if self.next.is_none() {
            self.next = Some(cursor);
        }
        self.release()
    }

    /// Batches held, waiting for an earlier one.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Takes a batch that continues from `after` and ends at `cursor`; returns the batches now
    /// in order, this one among them if it was next. A batch from before the next one (a
    /// repeat) is given back at once, for the chain to refuse.
    pub fn push(&mut self, after: u64, cursor: u64, batch: T) -> Result<Vec<T>, TooFarAhead> {
        if self.next.is_some_and(|next| after < next) {
            return Ok(vec![batch]);
        }
        if self.held.len() >= self.limit {
            return Err(TooFarAhead {
                waiting_for: self.next,
                held: self.held.len(),
            });
        }
        self.held.insert(after, (cursor, batch));
        Ok(self.release())
    }

    fn release(&mut self) -> Vec<T> {
        let mut ready = Vec::new();
        while let Some(next) = self.next
            && let Some((cursor, batch)) = self.held.remove(&next)
        {
            ready.push(batch);
            self.next = Some(cursor);
        }
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Tick;

    fn tick(seq: u64) -> Tick {
        Tick {
            seq,
            symbol: "AAA".into(),
            price: 1.0,
            bid: 0.99,
            ask: 1.01,
            volume: 100,
            ts: 0,
        }
    }

    fn batch(cursor: u64, seqs: &[u64]) -> Batch {
        Batch {
            cursor,
            gap: false,
            ticks: seqs.iter().copied().map(tick).collect(),
        }
    }

    #[test]
    fn resume_point_inside_window_and_at_head() {
        assert_eq!(resume_point(10, 5, 20), ResumePoint::From(11));
        assert_eq!(resume_point(4, 5, 20), ResumePoint::From(5));
        assert_eq!(resume_point(20, 5, 20), ResumePoint::From(21));
        assert_eq!(resume_point(0, 1, 0), ResumePoint::From(1));
    }

    #[test]
    fn resume_point_before_window_or_past_head_is_a_gap() {
        assert_eq!(resume_point(3, 5, 20), ResumePoint::Gap);
        assert_eq!(resume_point(21, 5, 20), ResumePoint::Gap);
        assert_eq!(resume_point(u64::MAX, 1, 20), ResumePoint::Gap);
    }

    #[test]
    fn every_symbol_chain_continues() {
        let mut chain = CursorChain::new(Some(3), true);
        assert_eq!(
            chain.accept(&batch(5, &[4, 5])),
            Ok(Accepted::Continued { ticks: 2 })
        );
        assert_eq!(
            chain.accept(&batch(5, &[])),
            Ok(Accepted::Continued { ticks: 0 })
        );
        assert_eq!(chain.accept(&batch(6, &[6])).map(|_| ()), Ok(()));
        assert_eq!(chain.cursor(), Some(6));
        assert_eq!(chain.ticks(), 3);
    }

    #[test]
    fn every_symbol_chain_catches_a_hole_a_repeat_and_a_short_batch() {
        let mut chain = CursorChain::new(Some(3), true);
        assert_eq!(
            chain.accept(&batch(6, &[4, 6])),
            Err(ChainError::Missing { first: 5, last: 5 })
        );
        assert_eq!(
            chain.accept(&batch(4, &[3, 4])),
            Err(ChainError::Repeated { seq: 3, after: 3 })
        );
        assert_eq!(
            chain.accept(&batch(9, &[4])),
            Err(ChainError::Missing { first: 5, last: 9 })
        );
        assert_eq!(
            chain.accept(&batch(2, &[])),
            Err(ChainError::CursorWentBack { held: 3, got: 2 })
        );
        assert_eq!(chain.cursor(), Some(3), "a rejected batch moves nothing");
    }

    #[test]
    fn filtered_chain_allows_holes_but_not_disorder() {
        let mut chain = CursorChain::new(Some(10), false);
        assert!(chain.accept(&batch(20, &[12, 17])).is_ok());
        assert_eq!(
            chain.accept(&batch(30, &[25, 21])),
            Err(ChainError::Repeated { seq: 21, after: 25 })
        );
        assert_eq!(
            chain.accept(&batch(30, &[31])),
            Err(ChainError::PastCursor {
                seq: 31,
                cursor: 30
            })
        );
        assert_eq!(chain.cursor(), Some(20));
    }

    #[test]
    fn live_only_chain_starts_at_the_first_batch() {
        let mut chain = CursorChain::new(None, true);
        assert!(chain.accept(&batch(42, &[41, 42])).is_ok());
        assert_eq!(chain.cursor(), Some(42));
        let mut empty_first = CursorChain::new(None, true);
        assert!(empty_first.accept(&batch(7, &[])).is_ok());
        assert_eq!(empty_first.cursor(), Some(7));
    }

    #[test]
    fn gap_resyncs_at_the_batch_cursor() {
        let mut chain = CursorChain::new(Some(3), true);
        let snapshot = Batch {
            cursor: 900,
            gap: true,
            ticks: vec![tick(850), tick(899)],
        };
        assert_eq!(
            chain.accept(&snapshot),
            Ok(Accepted::Resynced { cursor: 900 })
        );
        assert_eq!(chain.gaps(), 1);
        assert!(chain.accept(&batch(901, &[901])).is_ok());
    }

    #[test]
    fn reorder_releases_batches_in_the_order_sent() {
        let mut reorder = Reorder::new(Some(10), 8);
        assert_eq!(reorder.push(12, 15, "b").unwrap(), Vec::<&str>::new());
        assert_eq!(reorder.push(15, 16, "c").unwrap(), Vec::<&str>::new());
        assert_eq!(reorder.held(), 2);
        assert_eq!(reorder.push(10, 12, "a").unwrap(), vec!["a", "b", "c"]);
        assert_eq!(reorder.held(), 0);
        assert_eq!(reorder.push(16, 17, "d").unwrap(), vec!["d"]);
        // A repeat is handed on, for the chain to refuse.
        assert_eq!(reorder.push(12, 15, "b again").unwrap(), vec!["b again"]);
    }

    #[test]
    fn reorder_waits_for_the_start_and_holds_a_bounded_number() {
        let mut reorder = Reorder::new(None, 2);
        assert!(reorder.push(5, 6, 'y').unwrap().is_empty());
        assert!(reorder.push(4, 5, 'x').unwrap().is_empty());
        assert_eq!(
            reorder.push(7, 8, 'z'),
            Err(TooFarAhead {
                waiting_for: None,
                held: 2
            })
        );
        assert_eq!(reorder.start(4), vec!['x', 'y']);
    }
}
