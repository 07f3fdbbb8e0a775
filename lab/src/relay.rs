//! The relay: packets read from one TUN device go through a [`Link`] and are written to the
//! other, in each direction, on plain threads.
//!
//! Each direction has a reader (waits on its device with `poll`, hands each packet to the
//! link) and a writer (sleeps until the link's next packet is due and writes it). Timers run
//! with a timer slack of one nanosecond, so a packet leaves within tens of microseconds of
//! its time rather than the default 50 µs slack later.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tickscope_shared::lab::Profile;

use crate::link::{Counts, Fate, Link, Queued};
use crate::tun::Tun;

/// How often an idle thread looks whether the relay is stopping.
const LOOK: Duration = Duration::from_millis(100);
/// Most packets moved under one lock.
const BURST: usize = 64;
/// Largest packet read: TUN devices here have an MTU of 1500, and nothing offloads.
const PACKET_MAX: usize = 65_536;

/// Whether every client connection has a path of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Paths {
    /// One path for everything, as one user's access line: a browser's connections share
    /// its rate and its queue.
    Shared,
    /// A path per client port (TCP or UDP), as if each connection were a user on a line of
    /// their own: 100 load clients over "3G" are 100 phones, not one phone with 100 tabs.
    PerFlow,
}

/// Flows idle this long are forgotten.
const FLOW_IDLE: Duration = Duration::from_secs(60);

/// One direction: its links (one, or one per flow) and the packets they let through, in one
/// queue by due time.
struct Direction {
    spec: tickscope_shared::lab::Direction,
    seed: u64,
    paths: Paths,
    links: HashMap<u16, (Link, Instant)>,
    queue: BinaryHeap<Reverse<Queued>>,
    order: u64,
    /// Counts of forgotten flows.
    gone: Counts,
}

impl Direction {
    fn send(&mut self, now: Instant, flow: u16, packet: Vec<u8>) {
        let key = match self.paths {
            Paths::Shared => 0,
            Paths::PerFlow => flow,
        };
        let (spec, seed) = (self.spec, self.seed);
        let (link, seen) = self.links.entry(key).or_insert_with(|| {
            let seed = seed ^ u64::from(key).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            (Link::new(spec, seed), now)
        });
        *seen = now;
        if let Fate::Leaves(leaves) = link.schedule(now, packet.len() as u64) {
            self.order += 1;
            self.queue.push(Reverse(Queued {
                leaves,
                order: self.order,
                packet,
            }));
        }
    }

    /// Forgets flows idle for [`FLOW_IDLE`], keeping their counts.
    fn forget(&mut self, now: Instant) {
        let gone = &mut self.gone;
        self.links.retain(|_, (link, seen)| {
            let keep = now.duration_since(*seen) < FLOW_IDLE || !link.idle_at(now);
            if !keep {
                add(gone, link.counts());
            }
            keep
        });
    }

    fn counts(&self) -> Counts {
        let mut total = self.gone;
        for (link, _) in self.links.values() {
            add(&mut total, link.counts());
        }
        total
    }
}

fn add(total: &mut Counts, more: Counts) {
    total.packets += more.packets;
    total.bytes += more.bytes;
    total.lost += more.lost;
    total.dropped += more.dropped;
}

struct Pipe {
    direction: Mutex<Direction>,
    due: Condvar,
    /// Where the client's port is in a packet: destination (2) going down, source (0) up.
    client_port_at: usize,
}

impl Pipe {
    fn direction(&self) -> MutexGuard<'_, Direction> {
        self.direction
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The client's port of an IPv4 TCP or UDP packet (`at` 0: source, 2: destination), or 0.
fn client_port(packet: &[u8], at: usize) -> u16 {
    let Some(&first) = packet.first() else {
        return 0;
    };
    let header = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || !matches!(packet.get(9), Some(6 | 17)) {
        return 0;
    }
    packet
        .get(header + at..header + at + 2)
        .map_or(0, |port| u16::from_be_bytes([port[0], port[1]]))
}

/// Both directions between a client-side and a server-side TUN device; stops when dropped.
pub struct Relay {
    down: Arc<Pipe>,
    up: Arc<Pipe>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Relay {
    /// Starts relaying with `profile`; `seed` makes its loss and jitter repeatable.
    pub fn start(client: Tun, server: Tun, profile: &Profile, paths: Paths, seed: u64) -> Self {
        let client = Arc::new(client);
        let server = Arc::new(server);
        let pipe = |spec, seed, client_port_at| {
            Arc::new(Pipe {
                direction: Mutex::new(Direction {
                    spec,
                    seed,
                    paths,
                    links: HashMap::new(),
                    queue: BinaryHeap::new(),
                    order: 0,
                    gone: Counts::default(),
                }),
                due: Condvar::new(),
                client_port_at,
            })
        };
        let down = pipe(profile.down, seed, 2);
        let up = pipe(profile.up, seed.wrapping_add(1), 0);
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for (from, to, pipe, name) in [
            (&server, &client, &down, "down"),
            (&client, &server, &up, "up"),
        ] {
            let (from, pipe_in, stop_in) = (from.clone(), pipe.clone(), stop.clone());
            threads.push(spawn(format!("lab-{name}-in"), move || {
                read(&from, &pipe_in, &stop_in)
            }));
            let (to, pipe_out, stop_out) = (to.clone(), pipe.clone(), stop.clone());
            threads.push(spawn(format!("lab-{name}-out"), move || {
                write(&to, &pipe_out, &stop_out)
            }));
        }
        Self {
            down,
            up,
            stop,
            threads,
        }
    }

    /// A handle to switch profiles and read counts from other threads.
    pub fn handle(&self) -> RelayHandle {
        RelayHandle {
            down: self.down.clone(),
            up: self.up.clone(),
        }
    }

    /// (down, up) counts since the start.
    pub fn counts(&self) -> (Counts, Counts) {
        self.handle().counts()
    }
}

/// Switches a running relay's profile.
#[derive(Clone)]
pub struct RelayHandle {
    down: Arc<Pipe>,
    up: Arc<Pipe>,
}

impl RelayHandle {
    /// From now on, packets meet `profile`; those already inside keep their times.
    pub fn set(&self, profile: &Profile) {
        for (pipe, spec) in [(&self.down, profile.down), (&self.up, profile.up)] {
            let mut direction = pipe.direction();
            direction.spec = spec;
            for (link, _) in direction.links.values_mut() {
                link.set(spec);
            }
        }
    }

