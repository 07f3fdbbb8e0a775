//! Chart geometry: scales from data to pixels and "nice" axis ticks. Pure, so the chart's
//! arithmetic is tested without drawing.

/// A linear map from a data range onto a pixel range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scale {
    pub from: (f64, f64),
    pub to: (f64, f64),
}

impl Scale {
    pub fn new(from: (f64, f64), to: (f64, f64)) -> Self {
        // A flat range (one price) still needs a span to divide by.
        let from = if (from.1 - from.0).abs() < 1e-12 {
            (from.0 - 0.5, from.1 + 0.5)
        } else {
            from
        };
        Self { from, to }
    }

    pub fn map(&self, value: f64) -> f64 {
        let fraction = (value - self.from.0) / (self.from.1 - self.from.0);
        self.to.0 + fraction * (self.to.1 - self.to.0)
    }

    /// The data value at a pixel: the inverse of [`Scale::map`].
    pub fn invert(&self, pixel: f64) -> f64 {
        let fraction = (pixel - self.to.0) / (self.to.1 - self.to.0);
        self.from.0 + fraction * (self.from.1 - self.from.0)
    }
}

/// About `count` round values (1, 2 or 5 times a power of ten apart, whichever step is
/// nearest an even split) inside `low..=high`.
pub fn nice_ticks(low: f64, high: f64, count: usize) -> Vec<f64> {
    if high <= low || high.is_nan() || low.is_nan() || count == 0 {
        return vec![low];
    }
    let raw = (high - low) / count as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .min_by(|a, b| (a - raw).abs().total_cmp(&(b - raw).abs()))
        .expect("four candidates");
    let first = (low / step).ceil() as i64;
    let last = (high / step).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

/// A log10 scale for lags: values are clamped into `from` (both above 0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogScale {
    linear: Scale,
}

impl LogScale {
    pub fn new(from: (f64, f64), to: (f64, f64)) -> Self {
        Self {
            linear: Scale::new((from.0.log10(), from.1.log10()), to),
        }
    }

    pub fn map(&self, value: f64) -> f64 {
        let (low, high) = self.linear.from;
        self.linear.map(value.max(1e-9).log10().clamp(low, high))
    }
}

/// `HH:MM:SS` (UTC) of a Unix second.
pub fn clock_label(unix_s: i64) -> String {
    let of_day = unix_s.rem_euclid(86_400);
    format!(
        "{:02}:{:02}:{:02}",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_map_and_invert() {
        let scale = Scale::new((100.0, 200.0), (300.0, 0.0));
        assert_eq!(scale.map(100.0), 300.0);
        assert_eq!(scale.map(150.0), 150.0);
        assert_eq!(scale.invert(0.0), 200.0);
        let flat = Scale::new((5.0, 5.0), (0.0, 100.0));
        assert_eq!(flat.map(5.0), 50.0);
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(
            nice_ticks(0.0, 10.0, 5),
            vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
        );
        let ticks = nice_ticks(142.13, 142.97, 4);
        assert_eq!(ticks.len(), 4);
        assert!((ticks[0] - 142.2).abs() < 1e-9);
        assert_eq!(nice_ticks(3.0, 3.0, 4), vec![3.0]);
    }

    #[test]
    fn log_scale_clamps() {
        let scale = LogScale::new((0.1, 10_000.0), (100.0, 0.0));
        assert_eq!(scale.map(0.1), 100.0);
        assert_eq!(scale.map(10_000.0), 0.0);
        assert_eq!(scale.map(0.0), 100.0);
        assert!(
            (scale.map(10.0) - 60.0).abs() < 1e-9,
            "10 is 2 of the 5 decades up"
        );
    }

    #[test]
    fn clock_labels() {
        assert_eq!(clock_label(1_795_486_804), "02:20:04");
    }
}
