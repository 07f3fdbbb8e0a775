//! The five ways the feed travels, one file each: [`polling`], [`long_polling`],
//! [`websocket`], [`sse`] and [`stream`] (HTTP streaming). Each reads the feed through a
//! [`crate::feed::Subscription`]; the three push transports' bodies are [`push`]'s.

pub mod long_polling;
pub mod polling;
pub mod push;
pub mod sse;
pub mod stream;
pub mod websocket;
