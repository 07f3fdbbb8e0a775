//! A lab: a server namespace and a client side (the host, or a namespace of its own), each
//! with a TUN device, and the relay between them.
//!
//! ```text
//!  client side                                         server namespace
//!  198.18.N.1 ── TUN ══ relay: up link  ═══▶ TUN ── 198.18.N.2
//!                    ◀═══════ down link ══
//! ```
//!
//! Addresses are from 198.18.0.0/15, the range RFC 2544 sets aside for benchmarking
//! networks. Everything is undone when the lab is dropped: the relay stops, its devices go
//! with their descriptors, and the namespaces are deleted.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use tickscope_shared::lab::Profile;

use crate::netns::{self, Namespace};
use crate::relay::{Paths, Relay, RelayHandle};
use crate::tun::Tun;

/// Where running labs leave their pid (and the control socket, by default).
pub const RUN_DIR: &str = "/run/tickscope-lab";
/// Every lab namespace starts with this.
pub const PREFIX: &str = "tslab-";

/// Where the client's traffic comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientSide {
    /// This machine's own network: a browser on the host reaches the server through the link.
    Host,
    /// A namespace of its own, for load generators and tests.
    Namespace,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Up to 9 characters: the host's device is `tslab-<name>`.
    pub name: String,
    /// The third byte of the lab's addresses (198.18.N.0/30), so host labs can differ.
    pub subnet: u8,
    pub client: ClientSide,
    pub profile: &'static Profile,
    pub paths: Paths,
    pub seed: u64,
}

/// A running lab.
pub struct Lab {
    // Fields drop in this order: the relay (and its devices) before the namespaces.
    relay: Relay,
    server: Namespace,
    client: Option<Namespace>,
    active: Arc<Mutex<&'static Profile>>,
    pid_file: PathBuf,
    config: Config,
}

impl Lab {
    pub fn up(config: Config) -> anyhow::Result<Self> {
        let name = &config.name;
        if name.is_empty() || name.len() > 9 || !name.bytes().all(|b| b.is_ascii_alphanumeric()) {
            bail!("lab name {name:?}: 1 to 9 letters or digits");
        }
        std::fs::create_dir_all(RUN_DIR).with_context(|| format!("creating {RUN_DIR}"))?;
        let pid_file = PathBuf::from(format!("{RUN_DIR}/{name}.pid"));
        if let Some(pid) = owner(&pid_file) {
            bail!("lab {name} already runs (pid {pid}); stop it first");
        }
        remove_namespaces_of(name);
        std::fs::write(&pid_file, std::process::id().to_string())
            .with_context(|| format!("writing {}", pid_file.display()))?;
        let made = Self::make(&config, pid_file.clone());
        if made.is_err() {
            let _ = std::fs::remove_file(&pid_file);
        }
        made
    }

    fn make(config: &Config, pid_file: PathBuf) -> anyhow::Result<Self> {
        let name = &config.name;
        let (client_ip, server_ip) = (
            format!("198.18.{}.1", config.subnet),
            format!("198.18.{}.2", config.subnet),
        );
        let server = Namespace::create(&format!("{PREFIX}{name}-srv"))?;
        let server_tun = server.run(|| Tun::create("lab0"))??;
        netns::ip(&[
            "-n",
            server.name(),
            "addr",
            "add",
            &format!("{server_ip}/30"),
            "dev",
            "lab0",
        ])?;
        netns::ip(&["-n", server.name(), "link", "set", "lab0", "up"])?;
        let (client, client_tun) = match config.client {
            ClientSide::Namespace => {
                let client = Namespace::create(&format!("{PREFIX}{name}-cli"))?;
                let tun = client.run(|| Tun::create("lab0"))??;
                netns::ip(&[
                    "-n",
                    client.name(),
                    "addr",
                    "add",
                    &format!("{client_ip}/30"),
                    "dev",
                    "lab0",
                ])?;
                netns::ip(&["-n", client.name(), "link", "set", "lab0", "up"])?;
                (Some(client), tun)
            }
            ClientSide::Host => {
                let prefix = format!("198.18.{}.0/30", config.subnet);
                let routes = std::process::Command::new("ip")
                    .args(["route", "show", &prefix])
                    .output()
                    .context("running `ip route`")?;
                if !routes.stdout.is_empty() {
                    bail!("{prefix} is routed on this host already (another lab?); pick --subnet");
                }
                let device = format!("{PREFIX}{name}");
                let tun = Tun::create(&device).context("making the host's TUN device")?;
                let _ = std::fs::write(
                    format!("/proc/sys/net/ipv6/conf/{device}/disable_ipv6"),
                    "1",
                );
                netns::ip(&["addr", "add", &format!("{client_ip}/30"), "dev", &device])?;
                netns::ip(&["link", "set", &device, "up"])?;
                (None, tun)
            }
        };
        let relay = Relay::start(
            client_tun,
            server_tun,
            config.profile,
            config.paths,
            config.seed,
        );
        Ok(Self {
            relay,
            server,
            client,
            active: Arc::new(Mutex::new(config.profile)),
            pid_file,
            config: config.clone(),
        })
    }

    pub fn client_ip(&self) -> String {
        format!("198.18.{}.1", self.config.subnet)
    }

    pub fn server_ip(&self) -> String {
        format!("198.18.{}.2", self.config.subnet)
    }

    pub fn server_namespace(&self) -> &Namespace {
        &self.server
    }

    /// The client's namespace, unless the client side is the host.
    pub fn client_namespace(&self) -> Option<&Namespace> {
        self.client.as_ref()
    }

    pub fn relay(&self) -> &Relay {
        &self.relay
    }

    /// A handle that switches the profile from another thread (the control socket's).
    pub fn switch(&self) -> Switch {
        Switch {
            relay: self.relay.handle(),
            active: self.active.clone(),
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.pid_file);
    }
}

/// Switches a running lab's profile.
#[derive(Clone)]
pub struct Switch {
    relay: RelayHandle,
    active: Arc<Mutex<&'static Profile>>,
}

impl Switch {
    pub fn set(&self, profile: &'static Profile) {
        let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        self.relay.set(profile);
        *active = profile;
    }

    pub fn active(&self) -> &'static Profile {
        *self.active.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The live process a pid file names, if any.
fn owner(pid_file: &std::path::Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    std::path::Path::new(&format!("/proc/{pid}"))
        .exists()
        .then_some(pid)
}

fn remove_namespaces_of(name: &str) {
    for side in ["srv", "cli"] {
        let namespace = format!("{PREFIX}{name}-{side}");
        if netns::list().contains(&namespace) {
            let _ = netns::ip(&["netns", "del", &namespace]);
        }
    }
}

/// Removes what labs that died without cleaning up left behind: namespaces, pid files and
/// control sockets of labs whose process is gone. Returns the namespaces removed.
pub fn clean_stale() -> Vec<String> {
    let mut removed = Vec::new();
    for namespace in netns::list() {
        let Some(rest) = namespace.strip_prefix(PREFIX) else {
            continue;
        };
        let Some((name, _side)) = rest.rsplit_once('-') else {
            continue;
        };
        let pid_file = PathBuf::from(format!("{RUN_DIR}/{name}.pid"));
        if owner(&pid_file).is_none() && netns::ip(&["netns", "del", &namespace]).is_ok() {
            let _ = std::fs::remove_file(&pid_file);
            let _ = std::fs::remove_file(format!("{RUN_DIR}/{name}.sock"));
            removed.push(namespace);
        }
    }
    removed
}
