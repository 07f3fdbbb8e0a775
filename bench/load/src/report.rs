//! Results: one step's figures, a run's steps as JSON, the table printed as a run goes, and the
//! benchmark page (`docs/BENCHMARKS.md` with its chart) made from a folder of runs.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::clients::Transport;
use crate::process::Sample;
use crate::recorder::Recorder;

/// Latency of ticks, from when each happened (`ts`) to its receipt, in milliseconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

/// What the server spent during the measured window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerUse {
    pub cpu_s: f64,
    /// Ticks delivered per second of server CPU.
    pub ticks_per_cpu_s: f64,
    pub rss_bytes: u64,
    /// Resident memory when the measured window began.
    #[serde(default)]
    pub rss_before_bytes: u64,
    /// Resident memory added since before the first client connected, per client held.
    pub rss_per_client_bytes: f64,
}

impl ServerUse {
    /// A process's use over a step from its samples, with `ticks` delivered to `connected`
    /// clients; `None` without all three samples.
    fn of(samples: ServerSamples, ticks: u64, connected: usize) -> Option<Self> {
        let (Some(baseline), Some(before), Some(after)) =
            (samples.baseline, samples.before, samples.after)
        else {
            return None;
        };
        let cpu_s = after.cpu_s - before.cpu_s;
        Some(ServerUse {
            cpu_s,
            ticks_per_cpu_s: ratio(ticks as f64, cpu_s),
            rss_bytes: after.rss_bytes,
            rss_before_bytes: before.rss_bytes,
            rss_per_client_bytes: ratio(
                after.rss_bytes as f64 - baseline.rss_bytes as f64,
                connected as f64,
            ),
        })
    }
}

/// One step of a run: `clients` held for `seconds`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepResult {
    pub clients: usize,
    pub connected: usize,
    pub connect_s: f64,
    pub seconds: f64,
    pub latency_ms: Latency,
    /// Ticks received by all clients in the window.
    pub ticks: u64,
    pub ticks_per_s: f64,
    /// Seqs that never arrived without the server flagging a gap (whole step).
    pub lost: u64,
    /// Batches the server flagged as a gap (whole step).
    pub gaps: u64,
    /// Batches that broke the chain otherwise: a repeat, a cursor going back (whole step).
    pub broken: u64,
    pub messages: u64,
    pub requests_per_s: f64,
    /// Share of messages (poll answers) that held no tick.
    pub empty_share: f64,
    /// The load generator's own CPU over the window, as a share of one core.
    #[serde(default)]
    pub load_cpu: f64,
    /// Bytes on the wire per tick, server to clients, as the clients' sockets counted them:
    /// everything (heads, framing, handshakes).
    pub bytes_per_tick: f64,
    /// The same from clients to server.
    #[serde(default)]
    pub bytes_up_per_tick: f64,
    /// The server's own count of the same window (`tickscope_wire_bytes_total`), (down, up)
    /// per tick; none for a peer server.
    #[serde(default)]
    pub server_bytes_per_tick: Option<(f64, f64)>,
    pub connect_errors: u64,
    pub disconnects: u64,
    pub first_error: Option<String>,
    pub server: Option<ServerUse>,
    /// What a reverse proxy in front of the server spent (`--proxy-pid`).
    #[serde(default)]
    pub proxy: Option<ServerUse>,
}

pub struct StepSetup {
    pub clients: usize,
    pub connected: usize,
    pub connect_s: f64,
    pub seconds: f64,
    /// CPU seconds the load generator itself used in the window.
    pub load_cpu_s: f64,
    /// Bytes (down, up) the clients' sockets counted in the window.
    pub wire: (u64, u64),
    /// The server's count of the same, when it has one.
    pub server_wire: Option<(u64, u64)>,
}

pub struct ServerSamples {
    pub baseline: Option<Sample>,
    pub before: Option<Sample>,
    pub after: Option<Sample>,
}

/// Marks the label of a run made with the loopback receive processing on the load's core.
const STEERED: &str = "rx on load core";

/// The share of its core above which the load generator may be the bottleneck.
const LOAD_BOUND: f64 = 0.9;

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

pub(crate) fn ratio(part: f64, whole: f64) -> f64 {
    if whole > 0.0 { part / whole } else { 0.0 }
}

