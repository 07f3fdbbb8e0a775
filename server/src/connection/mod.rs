//! The connection layer, under every transport: what a socket carries and what a client may
//! make the server hold.
//!
//! - [`wire`]: every byte on each connection, both ways, charged to its transport and meter;
//! - [`tls`]: HTTPS, and the socket type actix-http serves ([`tls::Io`]);
//! - [`peer`]: finding and counting peers that vanished;
//! - [`forwarded`]: requests through a reverse proxy: the client behind it, and the signs of it;
//! - [`limits`]: connections per server and per address, and the poll rate;
//! - [`origin`]: which pages may open streams, and who may read cross-origin answers;
//! - [`frame_guard`]: WebSocket frames refused at their header;
//! - [`certs`]: the self-made, rotated certificates WebTransport pins;
//! - [`pieces`]: response bodies in pieces, so write buffers stay small.

pub mod certs;
pub mod forwarded;
pub mod frame_guard;
pub mod limits;
pub mod origin;
pub mod peer;
pub mod pieces;
pub mod tls;
pub mod wire;
