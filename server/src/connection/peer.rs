//! Dead peers: a client that vanishes without closing (a laptop lid shut, a network gone).
//!
//! Every accepted connection gets a TCP user timeout and keepalive probes ([`on_connect`]), so
//! the kernel closes a connection whose peer acknowledges nothing for `--dead-peer-timeout-ms`
//! instead of retransmitting for 15 minutes. actix then drops the response body or the
//! handler's future, as it does when a client leaves, so the stream ends. To tell the two
//! apart in `/metrics`, a [`Watch`] asks the kernel, while the socket is still open, whether
//! it gave up on the peer: the connection is closed (no FIN came, so it is not half-closed)
//! after unanswered retransmissions or keepalive probes.

use std::time::Duration;

use actix_web::dev::Extensions;
use actix_web::rt::net::TcpStream;
use actix_web::{HttpRequest, HttpResponse};
use prometheus_client::metrics::counter::Counter;

use crate::metrics::{Metrics, Transport};

/// The connection's socket, kept in its extensions for [`Watch`]. Only its number is kept: actix owns the socket and closes it
/// after dropping the request's body and handler, so it is open while they are.
#[derive(Debug, Clone, Copy)]
pub struct Socket(i32);

impl Socket {
    /// The socket of `req`'s connection (none for a connection that is not TCP).
    pub fn of(req: &HttpRequest) -> Option<Socket> {
        req.conn_data::<Socket>().copied()
    }
}

/// Run for each accepted connection: makes the kernel close it when its peer acknowledges
/// nothing for `timeout` (sent data unacknowledged that long, or an idle connection's
/// keepalive probes, from half of `timeout` on, unanswered).
pub fn detect_dead(stream: &TcpStream, timeout: Duration) {
    let socket = socket2::SockRef::from(stream);
    // The kernel counts keepalive times in whole seconds, at least 1.
    let second = Duration::from_secs(1);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time((timeout / 2).max(second))
        .with_interval((timeout / 8).max(second))
        .with_retries(4);
    let set = socket
        .set_tcp_user_timeout(Some(timeout))
        .and_then(|()| socket.set_tcp_keepalive(&keepalive));
    if let Err(err) = set {
        tracing::warn!("setting dead-peer detection on a connection: {err}");
    }
}

/// Run for each accepted connection (`on_connect_ext`): keeps its socket for [`Watch`] and
/// the hang-up.
pub fn on_connect(stream: &TcpStream, extensions: &mut Extensions) {
    #[cfg(unix)]
    extensions.insert(Socket(std::os::fd::AsRawFd::as_raw_fd(stream)));
    #[cfg(not(unix))]
    let _ = extensions;
}

/// Counts a dead peer of its transport if, when dropped, the kernel has given up on the
/// request's connection. Held by a held request's handler, or by a stream's response body
/// ([`Watch::attach`]).
pub struct Watch {
    socket: Option<Socket>,
    dead: Counter,
}

impl Watch {
    pub fn new(req: &HttpRequest, metrics: &Metrics, transport: Transport) -> Self {
        Self {
            socket: Socket::of(req),
            dead: metrics.transport(transport).dead_peers.clone(),
        }
    }

    /// Leaves the watch with `response`: [`crate::connection::pieces`] moves it into the response's body,
    /// which the connection drops when it ends.
    pub fn attach(self, response: &mut HttpResponse) {
        response.extensions_mut().insert(self);
    }

    /// The request was answered: its peer was alive.
    pub fn answered(mut self) {
        self.socket = None;
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if self.socket.is_some_and(peer_vanished) {
            self.dead.inc();
        }
    }
}

/// `TCP_CLOSE` in the kernel's `tcp_states.h`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TCP_CLOSE: u8 = 7;

/// Whether the kernel closed the connection after retransmissions or keepalive probes went
/// unanswered. A peer that closed leaves it half-closed (`CLOSE_WAIT`), not closed; one that
/// reset it while acknowledging everything has no retransmissions or probes outstanding.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn peer_vanished(socket: Socket) -> bool {
    let mut info = std::mem::MaybeUninit::<libc::tcp_info>::zeroed();
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` is a zeroed `tcp_info` of `len` bytes, which the kernel fills at most;
    // `socket` is the connection's open socket (actix closes it only after dropping the body
    // and handler that hold the `Watch`), and the call only reads its state.
    let read = unsafe {
        libc::getsockopt(
            socket.0,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if read != 0 {
        return false;
    }
    // SAFETY: zeroed, then partly or wholly written by the kernel: every bit pattern is a
    // valid `tcp_info` (plain integers).
    let info = unsafe { info.assume_init() };
    info.tcpi_state == TCP_CLOSE && (info.tcpi_retransmits > 0 || info.tcpi_probes > 0)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn peer_vanished(_socket: Socket) -> bool {
    false
}
