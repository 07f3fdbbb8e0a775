//! tickscope's browser app: a live watchlist and chart fed by a transport the person picks,
//! with the lag and cost of that transport measured as it runs, and a compare mode that runs
//! all six side by side.
//!
//! - `api`: every HTTP call; `transport/`: the six feed clients, one local task each;
//! - `session`: the market and each running transport's chain, clock and statistics;
//! - `state`: what the components share (the loaded session, the mode);
//! - `stats`, `series`, `format`, `backoff`: plain logic with plain tests;
//! - `components/`: the page, one component per file.

mod api;
mod backoff;
mod components;
mod format;
mod series;
mod session;
mod state;
mod stats;
mod transport;

pub use components::app::App;
