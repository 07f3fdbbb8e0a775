//! What every client of a run saw, in one place: latency in an HDR histogram, ticks, loss from
//! each client's cursor chain, requests, empty answers and connection failures (the bytes are
//! counted on the sockets, [`crate::wire`]).
//!
//! All clients run on one thread, so they share one [`Recorder`] through `Rc<RefCell<_>>`;
//! a client borrows it only between awaits.

use std::time::{SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde::Deserialize;
use tickscope_shared::cursor::{ChainError, CursorChain};

/// The part of a batch the load generator needs: the rest of each tick is skipped unread.
#[derive(Debug, Deserialize)]
pub struct LiteBatch {
    pub cursor: u64,
    pub gap: bool,
    pub ticks: Vec<LiteTick>,
}

#[derive(Debug, Deserialize)]
pub struct LiteTick {
    pub seq: u64,
    /// When the tick happened (its arrival), Unix microseconds.
    pub ts: i64,
}

/// Counters for one step of a run; see [`crate::report::StepResult`] for their meaning.
pub struct Recorder {
    /// Latency and throughput count only while this is set (the measured window); loss and
    /// failures count for the whole step.
    pub measuring: bool,
    pub latency_us: Histogram<u64>,
    pub ticks: u64,
    pub messages: u64,
    pub empty: u64,
    pub requests: u64,
    pub lost: u64,
    pub broken: u64,
    pub gaps: u64,
    pub connect_errors: u64,
    pub disconnects: u64,
    pub first_error: Option<String>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self {
            measuring: false,
            // One microsecond to one hour, three significant figures.
            latency_us: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .expect("the histogram bounds are valid"),
            ticks: 0,
            messages: 0,
            empty: 0,
            requests: 0,
            lost: 0,
            broken: 0,
            gaps: 0,
            connect_errors: 0,
            disconnects: 0,
            first_error: None,
        }
    }
}

impl Recorder {
    /// Starts a new step: every count back to zero.
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// One batch received at `received_us`, checked against `chain`. Missing seqs count as
    /// lost; the chain then goes on from the batch's cursor.
    pub fn batch(&mut self, chain: &mut CursorChain, batch: &LiteBatch, received_us: i64) {
        let seqs = batch.ticks.iter().map(|tick| tick.seq);
        match chain.accept_seqs(batch.cursor, batch.gap, seqs) {
            Ok(_) => {}
            Err(ChainError::Missing { first, last }) => {
                self.lost += last - first + 1;
                *chain = CursorChain::new(Some(batch.cursor), true);
            }
            Err(other) => {
                self.broken += 1;
                self.error(other.to_string());
                *chain = CursorChain::new(Some(batch.cursor), true);
            }
        }
        if batch.gap {
            self.gaps += 1;
        }
        if !self.measuring {
            return;
        }
        self.messages += 1;
        if batch.ticks.is_empty() {
            self.empty += 1;
        }
        if batch.gap {
            return;
        }
        for tick in &batch.ticks {
            let lag = (received_us - tick.ts).max(1) as u64;
            self.latency_us.saturating_record(lag);
        }
        self.ticks += batch.ticks.len() as u64;
    }

    pub fn request(&mut self) {
        if self.measuring {
            self.requests += 1;
        }
    }

    pub fn connect_error(&mut self, error: impl ToString) {
        self.connect_errors += 1;
        self.error(error.to_string());
    }

    pub fn disconnect(&mut self, why: impl ToString) {
        self.disconnects += 1;
        self.error(why.to_string());
    }

    fn error(&mut self, text: String) {
        self.first_error.get_or_insert(text);
    }
}

/// Now, in Unix microseconds: the clock ticks' `ts` is on (same machine, same clock).
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_micros() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(cursor: u64, seqs: &[u64], ts: i64) -> LiteBatch {
        LiteBatch {
            cursor,
            gap: false,
            ticks: seqs.iter().map(|&seq| LiteTick { seq, ts }).collect(),
        }
    }

    #[test]
    fn records_latency_and_counts_holes_as_lost() {
        let mut recorder = Recorder {
            measuring: true,
            ..Recorder::default()
        };
        let mut chain = CursorChain::new(None, true);
        recorder.batch(&mut chain, &batch(5, &[4, 5], 1_000), 3_000);
        recorder.batch(&mut chain, &batch(9, &[9], 1_000), 2_000);
        recorder.batch(&mut chain, &batch(10, &[10], 1_000), 2_000);
        assert_eq!(recorder.lost, 3, "6, 7 and 8 never came");
        assert_eq!((recorder.ticks, recorder.messages), (4, 3));
        assert_eq!(recorder.latency_us.max(), 2_000);
        assert_eq!(chain.cursor(), Some(10));
    }

    #[test]
    fn outside_the_window_only_loss_counts() {
        let mut recorder = Recorder::default();
        let mut chain = CursorChain::new(Some(1), true);
        recorder.batch(&mut chain, &batch(3, &[3], 0), 5);
        assert_eq!((recorder.lost, recorder.ticks), (1, 0));
    }

    #[test]
    fn parses_a_batch_and_skips_the_rest_of_each_tick() {
        let text = r#"{"type":"batch","cursor":7,"gap":false,"ticks":[{"seq":7,"symbol":"ACME","price":1.5,"bid":1.49,"ask":1.51,"volume":100,"ts":42}]}"#;
        let parsed: LiteBatch = serde_json::from_str(text).unwrap();
        assert_eq!(
            (parsed.cursor, parsed.ticks[0].seq, parsed.ticks[0].ts),
            (7, 7, 42)
        );
    }
}
