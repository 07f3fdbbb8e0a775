//! Wire types and pure logic shared by the tickscope server and its browser app.
//!
//! Nothing here does I/O, so the same code builds for the server (native) and the app
//! (`wasm32-unknown-unknown`) and is tested without sockets:
//!
//! - [`wire`]: the JSON shapes of ticks, batches, snapshots, candles and WebSocket messages;
//! - [`cursor`]: the cursor chain a client keeps to prove it lost and repeated nothing;
//! - [`lag`]: rolling lag statistics (current, p50, p95, p99, max over a time window);
//! - [`candles`]: folding trades into 1-second OHLC candles;
//! - [`lab`]: the network lab's named link profiles;
//! - [`clock`]: NTP-style clock-offset estimation, so lag is measured on the server's clock.

pub mod candles;
pub mod clock;
pub mod cursor;
pub mod lab;
pub mod lag;
pub mod wire;
