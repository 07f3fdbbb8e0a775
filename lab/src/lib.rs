//! The network lab: a link emulator in the design of mahimahi. IP packets are relayed between
//! two TUN devices, one in a server namespace and one on the client side, and each direction
//! meets its own delay, jitter, loss and bottleneck, so both ends run the kernel's real TCP
//! (slow start, retransmission, head-of-line blocking) over an emulated path.
//!
//! - [`link`]: one direction's scheduling, pure and unit-tested;
//! - [`tun`], [`netns`]: the devices and namespaces;
//! - [`relay`]: the threads that move packets through the links;
//! - [`lab`]: a whole lab, made and undone;
//! - [`control`]: the socket that switches a running lab's profile;
//! - [`probe`]: round trips and a bulk download through a lab.
//!
//! The profiles themselves are in `tickscope_shared::lab`, where the page reads them too.

pub mod control;
pub mod lab;
pub mod link;
pub mod netns;
pub mod probe;
pub mod relay;
pub mod tun;
