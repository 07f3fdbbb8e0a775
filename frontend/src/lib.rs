//! tickscope's browser app.
//!
//! This first version is the shell: a watchlist that follows the feed by polling the
//! server with its cursor. The transport switch, charts and lag panel build on it.

mod api;
mod watchlist;

pub use watchlist::App;