impl StepResult {
    pub fn new(
        recorder: &Recorder,
        setup: StepSetup,
        server: ServerSamples,
        proxy: ServerSamples,
    ) -> Self {
        let latency = &recorder.latency_us;
        let ticks = recorder.ticks;
        let server = ServerUse::of(server, ticks, setup.connected);
        let proxy = ServerUse::of(proxy, ticks, setup.connected);
        Self {
            clients: setup.clients,
            connected: setup.connected,
            connect_s: setup.connect_s,
            seconds: setup.seconds,
            latency_ms: Latency {
                p50: ms(latency.value_at_quantile(0.5)),
                p90: ms(latency.value_at_quantile(0.9)),
                p99: ms(latency.value_at_quantile(0.99)),
                p999: ms(latency.value_at_quantile(0.999)),
                max: ms(latency.max()),
                mean: latency.mean() / 1000.0,
            },
            ticks,
            ticks_per_s: ratio(ticks as f64, setup.seconds),
            lost: recorder.lost,
            gaps: recorder.gaps,
            broken: recorder.broken,
            messages: recorder.messages,
            requests_per_s: ratio(recorder.requests as f64, setup.seconds),
            empty_share: ratio(recorder.empty as f64, recorder.messages as f64),
            load_cpu: ratio(setup.load_cpu_s, setup.seconds),
            bytes_per_tick: ratio(setup.wire.0 as f64, ticks as f64),
            bytes_up_per_tick: ratio(setup.wire.1 as f64, ticks as f64),
            server_bytes_per_tick: setup.server_wire.map(|(down, up)| {
                (
                    ratio(down as f64, ticks as f64),
                    ratio(up as f64, ticks as f64),
                )
            }),
            connect_errors: recorder.connect_errors,
            disconnects: recorder.disconnects,
            first_error: recorder.first_error.clone(),
            server,
            proxy,
        }
    }

    /// The load generator used more than 90% of its core: the step may show the load's
    /// limit, not the server's.
    pub fn load_bound(&self) -> bool {
        self.load_cpu > LOAD_BOUND
    }

    /// Every client connected and stayed, nothing was lost, and p99 is within the goal.
    pub fn meets(&self, p99_goal_ms: f64) -> bool {
        self.connected == self.clients
            && self.connect_errors == 0
            && self.disconnects == 0
            && self.lost == 0
            && self.gaps == 0
            && self.broken == 0
            && self.latency_ms.p99 <= p99_goal_ms
    }
}

/// A whole run, as `--json` writes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    pub label: String,
    pub transport: Transport,
    pub url: String,
    pub p99_goal_ms: f64,
    #[serde(default)]
    pub idle: bool,
    #[serde(default)]
    pub interval_ms: Option<u64>,
    /// Stalled WebSocket clients held beside the measured ones.
    #[serde(default)]
    pub stalled: usize,
    pub steps: Vec<StepResult>,
    /// The largest step that met the goal, when every step before it did too.
    pub capacity: Option<usize>,
}

impl RunResult {
    pub fn new(label: &str, transport: Transport, url: &str, p99_goal_ms: f64) -> Self {
        Self {
            label: label.to_owned(),
            transport,
            url: url.to_owned(),
            p99_goal_ms,
            idle: false,
            interval_ms: None,
            stalled: 0,
            steps: Vec::new(),
            capacity: None,
        }
    }

    pub fn push(&mut self, step: StepResult, met: bool) {
        let all_met_so_far =
            self.steps.is_empty() || self.capacity == self.steps.last().map(|s| s.clients);
        if met && all_met_so_far {
            self.capacity = Some(step.clients);
        }
        self.steps.push(step);
    }

    fn step(&self, clients: usize) -> Option<&StepResult> {
        self.steps.iter().find(|step| step.clients == clients)
    }
}

const COLUMNS: &str = "| server | transport | clients | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | mean ms | ticks/s | lost | req/s | empty | B/tick down | B/tick up | server's B/tick | conn err | drops | load CPU | server CPU s | ticks/CPU-s | RSS/client |";
const RULE: &str =
    "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|";

pub fn print_header() {
    println!("{COLUMNS}\n{RULE}");
}

pub fn print_row(label: &str, transport: Transport, step: &StepResult) {
    println!("{}", row(label, transport, step));
    if let Some(error) = &step.first_error {
        println!("  first error: {error}");
    }
}

