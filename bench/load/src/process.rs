//! The server's CPU time and resident memory, read from `/proc/<pid>` (Linux).

use std::fs;

use anyhow::{Context, bail};

/// Clock ticks per second of `utime`/`stime` in `/proc/<pid>/stat`; 100 on Linux.
const CLOCK_TICKS_PER_S: f64 = 100.0;

/// One reading of a process: CPU seconds (user + system, all threads) and resident bytes.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub cpu_s: f64,
    pub rss_bytes: u64,
}

pub fn sample(pid: u32) -> anyhow::Result<Sample> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat: is the server running?"))?;
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    Ok(Sample {
        cpu_s: cpu_seconds(&stat)?,
        rss_bytes: rss_bytes(&status)?,
    })
}

/// [`sample`] of `pid` and its children together: nginx's master and its workers.
pub fn sample_tree(pid: u32) -> anyhow::Result<Sample> {
    let mut total = sample(pid)?;
    let entries = fs::read_dir("/proc").context("reading /proc")?;
    for entry in entries.flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse().ok())
        else {
            continue;
        };
        let parent = fs::read_to_string(format!("/proc/{child}/stat"))
            .ok()
            .and_then(|stat| {
                let after_name = stat.rsplit_once(')')?.1.to_owned();
                after_name.split_whitespace().nth(1)?.parse::<u32>().ok()
            });
        if parent == Some(pid)
            && let Ok(child) = sample(child)
        {
            total.cpu_s += child.cpu_s;
            total.rss_bytes += child.rss_bytes;
        }
    }
    Ok(total)
}

/// utime + stime from a `stat` line. The command name in field 2 may hold spaces, so fields
/// are counted from the `)` that ends it.
fn cpu_seconds(stat: &str) -> anyhow::Result<f64> {
    let after_name = stat.rsplit_once(')').context("no ')' in /proc stat")?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Field 3 (state) is fields[0]; utime and stime are fields 14 and 15.
    let (Some(utime), Some(stime)) = (fields.get(11), fields.get(12)) else {
        bail!("/proc stat has too few fields");
    };
    let ticks = utime.parse::<u64>()? + stime.parse::<u64>()?;
    Ok(ticks as f64 / CLOCK_TICKS_PER_S)
}

fn rss_bytes(status: &str) -> anyhow::Result<u64> {
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .context("no VmRSS in /proc status")?;
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .context("VmRSS has no value")?
        .parse()?;
    Ok(kib * 1024)
}

/// The most files this process may open (its soft limit).
pub fn open_files_limit() -> Option<u64> {
    let limits = fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_time_past_a_name_with_spaces() {
        let stat = "42 (node ws peer) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 7 0";
        assert_eq!(cpu_seconds(stat).unwrap(), 3.0);
    }

    #[test]
    fn reads_this_process() {
        let own = sample(std::process::id()).unwrap();
        assert!(own.rss_bytes > 0);
        assert!(open_files_limit().unwrap() > 0);
    }
}
