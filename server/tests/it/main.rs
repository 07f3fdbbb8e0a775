//! Integration tests: the real server on an ephemeral port, real HTTP, WebSocket and SSE
//! clients over loopback.

mod bad_input;
mod binary;
mod browser;
mod capture;
mod chromedriver;
mod clock_skew;
mod cluster;
mod dead_peer;
mod deploy;
mod docs;
mod frame_limit;
mod helpers;
mod lab;
mod limits;
mod long_poll;
mod nats;
mod operations;
mod proxy;
mod reconnects;
mod resume;
mod shutdown;
mod slow;
mod stream;
mod tabs;
mod tls;
mod transports;
mod untouched;
mod versions;
mod webtransport;
mod wire;
