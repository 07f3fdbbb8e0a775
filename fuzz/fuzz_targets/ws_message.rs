//! A WebSocket text message from a client: decoding never panics, and whatever decodes is a
//! message the server can act on.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = tickscope::transport::websocket::decode(text);
    }
});
