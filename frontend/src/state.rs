//! What the components share: the loaded session and the mode the page is in. It sits below
//! the components, so each imports it downward instead of from the page that owns it.

use leptos::prelude::*;

use crate::session::Session;
use crate::transport::{Transport, TransportKind};

/// What the page shows: one transport, or all side by side (with `versions`, each HTTP one
/// over HTTP/2 and over HTTP/1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Single(TransportKind),
    Compare { versions: bool },
}

impl Mode {
    /// The transports the mode runs; `webtransport`: whether the server and browser have it.
    pub fn transports(self, webtransport: bool) -> Vec<Transport> {
        match self {
            Mode::Single(kind) => vec![kind.into()],
            Mode::Compare { versions } => Transport::compared(versions, webtransport),
        }
    }
}

/// The session, once loaded. Local storage: it holds `Rc`s and never leaves this thread.
pub type SessionStore = StoredValue<Option<Session>, LocalStorage>;
