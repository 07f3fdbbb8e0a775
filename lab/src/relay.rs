//! The relay: packets read from one TUN device go through a [`Link`] and are written to the
//! other, in each direction, on plain threads.
//!
//! Each direction has a reader (waits on its device with `poll`, hands each packet to the
//! link) and a writer (sleeps until the link's next packet is due and writes it). Timers run
//! with a timer slack of one nanosecond, so a packet leaves within tens of microseconds of
//! its time rather than the default 50 µs slack later.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tickscope_shared::lab::{Direction, Profile};

use crate::link::{Counts, Link};
use crate::tun::Tun;

/// How often an idle thread looks whether the relay is stopping.
const LOOK: Duration = Duration::from_millis(100);
/// Largest packet read: TUN devices here have an MTU of 1500, and nothing offloads.
const PACKET_MAX: usize = 65_536;

struct Pipe {
    link: Mutex<Link>,
    due: Condvar,
}

impl Pipe {
    fn link(&self) -> MutexGuard<'_, Link> {
        self.link
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
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
    pub fn start(client: Tun, server: Tun, profile: &Profile, seed: u64) -> Self {
        let client = Arc::new(client);
        let server = Arc::new(server);
        let pipe = |spec: Direction, seed| {
            Arc::new(Pipe {
                link: Mutex::new(Link::new(spec, seed)),
                due: Condvar::new(),
            })
        };
        let down = pipe(profile.down, seed);
        let up = pipe(profile.up, seed.wrapping_add(1));
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
        self.down.link().set(profile.down);
        self.up.link().set(profile.up);
    }

    /// (down, up) counts since the start.
    pub fn counts(&self) -> (Counts, Counts) {
        (self.down.link().counts(), self.up.link().counts())
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
    while !stop.load(Ordering::SeqCst) {
        match from.read(&mut buffer, LOOK) {
            Ok(Some(len)) => {
                let now = Instant::now();
                pipe.link().send(now, buffer[..len].to_vec());
                pipe.due.notify_one();
            }
            Ok(None) => {}
            Err(error) => {
                eprintln!("tickscope-lab: reading {}: {error}", from.name());
                return;
            }
        }
    }
}

fn write(to: &Tun, pipe: &Pipe, stop: &AtomicBool) {
    let mut link = pipe.link();
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        if let Some(packet) = link.take_due(now) {
            drop(link);
            // A packet the kernel refuses (the device going down at exit) is a packet lost.
            let _ = to.write(&packet);
            link = pipe.link();
            continue;
        }
        let wait = link
            .next_due()
            .map_or(LOOK, |due| due.duration_since(now).min(LOOK));
        link = pipe
            .due
            .wait_timeout(link, wait)
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .0;
    }
}
