//! `docs/NETWORK.md`: the transports across the lab's profiles (`bench/net.sh`), each lag
//! beside the value first principles give for that path.
//!
//! Expected p50 lag, for a profile's one-way delays `d_down` and `d_up`:
//! - polling every `I`: a tick waits for the next request, half an interval on average,
//!   then travels down with the answer: `I/2 + d_down` plus the answer's serialisation;
//! - long polling: RFC 6202 section 2.2. A tick that finds a request waiting travels at once
//!   (`d_down`); one published while the answer and the next request are on their way waits
//!   for that request, up to `d_down + d_up` more. How often each happens depends on the feed's
//!   rate, so the p50 comes from simulating that exchange with Poisson ticks at the feed's
//!   rate ([`long_poll_lag`]);
//! - WebSocket, SSE and HTTP streaming: `d_down` plus the serialisation of one message.
//!
//! To each, the page adds what this machine itself takes (server, kernel, load generator): the
//! same transport's p50 over the server namespace's loopback, with no link, less its own
//! first-principles value (half an interval for polling, nothing for the others).
//!
//! Loss adds retransmissions (at least one round trip each) that these figures leave out:
//! under the loss profiles the page shows the measured excess instead of a goal.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use plotters::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use tickscope_shared::lab::{PROFILES, Profile};

use crate::clients::Transport;
use crate::report::{RunResult, StepResult};

/// The transports `bench/net.sh` runs, in the page's order.
const TRANSPORTS: [Transport; 6] = [
    Transport::Polling,
    Transport::LongPolling,
    Transport::Websocket,
    Transport::Sse,
    Transport::Stream,
    Transport::Webtransport,
];

/// The p50 a loss-free profile must come within, as a share of the expected one.
const GOAL_SHARE: f64 = 0.15;

#[derive(Args)]
pub struct NetReportArgs {
    /// Folder of runs saved by `bench/net.sh` (`<profile>-<transport>.json`, `probe-none.json`).
    #[arg(long, default_value = "target/bench-net")]
    results: PathBuf,
    /// The page to write.
    #[arg(long, default_value = "docs/NETWORK.md")]
    out: PathBuf,
    /// The chart to write (SVG), linked from the page by file name.
    #[arg(long, default_value = "docs/network-lag.svg")]
    chart: PathBuf,
    /// Hand-written notes on the run, copied into the page.
    #[arg(long, default_value = "bench/net-notes.md")]
    notes: PathBuf,
    /// The server's feed rate, ticks per second (its `--rate`).
    #[arg(long, default_value_t = 50.0)]
    feed_rate: f64,
}

/// What `tickscope-lab probe` printed.
#[derive(Debug, Deserialize)]
struct Probe {
    through_link: RoundTrips,
    loopback: RoundTrips,
    download_mbit_s: f64,
}

#[derive(Debug, Deserialize)]
struct RoundTrips {
    rounds: usize,
    p50_ms: f64,
    p99_ms: f64,
}

/// The label `bench/net.sh` gives its runs over loopback, without the link.
const LOOPBACK: &str = "loopback";

/// One profile and transport: what was measured and what was expected.
struct Cell<'a> {
    profile: &'static Profile,
    transport: Transport,
    step: &'a StepResult,
    /// First principles alone.
    principles_ms: f64,
    /// First principles plus this machine's own share.
    expected_ms: f64,
    /// The p99 first principles give without loss, plus the same share.
    expected_p99_ms: f64,
}

impl Cell<'_> {
    fn ratio(&self) -> f64 {
        self.step.latency_ms.p50 / self.expected_ms
    }

    /// Whether the p50 is within 15% of the expected value.
    fn within_goal(&self) -> bool {
        (self.step.latency_ms.p50 - self.expected_ms).abs() <= self.expected_ms * GOAL_SHARE
    }
}

