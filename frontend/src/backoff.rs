//! Reconnect delays: exponential with jitter, so clients that lost the server together do not
//! come back together.

/// First retry after about this long.
pub const BASE_MS: u32 = 250;
/// No retry waits longer than this.
pub const CAP_MS: u32 = 10_000;

/// The delay before attempt `attempt` (1 for the first retry); `jitter` in `[0, 1)` picks a
/// point between half and all of the exponential delay.
pub fn delay_ms(attempt: u32, jitter: f64) -> u32 {
    let exponential = BASE_MS
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(CAP_MS);
    let half = exponential / 2;
    half + (f64::from(exponential - half) * jitter.clamp(0.0, 1.0)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_then_cap() {
        assert_eq!(delay_ms(1, 0.0), 125);
        assert_eq!(delay_ms(1, 0.999), 249);
        assert_eq!(delay_ms(3, 0.0), 500);
        assert_eq!(delay_ms(30, 0.0), CAP_MS / 2);
        assert!(delay_ms(30, 0.99) <= CAP_MS);
    }
}