fn row(label: &str, transport: Transport, step: &StepResult) -> String {
    let latency = &step.latency_ms;
    let server = step
        .server
        .as_ref()
        .map_or("| – | – | – |".to_owned(), |server| {
            format!(
                "| {:.2} | {} | {} |",
                server.cpu_s,
                thousands(server.ticks_per_cpu_s),
                kib(server.rss_per_client_bytes)
            )
        });
    format!(
        "| {label} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {:.1} | {:.1} % | {:.0} | {:.0} | {} | {} | {} | {} {server}",
        transport.as_str(),
        thousands(step.clients as f64),
        latency.p50,
        latency.p90,
        latency.p99,
        latency.p999,
        latency.max,
        latency.mean,
        thousands(step.ticks_per_s),
        step.lost,
        step.requests_per_s,
        step.empty_share * 100.0,
        step.bytes_per_tick,
        step.bytes_up_per_tick,
        step.server_bytes_per_tick
            .map_or("–".to_owned(), |(down, up)| format!(
                "{down:.0} / {up:.0}"
            )),
        step.connect_errors,
        step.disconnects,
        load_cpu(step),
    )
}

/// The load generator's CPU share, marked when it may have set the step's figures.
fn load_cpu(step: &StepResult) -> String {
    let share = format!("{:.0} %", step.load_cpu * 100.0);
    if step.load_bound() {
        format!("{share} load-bound")
    } else {
        share
    }
}

pub(crate) fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

pub(crate) fn kib(bytes: f64) -> String {
    format!("{:.1} KiB", bytes / 1024.0)
}

#[derive(Args)]
pub struct ReportArgs {
    /// Folder of runs saved with `run --json`.
    #[arg(long)]
    results: PathBuf,
    /// The page to write.
    #[arg(long, default_value = "docs/BENCHMARKS.md")]
    out: PathBuf,
    /// The chart to write (SVG), linked from the page by file name.
    #[arg(long, default_value = "docs/bench-latency.svg")]
    chart: PathBuf,
    /// A file describing the machine and how the run was made, copied into the page.
    #[arg(long)]
    setup: PathBuf,
}

pub fn write(args: &ReportArgs) -> anyhow::Result<()> {
    let (runs, setup) = inputs(&args.results, &args.setup)?;
    let chart_name = args
        .chart
        .file_name()
        .context("--chart needs a file name")?
        .to_string_lossy();
    let page = page(&runs, &setup, &chart_name);
    std::fs::write(&args.out, page).with_context(|| format!("writing {}", args.out.display()))?;
    chart(&runs, &args.chart)?;
    println!("wrote {} and {}", args.out.display(), args.chart.display());
    Ok(())
}

/// The saved runs in `results` and the text of the `setup` file.
pub(crate) fn inputs(results: &Path, setup: &Path) -> anyhow::Result<(Vec<RunResult>, String)> {
    let setup =
        std::fs::read_to_string(setup).with_context(|| format!("reading {}", setup.display()))?;
    Ok((load(results)?, setup))
}

fn load(dir: &Path) -> anyhow::Result<Vec<RunResult>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path)?;
            serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))
        })
        .collect()
}

/// The run of `label` over `transport` that is not an idle one.
fn find<'a>(runs: &'a [RunResult], label: &str, transport: Transport) -> Option<&'a RunResult> {
    runs.iter()
        .find(|run| run.label == label && run.transport == transport && !run.idle)
}