pub fn write(args: &NetReportArgs) -> anyhow::Result<()> {
    let runs = load_runs(&args.results)?;
    let probe: Probe = read_json(&args.results.join("probe-none.json"))?;
    let notes = std::fs::read_to_string(&args.notes)
        .with_context(|| format!("reading {}", args.notes.display()))?;
    let mut cells = Vec::new();
    let mut baselines = Vec::new();
    for run in runs.iter().filter(|run| run.label == LOOPBACK) {
        if let Some(step) = run.steps.first() {
            let interval_ms = run.interval_ms.unwrap_or(1000) as f64;
            let none = &PROFILES[0];
            let principles =
                expected_p50_ms(run.transport, none, step, interval_ms, args.feed_rate);
            baselines.push((
                run.transport,
                step,
                (step.latency_ms.p50 - principles).max(0.0),
            ));
        }
    }
    for profile in PROFILES {
        for transport in TRANSPORTS {
            let Some(run) = runs
                .iter()
                .find(|run| run.label == profile.name && run.transport == transport)
            else {
                continue;
            };
            let Some(step) = run.steps.first() else {
                continue;
            };
            let interval_ms = run.interval_ms.unwrap_or(1000) as f64;
            let principles_ms =
                expected_p50_ms(transport, profile, step, interval_ms, args.feed_rate);
            let own_ms = baselines
                .iter()
                .find(|(t, _, _)| *t == transport)
                .map_or(0.0, |(_, _, own)| *own);
            let p99 = expected_lag_ms(transport, profile, step, interval_ms, args.feed_rate, 0.99);
            cells.push(Cell {
                profile,
                transport,
                step,
                principles_ms,
                expected_ms: principles_ms + own_ms,
                expected_p99_ms: p99 + own_ms,
            });
        }
    }
    anyhow::ensure!(!cells.is_empty(), "no runs in {}", args.results.display());
    let chart_name = args
        .chart
        .file_name()
        .context("--chart needs a file name")?
        .to_string_lossy()
        .into_owned();
    chart(&cells, &args.chart)?;
    let page = page(
        &cells,
        &baselines,
        &probe,
        &notes,
        &chart_name,
        args.feed_rate,
    );
    std::fs::write(&args.out, page).with_context(|| format!("writing {}", args.out.display()))?;
    println!("wrote {} and {}", args.out.display(), args.chart.display());
    Ok(())
}

fn load_runs(dir: &Path) -> anyhow::Result<Vec<RunResult>> {
    let mut runs = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let is_run = path.extension().is_some_and(|ext| ext == "json")
            && path
                .file_name()
                .is_none_or(|name| name != "probe-none.json");
        if is_run {
            runs.push(read_json(&path)?);
        }
    }
    Ok(runs)
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Time to send `bytes` down the profile's bottleneck, milliseconds.
fn down_serialisation_ms(profile: &Profile, bytes: f64) -> f64 {
    profile.down.serialisation_ms(bytes.max(0.0) as u64)
}

/// The p50 lag first principles give (see the module's documentation).
pub fn expected_p50_ms(
    transport: Transport,
    profile: &Profile,
    step: &StepResult,
    interval_ms: f64,
    feed_rate: f64,
) -> f64 {
    expected_lag_ms(transport, profile, step, interval_ms, feed_rate, 0.5)
}

/// The lag at `quantile` first principles give for a loss-free path: for the tail, polling's
/// wait runs to `quantile` of an interval and jitter adds its normal quantile.
pub fn expected_lag_ms(
    transport: Transport,
    profile: &Profile,
    step: &StepResult,
    interval_ms: f64,
    feed_rate: f64,
    quantile: f64,
) -> f64 {
    let (down, up) = (profile.down.delay_ms, profile.up.delay_ms);
    // The normal quantile of the jitter: 0 at the median, 2.33 deviations at p99.
    let jitter = profile.down.jitter_ms * normal_quantile(quantile);
    // A message's size on the wire: the measured bytes per tick times the ticks it carries.
    let per_tick = step.bytes_per_tick;
    match transport {
        Transport::Polling => {
            let answer = per_tick * feed_rate * interval_ms / 1000.0;
            interval_ms * quantile + down + jitter + down_serialisation_ms(profile, answer)
        }
        Transport::LongPolling => {
            let lag = long_poll_lag(feed_rate, down, up, quantile, |ticks| {
                down_serialisation_ms(profile, per_tick * ticks as f64)
            });
            lag + jitter
        }
        Transport::Websocket
        | Transport::Sse
        | Transport::Stream
        | Transport::Socketio
        | Transport::Webtransport => down + jitter + down_serialisation_ms(profile, per_tick),
    }
}

