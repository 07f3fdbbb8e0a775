//! The six ways the feed travels, one file each: [`polling`], [`long_polling`],
//! [`websocket`], [`sse`], [`stream`] (HTTP streaming) and [`webtransport`] (HTTP/3). Each reads the feed through a
//! [`crate::feed::Subscription`]; the three push transports' bodies are [`push`]'s.

pub mod long_polling;
pub mod polling;
pub mod push;
pub mod sse;
pub mod stream;
pub mod websocket;
pub mod webtransport;