fn page(runs: &[RunResult], setup: &str, chart_name: &str) -> String {
    let mut out = String::from("# Benchmarks\n\n");
    out.push_str(
        "This page is written by `just bench` from the runs it makes; do not edit it by hand.\n\n",
    );
    out.push_str(setup.trim());
    out.push_str("\n\n## Goals\n\n");
    out.push_str(&goals(runs));
    out.push_str("\n## WebSocket: tickscope, Bun (uWebSockets), Node `ws`, Socket.IO\n\n");
    let _ = writeln!(
        out,
        "p99 latency against clients held (log scale):\n\n![p99 latency against clients]({chart_name})\n"
    );
    out.push_str(&table(runs.iter().filter(|run| compared(run))));
    out.push_str("\n## Receive processing on the load's core\n\n");
    out.push_str(
        "On loopback the receiver's TCP work runs on the sender's core, so the server's core \
         also pays for the clients' receiving. The same WebSocket steps with that work steered \
         to the load's core (`/sys/class/net/lo/queues/rx-0/rps_cpus` = 2):\n\n",
    );
    out.push_str(&table(
        runs.iter().filter(|run| run.label.contains(STEERED)),
    ));
    out.push_str("\n## tickscope's transports\n\n");
    out.push_str(&table(runs.iter().filter(|run| {
        run.label == "tickscope"
            && !matches!(run.transport, Transport::Websocket | Transport::Socketio)
    })));
    out.push_str("\n## A stalled client among live ones\n\n");
    out.push_str(
        "The same live WebSocket clients, alone and beside one client that subscribes and then \
         reads nothing (a 4 KiB receive window). The server conflates what the stalled client \
         misses and drops it after `--slow-client-timeout-ms`; RSS/client is the server's \
         growth over all clients held.\n\n",
    );
    out.push_str(&table(
        runs.iter().filter(|run| run.label.contains("stalled")),
    ));
    out.push_str("\n## Idle connections\n\n");
    out.push_str(&table(runs.iter().filter(|run| run.idle)));
    out.push_str("\n## Columns\n\n");
    out.push_str(
        "- Latency is from each tick's `ts` to its receipt (`receive − ts`, one clock), in an \
         HDR histogram of every tick every client received in the measured window. `ts` is \
         the tick's arrival time in the feed, for tickscope and the peers alike, so a publish \
         that comes late (a busy thread's timer) counts in the lag.\n\
         - lost: seqs that never arrived without a gap flag, from each client's cursor chain, \
         over the whole step including connecting and warm-up.\n\
         - B/tick down, up: bytes on the wire per tick delivered, each way, counted on the \
         clients' sockets: heads, framing, handshakes, masks, everything TCP carried. \
         server's B/tick: tickscope's own count of the same window \
         (`tickscope_wire_bytes_total`, down / up); the two agree when the server counts truly.\n\
         - conn err, drops: clients that failed to connect, or were dropped later.\n\
         - load CPU: the load generator's own CPU over the window, as a share of its core; \
         over 90 % the step is marked load-bound, as its figures may be the load's limit.\n\
         - server CPU s: user + system seconds of the server process (all threads) during the \
         window; ticks/CPU-s: ticks delivered per second of it.\n\
         - RSS/client: the server's resident memory added since before the first client, \
         divided by the clients held.\n",
    );
    out
}

fn table<'a>(runs: impl Iterator<Item = &'a RunResult>) -> String {
    let mut out = format!("{COLUMNS}\n{RULE}\n");
    for run in runs {
        for step in &run.steps {
            let _ = writeln!(out, "{}", row(&run.label, run.transport, step));
        }
    }
    out
}