/// The standard normal's quantile at the few points the page uses.
fn normal_quantile(quantile: f64) -> f64 {
    match quantile {
        q if q >= 0.999 => 3.090,
        q if q >= 0.99 => 2.326,
        q if q >= 0.9 => 1.282,
        _ => 0.0,
    }
}

/// The lag at `quantile` of long polling over a path of one-way delays `down` and `up` (ms), with
/// Poisson ticks at `rate` per second and `serialise(ticks)` ms to send an answer of that many
/// ticks: each request is answered as soon as a tick after its cursor exists, with every tick
/// since; the next request leaves as the answer arrives.
pub fn long_poll_lag(
    rate: f64,
    down: f64,
    up: f64,
    quantile: f64,
    serialise: impl Fn(usize) -> f64,
) -> f64 {
    const TICKS: usize = 100_000;
    let mut rng = StdRng::seed_from_u64(6202);
    let mut next_tick = 0.0;
    let mut ticks = Vec::with_capacity(TICKS);
    for _ in 0..TICKS {
        next_tick += -(1.0 - rng.random::<f64>()).ln() / rate * 1000.0;
        ticks.push(next_tick);
    }
    let mut lags = Vec::with_capacity(TICKS);
    // The first request reaches the server at time 0; `taken` ticks have been answered.
    let (mut arrives, mut taken) = (0.0, 0);
    while taken < TICKS {
        let waiting = ticks[taken..].partition_point(|&at| at <= arrives);
        let (answered_at, count) = if waiting > 0 {
            (arrives, waiting)
        } else {
            (ticks[taken], 1)
        };
        let delivered = answered_at + serialise(count) + down;
        lags.extend(ticks[taken..taken + count].iter().map(|at| delivered - at));
        taken += count;
        arrives = delivered + up;
    }
    lags.sort_by(f64::total_cmp);
    lags[((lags.len() - 1) as f64 * quantile) as usize]
}

