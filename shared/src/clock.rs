//! Clock-offset estimation, NTP style.
//!
//! Lag is `receive time - tick ts`, but the receive time is read on the client's clock and
//! `ts` on the server's. The client asks the server's time (`/api/time` over HTTP, a ping over
//! WebSocket), noting when it asked and when the answer came. Assuming the answer was stamped
//! half-way through the round trip, `offset = server_time - (sent + received) / 2`, with an
//! error of at most half the round trip. The sample with the smallest round trip has the
//! smallest error bound, so that is the one used.

use std::collections::VecDeque;

/// One clock exchange, all in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockSample {
    /// Client clock when the request left.
    pub sent_us: i64,
    /// Server clock when it answered.
    pub server_us: i64,
    /// Client clock when the answer came back.
    pub received_us: i64,
}

impl ClockSample {
    pub fn round_trip_us(&self) -> i64 {
        self.received_us - self.sent_us
    }

    /// What to add to a client time to get server time.
    pub fn offset_us(&self) -> i64 {
        self.server_us - (self.sent_us + self.received_us) / 2
    }
}

/// The last few clock samples, and the offset from the best of them.
#[derive(Debug, Clone)]
pub struct ClockOffset {
    keep: usize,
    samples: VecDeque<ClockSample>,
}

impl Default for ClockOffset {
    /// Keeps eight samples: enough to find a quiet round trip, few enough to follow drift.
    fn default() -> Self {
        Self::new(8)
    }
}

impl ClockOffset {
    pub fn new(keep: usize) -> Self {
        Self {
            keep: keep.max(1),
            samples: VecDeque::new(),
        }
    }

    /// Adds a sample; one whose answer came before its request (a clock jump) is dropped.
    pub fn add(&mut self, sample: ClockSample) {
        if sample.round_trip_us() < 0 {
            return;
        }
        if self.samples.len() == self.keep {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    /// The sample with the smallest round trip, the latest of equals.
    pub fn best(&self) -> Option<ClockSample> {
        self.samples
            .iter()
            .rev()
            .min_by_key(|sample| sample.round_trip_us())
            .copied()
    }

    /// What to add to a client time to get server time; `None` before the first sample.
    pub fn offset_us(&self) -> Option<i64> {
        self.best().map(|sample| sample.offset_us())
    }

    /// Lag of a tick stamped `ts_us` on the server and received at `received_us` on the
    /// client, or `None` before the first sample.
    pub fn lag_us(&self, received_us: i64, ts_us: i64) -> Option<i64> {
        self.offset_us().map(|offset| received_us + offset - ts_us)
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_of_a_symmetric_exchange() {
        // The server runs 1 s ahead; 10 ms each way.
        let sample = ClockSample {
            sent_us: 0,
            server_us: 1_010_000,
            received_us: 20_000,
        };
        assert_eq!(sample.round_trip_us(), 20_000);
        assert_eq!(sample.offset_us(), 1_000_000);
    }

    #[test]
    fn the_shortest_round_trip_wins() {
        let mut clock = ClockOffset::new(4);
        // Slow and lopsided: 90 ms out, 10 ms back, so its estimate is off by 40 ms.
        clock.add(ClockSample {
            sent_us: 0,
            server_us: 1_090_000,
            received_us: 100_000,
        });
        clock.add(ClockSample {
            sent_us: 200_000,
            server_us: 1_201_000,
            received_us: 202_000,
        });
        assert_eq!(clock.offset_us(), Some(1_000_000));
        assert_eq!(clock.lag_us(300_000, 1_295_000), Some(5_000));
    }

    #[test]
    fn old_samples_are_forgotten_and_bad_ones_dropped() {
        let mut clock = ClockOffset::new(2);
        assert_eq!(clock.offset_us(), None);
        clock.add(ClockSample {
            sent_us: 0,
            server_us: 500,
            received_us: 0,
        });
        clock.add(ClockSample {
            sent_us: 10,
            server_us: 0,
            received_us: 5,
        });
        assert_eq!(clock.len(), 1, "a negative round trip is dropped");
        clock.add(ClockSample {
            sent_us: 100,
            server_us: 0,
            received_us: 200,
        });
        clock.add(ClockSample {
            sent_us: 300,
            server_us: 0,
            received_us: 400,
        });
        assert_eq!(clock.len(), 2);
        assert_eq!(
            clock.offset_us(),
            Some(-350),
            "the first sample was pushed out"
        );
    }
}