/// Each goal of the issue, what was measured for it, and whether it was met.
fn goals(runs: &[RunResult]) -> String {
    let mut out = String::from("| goal | measured | met |\n|---|---|---|\n");
    let mut line = |goal: &str, measured: Option<(String, bool)>| {
        let (text, met) = measured.unwrap_or(("not measured".into(), false));
        let _ = writeln!(
            out,
            "| {goal} | {text} | {} |",
            if met { "yes" } else { "**no**" }
        );
    };
    let ws_step = |label: &str, transport: Transport, clients: usize| {
        find(runs, label, transport).and_then(|run| run.step(clients))
    };
    let efficiency = |step: Option<&StepResult>| {
        step.and_then(|s| s.server.as_ref())
            .map(|s| s.ticks_per_cpu_s)
    };
    for clients in [1000, 5000] {
        let ours = ws_step("tickscope", Transport::Websocket, clients);
        let bun = ws_step("bun", Transport::Websocket, clients);
        let both = ours.zip(bun);
        line(
            &format!(
                "{} WebSocket clients: ≥ 1.2× the ticks per server CPU-second of Bun (uWebSockets)",
                thousands(clients as f64)
            ),
            both.and_then(|(ours, bun)| {
                let (ours, peer) = (efficiency(Some(ours))?, efficiency(Some(bun))?);
                let times = ratio(ours, peer);
                Some((
                    format!(
                        "{} vs {} ticks/CPU-s: {times:.2}×",
                        thousands(ours),
                        thousands(peer)
                    ),
                    times >= 1.2,
                ))
            }),
        );
        line(
            &format!(
                "{} WebSocket clients: p99 no higher than Bun's",
                thousands(clients as f64)
            ),
            both.map(|(ours, bun)| {
                (
                    format!(
                        "{:.2} ms vs {:.2} ms{}",
                        ours.latency_ms.p99,
                        bun.latency_ms.p99,
                        if ours.load_bound() || bun.load_bound() {
                            " (a step was load-bound)"
                        } else {
                            ""
                        }
                    ),
                    ours.latency_ms.p99 <= bun.latency_ms.p99,
                )
            }),
        );
        line(
            &format!(
                "{} WebSocket clients: RSS per connection no higher than Bun's",
                thousands(clients as f64)
            ),
            both.and_then(|(ours, bun)| {
                let (ours, peer) = (ours.server.as_ref()?, bun.server.as_ref()?);
                Some((
                    format!(
                        "{} vs {}",
                        kib(ours.rss_per_client_bytes),
                        kib(peer.rss_per_client_bytes)
                    ),
                    ours.rss_per_client_bytes <= peer.rss_per_client_bytes,
                ))
            }),
        );
    }
    // SSE beside WebSocket at 1,000 and 5,000 clients: within 20 % on each of the three
    // measures.
    let within = |ours: f64, theirs: f64| ours <= theirs * 1.2;
    for clients in [1000, 5000] {
        let ws = ws_step("tickscope", Transport::Websocket, clients);
        let sse = ws_step("tickscope", Transport::Sse, clients);
        let at = thousands(clients as f64);
        line(
            &format!("SSE at {at} clients: ticks per server CPU-second within 20 % of WebSocket's"),
            efficiency(sse).zip(efficiency(ws)).map(|(sse, ws)| {
                (
                    format!(
                        "{} vs {} ticks/CPU-s: {:.2}×",
                        thousands(sse),
                        thousands(ws),
                        ratio(sse, ws)
                    ),
                    within(ws, sse),
                )
            }),
        );
        line(
            &format!("SSE at {at} clients: p99 within 20 % of WebSocket's"),
            sse.zip(ws).map(|(sse, ws)| {
                (
                    format!(
                        "{:.2} ms vs {:.2} ms{}",
                        sse.latency_ms.p99,
                        ws.latency_ms.p99,
                        if sse.load_bound() || ws.load_bound() {
                            " (a step was load-bound)"
                        } else {
                            ""
                        }
                    ),
                    within(sse.latency_ms.p99, ws.latency_ms.p99),
                )
            }),
        );
        line(
            &format!("SSE at {at} clients: RSS per connection within 20 % of WebSocket's"),
            sse.zip(ws).and_then(|(sse, ws)| {
                let (sse, ws) = (sse.server.as_ref()?, ws.server.as_ref()?);
                Some((
                    format!(
                        "{} vs {}",
                        kib(sse.rss_per_client_bytes),
                        kib(ws.rss_per_client_bytes)
                    ),
                    within(sse.rss_per_client_bytes, ws.rss_per_client_bytes),
                ))
            }),
        );
    }
    let ws = ws_step("tickscope", Transport::Websocket, 1000);
    let webtransport = ws_step("tickscope", Transport::Webtransport, 1000);
    line(
        "WebTransport at 1,000 clients: p50 within 20 % of WebSocket's",
        webtransport.zip(ws).map(|(wt, ws)| {
            (
                format!(
                    "{:.2} ms vs {:.2} ms, {} of {} connected{}",
                    wt.latency_ms.p50,
                    ws.latency_ms.p50,
                    thousands(wt.connected as f64),
                    thousands(wt.clients as f64),
                    if wt.load_bound() { " (load-bound)" } else { "" }
                ),
                wt.connected == wt.clients && within(wt.latency_ms.p50, ws.latency_ms.p50),
            )
        }),
    );
    let lossless = runs
        .iter()
        .filter(|run| run.label == "tickscope" && !run.idle)
        .flat_map(|run| &run.steps)
        .collect::<Vec<_>>();
    line(
        "Zero loss in every step of tickscope's runs",
        (!lossless.is_empty()).then(|| {
            let lost: u64 = lossless.iter().map(|step| step.lost).sum();
            (
                format!("{lost} lost in {} steps", lossless.len()),
                lost == 0,
            )
        }),
    );
    let ours = ws_step("tickscope", Transport::Websocket, 5000);
    let node = ws_step("node ws", Transport::Websocket, 5000);
    let sio = ws_step("socket.io", Transport::Socketio, 5000);
    let versus = |peer_step: Option<&StepResult>, name: &str, factor: f64| {
        let peer = efficiency(peer_step)?;
        let ours = efficiency(ours)?;
        let step = peer_step?;
        let times = ratio(ours, peer);
        let mut text = format!(
            "{} vs {} ticks/CPU-s: {times:.1}×",
            thousands(ours),
            thousands(peer)
        );
        if step.connected < step.clients {
            let _ = write!(
                text,
                " ({name} held {} of {} clients; the others' handshakes timed out)",
                thousands(step.connected as f64),
                thousands(step.clients as f64)
            );
        }
        Some((text, times >= factor))
    };
    line(
        "5,000 WebSocket clients: ≥ 3× the ticks per server CPU-second of Node `ws`",
        versus(node, "node ws", 3.0),
    );
    line(
        "5,000 WebSocket clients: ≥ 10× the ticks per server CPU-second of Socket.IO",
        versus(sio, "socket.io", 10.0),
    );
    line(
        "5,000 WebSocket clients: p99 ≤ 20 ms and zero loss",
        ours.map(|step| {
            (
                loss_and_p99(step),
                step.latency_ms.p99 <= 20.0 && step.meets(f64::INFINITY),
            )
        }),
    );
    line(
        "10,000 WebSocket clients held at p99 ≤ 50 ms",
        ws_step("tickscope", Transport::Websocket, 10_000)
            .map(|step| (loss_and_p99(step), step.meets(50.0))),
    );
    let idle = runs
        .iter()
        .find(|run| run.idle && run.label == "tickscope")
        .and_then(|run| run.steps.last())
        .and_then(|step| {
            step.server
                .as_ref()
                .map(|server| (step.clients, server.rss_per_client_bytes))
        });
    line(
        "An idle WebSocket connection costs ≤ 4 KiB of resident memory",
        idle.map(|(clients, bytes)| {
            (
                format!(
                    "{} per connection over {} connections",
                    kib(bytes),
                    thousands(clients as f64)
                ),
                bytes <= 4096.0,
            )
        }),
    );
    line(
        "Long polling at 5,000 clients: p99 ≤ 50 ms",
        ws_step("tickscope", Transport::LongPolling, 5000)
            .map(|step| (loss_and_p99(step), step.meets(50.0))),
    );
    let polling = runs
        .iter()
        .find(|run| {
            run.label == "tickscope"
                && run.transport == Transport::Polling
                && run.interval_ms == Some(1000)
        })
        .and_then(|run| run.steps.first());
    line(
        "Polling at T = 1 s: mean added lag within 10 % of T/2 (450 to 550 ms)",
        polling.map(|step| {
            let mean = step.latency_ms.mean;
            (
                format!(
                    "mean {mean:.1} ms over {} clients",
                    thousands(step.clients as f64)
                ),
                (450.0..=550.0).contains(&mean),
            )
        }),
    );
    out
}