fn page(
    cells: &[Cell],
    baselines: &[(Transport, &StepResult, f64)],
    probe: &Probe,
    notes: &str,
    chart_name: &str,
    feed_rate: f64,
) -> String {
    let mut out = String::from("# Network lab: the transports over emulated networks\n\n");
    out.push_str(
        "Written by `just bench-net` (`bench/net.sh`, then `tickscope-load net-report`): \
         `tickscope-load` holds 100 clients of each transport in the lab's client namespace; the \
         server runs in the server namespace; every packet between them goes through the link \
         emulator (`lab/`, mahimahi's design: two TUN devices and a relay), so both ends run the \
         kernel's own TCP. Each client connection has a path of its own (`--paths per-flow`), \
         as 100 users each on their own line would. ",
    );
    let _ = writeln!(
        out,
        "12 symbols at {feed_rate} ticks/s, polling every second. Lags are from a tick's \
         `ts` (its arrival in the feed) to receipt, on one clock (one machine).\n"
    );
    let _ = writeln!(out, "![p50 lag per profile and transport]({chart_name})\n");

    out.push_str("## The emulator itself\n\n");
    let added = (probe.through_link.p50_ms - probe.loopback.p50_ms) / 2.0;
    let _ = writeln!(
        out,
        "Profile \"none\", `tickscope-lab probe`: a TCP round trip of 64 bytes through the link \
         has a p50 of {:.3} ms (p99 {:.3} ms) over {} rounds, against {:.3} ms over the server \
         namespace's loopback: the relay adds **{added:.3} ms each way** (goal: at most 0.2 ms). \
         A bulk TCP download through it ran at **{:.0} Mbit/s** (goal: 100 Mbit/s).\n",
        probe.through_link.p50_ms,
        probe.through_link.p99_ms,
        probe.through_link.rounds,
        probe.loopback.p50_ms,
        probe.download_mbit_s
    );

    out.push_str("## This machine's own share\n\n");
    out.push_str(
        "The same 100 clients over the server namespace's loopback, no link: what the server, \
         the kernel and the load generator take by themselves. Each expected value below adds \
         this to first principles.\n\n\
         | transport | p50 ms | p99 ms | first principles ms | own share ms |\n\
         |---|--:|--:|--:|--:|\n",
    );
    for (transport, step, own) in baselines {
        let _ = writeln!(
            out,
            "| {} | {:.2} | {:.2} | {:.2} | {own:.2} |",
            transport.as_str(),
            step.latency_ms.p50,
            step.latency_ms.p99,
            step.latency_ms.p50 - own
        );
    }
    out.push('\n');

    out.push_str("## Profiles\n\n");
    out.push_str(
        "| profile | round trip | jitter (down) | loss | down / up | what it emulates | source |\n",
    );
    out.push_str("|---|--:|--:|--:|--:|---|---|\n");
    for profile in PROFILES {
        let rate = |kbit: Option<u64>| {
            kbit.map_or("unlimited".to_owned(), |kbit| {
                format!("{}", kbit as f64 / 1000.0)
            })
        };
        let _ = writeln!(
            out,
            "| {} | {} ms | {} ms | {:.1}% | {} / {} Mbit/s | {} | {} |",
            profile.name,
            profile.rtt_ms(),
            profile.down.jitter_ms,
            profile.down.loss.share() * 100.0,
            rate(profile.down.rate_kbit),
            rate(profile.up.rate_kbit),
            profile.emulates,
            profile.source
        );
    }
    out.push('\n');

    out.push_str("## Lag and cost per profile\n\n");
    out.push_str(
        "First principles: the path's figures alone (see `bench/load/src/network.rs`); expected: \
         that plus this machine's own share (above). Within goal: measured p50 within 15% of \
         expected. Loss profiles have no goal: retransmissions come on top. Drops: connections \
         that failed or ended; gaps: answers the server flagged as a resync; lost: ticks missing \
         from a client's cursor chain.\n\n",
    );
    for profile in PROFILES {
        let rows: Vec<&Cell> = cells
            .iter()
            .filter(|cell| cell.profile.name == profile.name)
            .collect();
        if rows.is_empty() {
            continue;
        }
        let lossy = profile.down.loss.share() > 0.0 || profile.up.loss.share() > 0.0;
        let _ = writeln!(
            out,
            "### {} ({} ms round trip)\n",
            profile.title,
            profile.rtt_ms()
        );
        out.push_str(
            "| transport | p50 ms | first principles ms | expected p50 ms | measured / expected | \
             within goal | p99 ms | p99.9 ms | B/tick down | B/tick up | requests/s | drops | \
             gaps | lost |\n",
        );
        out.push_str("|---|--:|--:|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|\n");
        for cell in rows {
            let step = cell.step;
            let verdict = if lossy {
                "(loss)"
            } else if cell.within_goal() {
                "yes"
            } else {
                "**no**"
            };
            let _ = writeln!(
                out,
                "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {verdict} | {:.2} | {:.2} | {:.0} | {:.0} | {:.1} | {} | {} | {} |",
                cell.transport.as_str(),
                step.latency_ms.p50,
                cell.principles_ms,
                cell.expected_ms,
                cell.ratio(),
                step.latency_ms.p99,
                step.latency_ms.p999,
                step.bytes_per_tick,
                step.bytes_up_per_tick,
                step.requests_per_s,
                step.connect_errors + step.disconnects,
                step.gaps,
                step.lost
            );
        }
        out.push('\n');
    }

    out.push_str("## Under loss\n\n");
    out.push_str(
        "The measured p99 lag over the p99 first principles give for the same path without \
         loss (polling's 99th percentile of an interval, long polling's simulated tail, jitter's \
         normal tail; plus this machine's own share): what loss added at the tail.\n\n",
    );
    out.push_str("| profile | loss | ");
    out.push_str(
        &TRANSPORTS
            .iter()
            .map(|t| t.as_str())
            .collect::<Vec<_>>()
            .join(" | "),
    );
    out.push_str(" | degrades most |\n|---|--:|");
    out.push_str(&"--:|".repeat(TRANSPORTS.len()));
    out.push_str("---|\n");
    for profile in PROFILES.iter().filter(|p| p.down.loss.share() > 0.0) {
        let excess: Vec<Option<f64>> = TRANSPORTS
            .iter()
            .map(|&transport| {
                cells
                    .iter()
                    .find(|c| c.profile.name == profile.name && c.transport == transport)
                    .map(|c| c.step.latency_ms.p99 - c.expected_p99_ms)
            })
            .collect();
        let worst = TRANSPORTS
            .iter()
            .zip(&excess)
            .filter_map(|(t, e)| e.map(|e| (t, e)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map_or("-", |(t, _)| t.as_str());
        let _ = write!(
            out,
            "| {} | {:.1}% | ",
            profile.name,
            profile.down.loss.share() * 100.0
        );
        for value in &excess {
            match value {
                Some(ms) => {
                    let _ = write!(out, "{ms:+.1} ms | ");
                }
                None => out.push_str("- | "),
            }
        }
        let _ = writeln!(out, "{worst} |");
    }
    out.push('\n');
    out.push_str(notes.trim_end());
    out.push('\n');
    out
}

fn chart(cells: &[Cell], path: &Path) -> anyhow::Result<()> {
    let profiles: Vec<&Profile> = PROFILES
        .iter()
        .filter(|p| cells.iter().any(|c| c.profile.name == p.name))
        .collect();
    let worst = cells
        .iter()
        .map(|c| c.step.latency_ms.p50.max(c.expected_ms))
        .fold(10.0, f64::max);
    let root = SVGBackend::new(path, (860, 460)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "p50 lag per profile: measured (dots) and expected (crosses), 100 clients",
            ("sans-serif", 18),
        )
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(
            -0.5..profiles.len() as f64 - 0.5,
            (0.05..worst * 2.0).log_scale(),
        )?;
    let names: Vec<&str> = profiles.iter().map(|p| p.name).collect();
    chart
        .configure_mesh()
        .x_labels(profiles.len())
        .x_label_formatter(&|x| {
            let index = x.round();
            if (x - index).abs() < 0.01 && index >= 0.0 {
                names.get(index as usize).copied().unwrap_or("").to_owned()
            } else {
                String::new()
            }
        })
        .y_desc("p50 lag, ms (log)")
        .draw()?;
    let colors = [
        RGBColor(33, 150, 243),
        RGBColor(76, 175, 80),
        RGBColor(244, 67, 54),
        RGBColor(156, 39, 176),
        RGBColor(255, 152, 0),
        RGBColor(0, 150, 136),
    ];
    for (index, transport) in TRANSPORTS.iter().enumerate() {
        let color = colors[index];
        let offset = (index as f64 - 2.5) * 0.1;
        let points: Vec<(f64, f64, f64)> = profiles
            .iter()
            .enumerate()
            .filter_map(|(x, profile)| {
                cells
                    .iter()
                    .find(|c| c.profile.name == profile.name && c.transport == *transport)
                    .map(|c| {
                        (
                            x as f64 + offset,
                            c.step.latency_ms.p50.max(0.05),
                            c.expected_ms.max(0.05),
                        )
                    })
            })
            .collect();
        chart
            .draw_series(
                points
                    .iter()
                    .map(|&(x, measured, _)| Circle::new((x, measured), 5, color.filled())),
            )?
            .label(transport.as_str())
            .legend(move |(x, y)| Circle::new((x + 10, y), 5, color.filled()));
        chart.draw_series(
            points
                .iter()
                .map(|&(x, _, expected)| Cross::new((x, expected), 5, color.stroke_width(2))),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_poll_on_a_quiet_feed_costs_one_way() {
        // A tick every 10 s on average, a 20 ms round trip: nearly every tick finds a request
        // waiting.
        let p50 = long_poll_lag(0.1, 10.0, 10.0, 0.5, |_| 0.0);
        assert!((10.0..10.5).contains(&p50), "{p50}");
    }

    #[test]
    fn a_long_poll_on_a_busy_feed_costs_a_round_trip_more_at_worst() {
        // 1,000 ticks/s over 100 ms each way: ticks wait for the next request, uniformly
        // over a cycle of 200 ms, then travel 100 ms: the p50 is 200 ms.
        let p50 = long_poll_lag(1000.0, 100.0, 100.0, 0.5, |_| 0.0);
        assert!((195.0..205.0).contains(&p50), "{p50}");
    }

    #[test]
    fn on_loopback_a_long_poll_is_nearly_free() {
        assert!(long_poll_lag(50.0, 0.0, 0.0, 0.5, |_| 0.0) < 0.001);
    }
}
