//! Network namespaces by name (`ip netns`), and running a closure inside one.
//!
//! `setns` moves only the calling thread, so [`Namespace::run`] does its work on a thread of
//! its own; what it makes there (a TUN device, a socket) stays in that namespace while the
//! descriptor lives in the whole process.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;

use anyhow::{Context, bail};

/// Runs `ip` with `args`, failing with its message.
pub fn ip(args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .context("running `ip` (iproute2; `just lab` and `just test` install it)")?;
    if !output.status.success() {
        bail!(
            "ip {}: {} (the lab needs root: namespaces and TUN devices)",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// The names `ip netns list` shows.
pub fn list() -> Vec<String> {
    let output = Command::new("ip").args(["netns", "list"]).output();
    let Ok(output) = output else {
        return Vec::new();
    };
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// A named network namespace, deleted when dropped.
pub struct Namespace {
    name: String,
}

impl Namespace {
    /// Makes the namespace with its loopback up and IPv6 off (the lab is IPv4; router
    /// solicitations would only add packets to the link).
    pub fn create(name: &str) -> anyhow::Result<Self> {
        ip(&["netns", "add", name])?;
        let namespace = Self {
            name: name.to_owned(),
        };
        ip(&["-n", name, "link", "set", "lo", "up"])?;
        namespace.run(|| {
            std::fs::write("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1")
                .and_then(|()| std::fs::write("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1"))
                .context("turning IPv6 off in the namespace")
        })??;
        Ok(namespace)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `work` on a thread inside this namespace.
    pub fn run<T: Send>(&self, work: impl FnOnce() -> T + Send) -> anyhow::Result<T> {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    enter(&path)?;
                    Ok(work())
                })
                .join()
                .map_err(|_| anyhow::anyhow!("the thread in namespace {} panicked", self.name))?
        })
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        if let Err(error) = ip(&["netns", "del", &self.name]) {
            eprintln!("tickscope-lab: {error:#}");
        }
    }
}

/// Moves the calling thread into the namespace mounted at `path`.
fn enter(path: &str) -> anyhow::Result<()> {
    let c_path = CString::new(path).context("a namespace path without NUL")?;
    // SAFETY: a valid C string; the descriptor is owned from here on.
    let raw = unsafe { libc::open(c_path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("opening {path}"));
    }
    // SAFETY: just opened, owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: setns on a namespace descriptor affects only this thread.
    if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } < 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("entering {path}"));
    }
    Ok(())
}
