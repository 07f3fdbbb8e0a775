//! 1-second OHLC candles: how a trade folds into the candle of its second. The server keeps
//! candles for `/api/history` and the app builds the same from live ticks, by this one rule.

use std::collections::VecDeque;

use crate::wire::Candle;

/// Folds a trade at `ts_us` (Unix microseconds) into `candles` (oldest first): into the
/// newest candle when it is of the same second, else into a new one. Candles that started
/// `keep_s` or more seconds before the trade's second are dropped. A trade from before the
/// newest candle's second (a clock step back) is ignored, so candles stay in order.
pub fn add_trade(candles: &mut VecDeque<Candle>, ts_us: i64, price: f64, volume: u64, keep_s: i64) {
    let second = ts_us.div_euclid(1_000_000);
    match candles.back_mut() {
        Some(candle) if candle.t == second => {
            candle.high = candle.high.max(price);
            candle.low = candle.low.min(price);
            candle.close = price;
            candle.volume += volume;
            candle.ticks += 1;
        }
        Some(candle) if candle.t > second => return,
        _ => candles.push_back(Candle {
            t: second,
            open: price,
            high: price,
            low: price,
            close: price,
            volume,
            ticks: 1,
        }),
    }
    while candles
        .front()
        .is_some_and(|candle| candle.t <= second - keep_s)
    {
        candles.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trades_of_one_second_fold_into_one_candle() {
        let mut candles = VecDeque::new();
        add_trade(&mut candles, 5_000_000, 10.0, 100, 900);
        add_trade(&mut candles, 5_400_000, 12.0, 100, 900);
        add_trade(&mut candles, 5_900_000, 9.0, 100, 900);
        add_trade(&mut candles, 6_100_000, 11.0, 100, 900);
        assert_eq!(candles.len(), 2);
        let first = &candles[0];
        assert_eq!(
            (
                first.t,
                first.open,
                first.high,
                first.low,
                first.close,
                first.volume,
                first.ticks
            ),
            (5, 10.0, 12.0, 9.0, 9.0, 300, 3)
        );
    }

    #[test]
    fn old_candles_go_and_late_trades_are_ignored() {
        let mut candles = VecDeque::new();
        add_trade(&mut candles, 6_000_000, 11.0, 100, 900);
        add_trade(&mut candles, 5_000_000, 99.0, 100, 900);
        assert_eq!((candles.len(), candles[0].high), (1, 11.0));
        add_trade(&mut candles, 906_000_000, 11.0, 100, 900);
        assert_eq!(candles.len(), 1, "the candle of second 6 is 900 s old");
    }
}
