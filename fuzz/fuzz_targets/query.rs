//! A query string and `Last-Event-ID` from a client: every accessor the endpoints use either
//! gives a value or an error, never a panic.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tickscope::query::{Params, parse_number};
use tickscope::feed::symbols::Universe;

static UNIVERSE: LazyLock<Universe> =
    LazyLock::new(|| Universe::generate(12, &mut StdRng::seed_from_u64(1)));

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_number("Last-Event-ID", text.trim(), u64::MAX);
    if let Ok(params) = Params::parse(text) {
        let _ = params.since();
        let _ = params.symbols(&UNIVERSE, 100);
        let _ = params.number("timeout_ms", 60_000);
        let _ = params.number("seconds", 900);
        let _ = params.get("symbol");
    }
});
