//! The page's components, one per file. They read the session at each frame (a few times a
//! second), so the page's cost does not grow with the tick rate.

pub mod app;
mod chart;
mod compare;
mod explain;
mod lag_panel;
mod network;
mod switch;
mod theme;
mod watchlist;