fn loss_and_p99(step: &StepResult) -> String {
    format!(
        "p99 {:.2} ms, {} lost, {} of {} connected, {} dropped",
        step.latency_ms.p99,
        step.lost,
        thousands(step.connected as f64),
        thousands(step.clients as f64),
        step.disconnects
    )
}

/// The runs of the WebSocket comparison: tickscope and its peers, not the idle or stalled ones.
fn compared(run: &RunResult) -> bool {
    !run.idle
        && !run.label.contains("stalled")
        && !run.label.contains(STEERED)
        && matches!(run.transport, Transport::Websocket | Transport::Socketio)
}

/// p99 latency against clients held, one line per server over WebSocket, log scale.
fn chart(runs: &[RunResult], path: &Path) -> anyhow::Result<()> {
    let series: Vec<(&str, Vec<(f64, f64)>)> = runs
        .iter()
        .filter(|run| compared(run))
        .map(|run| {
            let points = run
                .steps
                .iter()
                .map(|step| (step.clients as f64, step.latency_ms.p99.max(0.01)))
                .collect();
            (run.label.as_str(), points)
        })
        .collect();
    let most_clients = series
        .iter()
        .flat_map(|(_, points)| points.iter().map(|point| point.0))
        .fold(1000.0, f64::max);
    let worst = series
        .iter()
        .flat_map(|(_, points)| points.iter().map(|point| point.1))
        .fold(100.0, f64::max);
    let root = SVGBackend::new(path, (800, 450)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "p99 latency over WebSocket, 12 symbols at 50 ticks/s",
            ("sans-serif", 20),
        )
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..most_clients * 1.05, (0.1..worst * 2.0).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("clients held")
        .y_desc("p99 latency, ms")
        .draw()?;
    let colors = [
        RGBColor(33, 150, 243),
        RGBColor(76, 175, 80),
        RGBColor(244, 67, 54),
        RGBColor(156, 39, 176),
    ];
    for (index, (label, points)) in series.iter().enumerate() {
        let color = colors[index % colors.len()];
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))?
            .label(*label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(
            points
                .iter()
                .map(|&point| Circle::new(point, 4, color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .draw()?;
    root.present()?;
    Ok(())
}

/// The labels `bench/cluster.sh` gives its two runs.
const SINGLE: &str = "tickscope --role all";
const EDGE: &str = "edge over NATS";

#[derive(Args)]
pub struct ClusterReportArgs {
    /// Folder of the two runs saved by `bench/cluster.sh`.
    #[arg(long)]
    results: PathBuf,
    /// The page to write.
    #[arg(long, default_value = "docs/BENCHMARKS-cluster.md")]
    out: PathBuf,
    /// A file describing the machine and how the run was made, copied into the page.
    #[arg(long)]
    setup: PathBuf,
}

/// Writes the scale-out page: one edge fed through NATS against `--role all`, with the goals
/// (capacity, added p50) computed from the runs.
pub fn write_cluster(args: &ClusterReportArgs) -> anyhow::Result<()> {
    let (runs, setup) = inputs(&args.results, &args.setup)?;
    let single = runs
        .iter()
        .find(|run| run.label == SINGLE)
        .with_context(|| format!("no run labelled {SINGLE:?}"))?;
    let edge = runs
        .iter()
        .find(|run| run.label == EDGE)
        .with_context(|| format!("no run labelled {EDGE:?}"))?;
    let mut out = String::from("# Benchmarks: one edge over NATS JetStream\n\n");
    out.push_str(
        "This page is written by `just bench-cluster` from the runs it makes; do not edit it \
         by hand.\n\n",
    );
    out.push_str(setup.trim());
    out.push_str("\n\n## Goals\n\n| goal | measured | met |\n|---|---|---|\n");
    let capacity = |run: &RunResult| run.capacity.unwrap_or(0);
    let share = ratio(capacity(edge) as f64, capacity(single) as f64);
    let _ = writeln!(
        out,
        "| an edge holds ≥ 80 % of the clients `--role all` holds (p99 ≤ {} ms, no loss) | \
         {} against {}: {:.0} % | {} |",
        single.p99_goal_ms,
        thousands(capacity(edge) as f64),
        thousands(capacity(single) as f64),
        share * 100.0,
        yes_no(capacity(single) > 0 && share >= 0.8),
    );
    for step in &single.steps {
        let Some(over) = edge.step(step.clients) else {
            continue;
        };
        let added = over.latency_ms.p50 - step.latency_ms.p50;
        let _ = writeln!(
            out,
            "| NATS adds ≤ 2 ms to the p50 at {} clients | p50 {:.2} ms against {:.2} ms: {added:+.2} ms | {} |",
            thousands(step.clients as f64),
            over.latency_ms.p50,
            step.latency_ms.p50,
            yes_no(added <= 2.0),
        );
    }
    out.push_str("\n## Runs\n\n");
    out.push_str(&table([single, edge].into_iter()));
    out.push_str(
        "\nColumns as on [the main benchmark page](BENCHMARKS.md#columns). Latency is from the \
         tick's `ts` to receipt: for the edge that is from the generator's publish, through \
         NATS, to the client. Server CPU is the edge's (or the single process's) alone.\n",
    );
    std::fs::write(&args.out, out).with_context(|| format!("writing {}", args.out.display()))?;
    println!("wrote {}", args.out.display());
    Ok(())
}

pub(crate) fn yes_no(met: bool) -> &'static str {
    if met { "yes" } else { "**no**" }
}
