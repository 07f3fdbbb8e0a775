//! Price series the watchlist and chart draw from: 1-second candles per symbol (backfilled
//! from `/api/history`, then built from live ticks) and a short sparkline of recent prices.

use std::collections::VecDeque;

use tickscope_shared::candles::add_trade;
use tickscope_shared::wire::{Candle, Tick};

/// Candles kept per symbol: the chart's longest range, 15 minutes.
pub const CANDLE_KEEP_S: i64 = 15 * 60;
/// Prices kept for a sparkline.
pub const SPARK_POINTS: usize = 60;

/// One symbol's 1-second candles, oldest first, at most [`CANDLE_KEEP_S`] old.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CandleSeries {
    candles: VecDeque<Candle>,
}

impl CandleSeries {
    /// Puts history under what live ticks already built: candles of seconds the series does
    /// not cover yet are taken, newer ones are kept as they are.
    pub fn backfill(&mut self, history: Vec<Candle>) {
        let first_live = self.candles.front().map(|candle| candle.t);
        let older: Vec<Candle> = history
            .into_iter()
            .filter(|candle| first_live.is_none_or(|first| candle.t < first))
            .collect();
        for candle in older.into_iter().rev() {
            self.candles.push_front(candle);
        }
    }

    /// Folds a tick into the candle of its second.
    pub fn add(&mut self, tick: &Tick) {
        add_trade(
            &mut self.candles,
            tick.ts,
            tick.price,
            tick.volume,
            CANDLE_KEEP_S,
        );
    }

    /// The candles that started in the `seconds` up to `now_s`.
    pub fn last(&self, now_s: i64, seconds: i64) -> Vec<Candle> {
        self.candles
            .iter()
            .filter(|candle| candle.t > now_s - seconds)
            .cloned()
            .collect()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.candles.len()
    }
}

/// The last [`SPARK_POINTS`] prices of a symbol.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sparkline {
    prices: VecDeque<f64>,
}

impl Sparkline {
    pub fn add(&mut self, price: f64) {
        if self.prices.len() == SPARK_POINTS {
            self.prices.pop_front();
        }
        self.prices.push_back(price);
    }

    /// An SVG path through the prices in a `width` x `height` box; empty with fewer than two.
    pub fn path(&self, width: f64, height: f64) -> String {
        if self.prices.len() < 2 {
            return String::new();
        }
        let (low, high) = self
            .prices
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &p| (lo.min(p), hi.max(p)));
        let span = (high - low).max(1e-9);
        let step = width / (SPARK_POINTS - 1) as f64;
        let offset = (SPARK_POINTS - self.prices.len()) as f64 * step;
        let mut path = String::new();
        for (index, price) in self.prices.iter().enumerate() {
            let x = offset + index as f64 * step;
            let y = height - (price - low) / span * height;
            path.push_str(&format!(
                "{}{x:.1},{y:.1}",
                if index == 0 { 'M' } else { 'L' }
            ));
        }
        path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(ts_s: f64, price: f64) -> Tick {
        Tick {
            seq: 1,
            symbol: "ACME".into(),
            price,
            bid: price,
            ask: price,
            volume: 100,
            ts: (ts_s * 1e6) as i64,
        }
    }

    fn candle(t: i64, close: f64) -> Candle {
        Candle {
            t,
            open: close,
            high: close,
            low: close,
            close,
            volume: 100,
            ticks: 1,
        }
    }

    #[test]
    fn backfill_goes_under_live_candles_without_doubling() {
        let mut series = CandleSeries::default();
        series.add(&tick(100.5, 9.0));
        series.backfill(vec![candle(98, 1.0), candle(99, 2.0), candle(100, 3.0)]);
        let closes: Vec<f64> = series.last(100, 60).iter().map(|c| c.close).collect();
        assert_eq!(closes, [1.0, 2.0, 9.0]);
    }

    #[test]
    fn old_candles_are_dropped_and_ranges_cut() {
        let mut series = CandleSeries::default();
        series.add(&tick(0.0, 1.0));
        series.add(&tick(500.0, 2.0));
        assert_eq!(series.last(500, 60).len(), 1);
        series.add(&tick(950.0, 3.0));
        assert_eq!(
            series.len(),
            2,
            "the candle of second 0 is over 15 minutes old"
        );
    }

    #[test]
    fn sparkline_path_spans_the_box() {
        let mut spark = Sparkline::default();
        assert_eq!(spark.path(60.0, 20.0), "");
        for price in [1.0, 3.0, 2.0] {
            spark.add(price);
        }
        let path = spark.path(59.0, 20.0);
        // Three of sixty points: drawn at the right end, lowest at the bottom, highest at the top.
        assert_eq!(path, "M57.0,20.0L58.0,0.0L59.0,10.0");
    }
}
