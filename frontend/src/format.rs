//! How numbers read in the app.

/// A lag in microseconds as milliseconds, with more precision when small.
pub fn lag_ms(us: i64) -> String {
    let ms = us as f64 / 1000.0;
    if ms.abs() < 10.0 {
        format!("{ms:.2} ms")
    } else if ms.abs() < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.2} s", ms / 1000.0)
    }
}

/// A lag that may be smaller than the clock offset's error bound: below it, the lag is only
/// known to be within the bound ("< 0.30 ms"), never shown as a negative number.
pub fn lag_within(us: i64, error_us: Option<i64>) -> String {
    match error_us {
        Some(error) if us < error => format!("< {}", lag_ms(error.max(1))),
        _ => lag_ms(us),
    }
}

/// A byte count with a binary unit.
pub fn bytes(bytes: f64) -> String {
    if bytes < 1024.0 {
        format!("{bytes:.0} B")
    } else if bytes < 1024.0 * 1024.0 {
        format!("{:.1} KiB", bytes / 1024.0)
    } else {
        format!("{:.1} MiB", bytes / 1024.0 / 1024.0)
    }
}

/// Bytes per delivered tick, or a dash while no tick came.
pub fn bytes_per_tick(bytes: Option<f64>) -> String {
    bytes.map_or_else(|| "-".to_owned(), |bytes| format!("{bytes:.0} B"))
}

/// Requests per delivered tick, or a dash.
pub fn per_tick(count: Option<f64>) -> String {
    count.map_or_else(|| "-".to_owned(), |count| format!("{count:.2}"))
}

/// Bytes per second with a binary unit.
pub fn bytes_per_s(per_s: f64) -> String {
    format!("{}/s", bytes(per_s))
}

/// A share as a percentage, or a dash when there is nothing to share.
pub fn share(part: Option<f64>) -> String {
    part.map_or_else(|| "-".to_owned(), |part| format!("{:.0}%", part * 100.0))
}

/// A price change and its percentage of the opening price: `+1.25 (+0.88%)`.
pub fn change(price: f64, open: f64) -> String {
    let change = price - open;
    format!("{change:+.2} ({:+.2}%)", change / open * 100.0)
}

/// A rate with one decimal.
pub fn rate(per_s: f64) -> String {
    format!("{per_s:.1}/s")
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

/// A protocol as Resource Timing's `nextHopProtocol` names it, as a person reads it: `h2` on
/// an https page is "HTTP/2 over TLS".
pub fn protocol(next_hop: &str, secure: bool) -> String {
    let name = match next_hop {
        "http/1.0" => "HTTP/1.0",
        "http/1.1" => "HTTP/1.1",
        "h2" | "h2c" => "HTTP/2",
        // QUIC always carries TLS 1.3 inside it.
        "h3" => return "HTTP/3 over QUIC".into(),
        other => other,
    };
    if secure {
        format!("{name} over TLS")
    } else {
        name.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lag_below_the_offset_error_reads_as_within_it() {
        assert_eq!(lag_within(-1_540, Some(300)), "< 0.30 ms");
        assert_eq!(lag_within(120, Some(300)), "< 0.30 ms");
        assert_eq!(lag_within(300, Some(300)), "0.30 ms");
        assert_eq!(lag_within(-5, None), "-0.01 ms");
        assert_eq!(lag_within(-5, Some(0)), "< 0.00 ms");
        assert_eq!(bytes(640.0), "640 B");
        assert_eq!(bytes(8_800.0), "8.6 KiB");
        assert_eq!(bytes_per_tick(Some(62.4)), "62 B");
        assert_eq!(per_tick(None), "-");
    }

    #[test]
    fn lags_read_in_sensible_units() {
        assert_eq!(lag_ms(340), "0.34 ms");
        assert_eq!(lag_ms(42_400), "42 ms");
        assert_eq!(lag_ms(1_250_000), "1.25 s");
    }

    #[test]
    fn bytes_shares_and_changes() {
        assert_eq!(bytes_per_s(512.0), "512 B/s");
        assert_eq!(bytes_per_s(7_782.4), "7.6 KiB/s");
        assert_eq!(share(Some(0.126)), "13%");
        assert_eq!(share(None), "-");
        assert_eq!(change(101.0, 100.0), "+1.00 (+1.00%)");
        assert_eq!(change(99.5, 100.0), "-0.50 (-0.50%)");
    }

    #[test]
    fn clock_labels() {
        assert_eq!(clock_label(1_795_486_804), "02:20:04");
        assert_eq!(clock_label(-1), "23:59:59");
    }

    #[test]
    fn protocols_read_as_people_name_them() {
        assert_eq!(protocol("h2", true), "HTTP/2 over TLS");
        assert_eq!(protocol("http/1.1", false), "HTTP/1.1");
        // QUIC carries its own TLS, from an http page too (WebTransport).
        assert_eq!(protocol("h3", true), "HTTP/3 over QUIC");
        assert_eq!(protocol("h3", false), "HTTP/3 over QUIC");
    }
}
