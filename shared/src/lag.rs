//! Rolling lag statistics over a time window.
//!
//! The app shows current, p50, p95 and max lag over the last 30 seconds. At the product's tick
//! rates a window holds a few thousand samples, so a sorted copy per summary is cheap and the
//! percentiles are exact (nearest rank), not bucketed.

use std::collections::VecDeque;

/// Percentiles and extremes of the samples in the window, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LagSummary {
    pub count: usize,
    /// The most recent sample.
    pub current_us: i64,
    pub mean_us: f64,
    pub p50_us: i64,
    pub p95_us: i64,
    pub p99_us: i64,
    pub max_us: i64,
}

impl LagSummary {
    /// Every figure moved by `by_us`: samples kept on the client's clock become lags once
    /// the clock offset is added (the same offset for all, so the percentiles move with it).
    pub fn shifted(self, by_us: i64) -> Self {
        Self {
            count: self.count,
            current_us: self.current_us + by_us,
            mean_us: self.mean_us + by_us as f64,
            p50_us: self.p50_us + by_us,
            p95_us: self.p95_us + by_us,
            p99_us: self.p99_us + by_us,
            max_us: self.max_us + by_us,
        }
    }
}

/// Lag samples of the last `window_us` microseconds, oldest first.
#[derive(Debug, Clone)]
pub struct LagWindow {
    window_us: i64,
    samples: VecDeque<(i64, i64)>,
}

impl LagWindow {
    pub fn new(window_us: i64) -> Self {
        Self {
            window_us,
            samples: VecDeque::new(),
        }
    }

    /// Records a lag of `lag_us` observed at `at_us` (any monotonic clock in microseconds),
    /// and forgets samples that fell out of the window.
    pub fn record(&mut self, at_us: i64, lag_us: i64) {
        self.samples.push_back((at_us, lag_us));
        self.expire(at_us);
    }

    /// Forgets samples older than the window as seen at `now_us`.
    pub fn expire(&mut self, now_us: i64) {
        while let Some(&(at, _)) = self.samples.front() {
            if now_us - at <= self.window_us {
                break;
            }
            self.samples.pop_front();
        }
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The summary of what is in the window, or `None` when it is empty.
    pub fn summary(&self) -> Option<LagSummary> {
        let &(_, current_us) = self.samples.back()?;
        let mut sorted: Vec<i64> = self.samples.iter().map(|&(_, lag)| lag).collect();
        sorted.sort_unstable();
        let sum: f64 = sorted.iter().map(|&lag| lag as f64).sum();
        Some(LagSummary {
            count: sorted.len(),
            current_us,
            mean_us: sum / sorted.len() as f64,
            p50_us: percentile(&sorted, 50.0),
            p95_us: percentile(&sorted, 95.0),
            p99_us: percentile(&sorted, 99.0),
            max_us: sorted[sorted.len() - 1],
        })
    }
}

/// The nearest-rank percentile `q` (0 to 100) of `sorted`, which must be sorted ascending and
/// not empty.
pub fn percentile(sorted: &[i64], q: f64) -> i64 {
    assert!(!sorted.is_empty(), "percentile of no samples");
    let rank = ((q / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let sorted: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&sorted, 50.0), 50);
        assert_eq!(percentile(&sorted, 95.0), 95);
        assert_eq!(percentile(&sorted, 100.0), 100);
        assert_eq!(percentile(&sorted, 0.0), 1);
        assert_eq!(percentile(&[7], 99.0), 7);
    }

    #[test]
    fn summary_over_the_window_only() {
        let mut window = LagWindow::new(30_000_000);
        window.record(0, 9_000);
        for i in 1..=10 {
            window.record(20_000_000 + i, i * 1_000);
        }
        // 31 s later than the first sample: it is gone, the rest stay.
        window.expire(30_000_001);
        let summary = window.summary().unwrap();
        assert_eq!(summary.count, 10);
        assert_eq!(summary.current_us, 10_000);
        assert_eq!(summary.p50_us, 5_000);
        assert_eq!(summary.max_us, 10_000);
        assert!((summary.mean_us - 5_500.0).abs() < 1e-9);
    }

    #[test]
    fn a_shifted_summary_moves_every_figure() {
        let mut window = LagWindow::new(30_000_000);
        for lag in [-3_000, -1_000, 2_000] {
            window.record(0, lag);
        }
        let shifted = window.summary().unwrap().shifted(5_000);
        assert_eq!(
            (shifted.current_us, shifted.p50_us, shifted.max_us),
            (7_000, 4_000, 7_000)
        );
        assert!((shifted.mean_us - (5_000.0 - 2_000.0 / 3.0)).abs() < 1e-9);
    }

    #[test]
    fn empty_window_has_no_summary() {
        let mut window = LagWindow::new(1_000);
        assert!(window.summary().is_none());
        window.record(0, 5);
        window.expire(5_000);
        assert!(window.is_empty());
    }
}