    /// (down, up) counts since the start.
    pub fn counts(&self) -> (Counts, Counts) {
        (self.down.direction().counts(), self.up.direction().counts())
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for pipe in [&self.down, &self.up] {
            pipe.due.notify_all();
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn spawn(name: String, work: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            // SAFETY: prctl with an integer argument; affects only this thread.
            unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
            work()
        })
        .expect("spawning a relay thread")
}

fn read(from: &Tun, pipe: &Pipe, stop: &AtomicBool) {
    let mut buffer = vec![0; PACKET_MAX];
    let mut burst = Vec::with_capacity(BURST);
    while !stop.load(Ordering::SeqCst) {
        // Waits for the first packet, then takes what else is there at once.
        let mut wait = LOOK;
        while burst.len() < BURST {
            match from.read(&mut buffer, wait) {
                Ok(Some(len)) => burst.push(buffer[..len].to_vec()),
                Ok(None) => break,
                Err(error) => {
                    eprintln!("tickscope-lab: reading {}: {error}", from.name());
                    return;
                }
            }
            wait = Duration::ZERO;
        }
        if burst.is_empty() {
            continue;
        }
        let now = Instant::now();
        let mut direction = pipe.direction();
        for packet in burst.drain(..) {
            let flow = client_port(&packet, pipe.client_port_at);
            direction.send(now, flow, packet);
        }
        drop(direction);
        pipe.due.notify_one();
    }
}

fn write(to: &Tun, pipe: &Pipe, stop: &AtomicBool) {
    let mut due = Vec::with_capacity(BURST);
    let mut direction = pipe.direction();
    let mut forgot = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        while due.len() < BURST
            && direction
                .queue
                .peek()
                .is_some_and(|Reverse(queued)| queued.leaves <= now)
            && let Some(Reverse(queued)) = direction.queue.pop()
        {
            due.push(queued.packet);
        }
        if !due.is_empty() {
            drop(direction);
            for packet in due.drain(..) {
                // A packet the kernel refuses (the device going down at exit) is lost.
                let _ = to.write(&packet);
            }
            direction = pipe.direction();
            continue;
        }
        if now.duration_since(forgot) > FLOW_IDLE {
            direction.forget(now);
            forgot = now;
        }
        let next = direction.queue.peek().map(|Reverse(queued)| queued.leaves);
        let wait = next.map_or(LOOK, |due| due.duration_since(now).min(LOOK));
        direction = pipe
            .due
            .wait_timeout(direction, wait)
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_clients_port_in_tcp_and_udp_packets() {
        // An IPv4 head of 20 bytes (IHL 5), protocol TCP, then ports 40000 -> 8080.
        let mut packet = vec![0u8; 40];
        packet[0] = 0x45;
        packet[9] = 6;
        packet[20..22].copy_from_slice(&40000u16.to_be_bytes());
        packet[22..24].copy_from_slice(&8080u16.to_be_bytes());
        assert_eq!(client_port(&packet, 0), 40000);
        assert_eq!(client_port(&packet, 2), 8080);
        packet[9] = 17;
        assert_eq!(client_port(&packet, 0), 40000);
        // ICMP, IPv6 and a cut packet share path 0.
        packet[9] = 1;
        assert_eq!(client_port(&packet, 0), 0);
        packet[0] = 0x60;
        assert_eq!(client_port(&packet, 0), 0);
        assert_eq!(client_port(&[0x45, 0, 0], 0), 0);
    }
}
