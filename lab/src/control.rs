//! The control socket: a Unix socket on which a running lab answers one line per request.
//!
//! - `get` answers `{"active":"<profile>"}`;
//! - `set <profile>` switches and answers the same, or `{"error":"..."}` for an unknown one.
//!
//! The server (`--lab-control`) talks to it for `/api/lab`; `tickscope-lab set` too.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use tickscope_shared::lab;

use crate::lab::Switch;

/// Longest request line read.
const LINE_MAX: u64 = 256;

/// Serves the socket at `path` on a thread of its own; the file goes when this is dropped.
pub struct Control {
    path: PathBuf,
}

impl Control {
    pub fn serve(path: &Path, switch: Switch) -> anyhow::Result<Self> {
        let _ = std::fs::remove_file(path);
        let listener =
            UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
        std::thread::Builder::new()
            .name("lab-control".into())
            .spawn(move || {
                for stream in listener.incoming().flatten() {
                    let _ = answer(stream, &switch);
                }
            })
            .context("spawning the control thread")?;
        Ok(Self {
            path: path.to_owned(),
        })
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn answer(stream: UnixStream, switch: &Switch) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut line = String::new();
    BufReader::new((&stream).take(LINE_MAX)).read_line(&mut line)?;
    let reply = match line.trim().split_once(' ').unwrap_or((line.trim(), "")) {
        ("get", "") => json!({ "active": switch.active().name }),
        ("set", name) => match lab::profile(name) {
            Some(profile) => {
                switch.set(profile);
                eprintln!("tickscope-lab: profile {name}");
                json!({ "active": profile.name })
            }
            None => json!({ "error": format!("no profile {name:?}") }),
        },
        _ => json!({ "error": "requests are `get` or `set <profile>`" }),
    };
    (&stream).write_all(format!("{reply}\n").as_bytes())
}

/// Sends one request to the lab at `path` and returns its answer.
pub fn request(path: &Path, line: &str) -> anyhow::Result<serde_json::Value> {
    let mut stream =
        UnixStream::connect(path).with_context(|| format!("connecting to {}", path.display()))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(format!("{line}\n").as_bytes())?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply)?;
    let value: serde_json::Value = serde_json::from_str(&reply).context("the lab's answer")?;
    if let Some(error) = value.get("error").and_then(|e| e.as_str()) {
        anyhow::bail!("{error}");
    }
    Ok(value)
}
