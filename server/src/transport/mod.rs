//! The six ways the feed travels, one file each: [`polling`], [`long_polling`],
//! [`websocket`], [`sse`], [`stream`] (HTTP streaming) and [`webtransport`] (HTTP/3). Each reads the feed through a
//! [`crate::feed::Subscription`]. [`fanout`] writes each publish to every connection taken out
//! of actix-http (WebSockets, and SSE and HTTP streaming on HTTP/1.1); [`push`] opens the
//! streamed HTTP responses.

pub mod fanout;
pub mod long_polling;
pub mod polling;
pub mod push;
pub mod sse;
pub mod stream;
pub mod websocket;
pub mod webtransport;
