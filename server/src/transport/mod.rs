//! The four ways the feed travels, one file each: [`polling`], [`long_polling`],
//! [`websocket`] and [`sse`]. Each reads the feed through a [`crate::feed::Subscription`].

pub mod long_polling;
pub mod polling;
pub mod push;
pub mod sse;
pub mod websocket;
