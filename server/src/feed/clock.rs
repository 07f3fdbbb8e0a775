//! The server's wall clock, in the unit the wire uses.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in Unix microseconds.
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since_epoch| since_epoch.as_micros() as i64)
}
