//! `tickscope-load`: holds N clients of one transport against a server on this machine and
//! reports what they saw (latency, ticks, loss, requests, bytes) and what the server spent
//! (CPU seconds and resident memory, given its pid). `--clients 1000,5000,10000` ramps in
//! steps and reports the capacity: the largest N with p99 within the goal and no loss.
//!
//! `tickscope-load report` turns a folder of saved runs into `docs/BENCHMARKS.md` and its
//! chart. `just bench` runs the whole matrix.

mod clients;
mod deploy;
mod network;
mod process;
mod raw;
mod recorder;
mod report;
mod wire;

use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use clap::{Args, Parser, Subcommand};
use tokio::task::{AbortHandle, LocalSet};
use tokio::time::{Instant, sleep, timeout};
use url::{Host, Url};

use crate::clients::{Shared, Transport};
use crate::report::{RunResult, StepResult};

/// Most clients one run may hold.
const MAX_CLIENTS: usize = 20_000;
/// Longest measured window of one step: an hour, for soak runs.
const MAX_SECONDS: u64 = 3600;

#[derive(Parser)]
#[command(version, about = "Load generator and benchmark report for tickscope")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Hold N clients of one transport against a server on loopback and report what they saw.
    Run(RunArgs),
    /// Write the benchmark page and its chart from saved runs.
    Report(report::ReportArgs),
    /// Write the network lab's page (docs/NETWORK.md) from the runs of `bench/net.sh`.
    NetReport(network::NetReportArgs),
    /// Write the scale-out page (an edge over NATS against `--role all`) from saved runs.
    ClusterReport(report::ClusterReportArgs),
    /// Write the page of the transports through nginx, HAProxy and Caddy against direct, from
    /// the runs of `bench/deploy.sh`.
    DeployReport(deploy::DeployReportArgs),
}

#[derive(Args)]
struct RunArgs {
    /// The endpoint, on loopback or in the network lab: for example ws://127.0.0.1:8080/api/ws,
    /// http://127.0.0.1:8080/api/sse, http://127.0.0.1:8080/api/long-poll.
    #[arg(long)]
    url: Url,
    #[arg(long, value_enum)]
    transport: Transport,
    /// Clients to hold; several (1000,5000,10000) ramp up in steps, adding clients each step.
    #[arg(long, value_delimiter = ',', default_value = "100")]
    clients: Vec<usize>,
    /// Seconds each step is measured for, after everyone has connected and warmed up.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Seconds between the last connection of a step and its measurement.
    #[arg(long, default_value_t = 3)]
    warmup_seconds: u64,
    /// Polling interval, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
    /// The server's process id, to report its CPU time and resident memory.
    #[arg(long)]
    server_pid: Option<u32>,
    /// A reverse proxy's process id (nginx's master: its workers are counted with it), to
    /// report its CPU time and resident memory beside the server's.
    #[arg(long)]
    proxy_pid: Option<u32>,
    /// A name for the server under test in the report ("tickscope", "node ws").
    #[arg(long, default_value = "tickscope")]
    label: String,
    /// The p99 latency a step must stay within (with no loss) to count towards capacity.
    #[arg(long, default_value_t = 50.0)]
    p99_goal_ms: f64,
    /// Handshakes in flight at once while connecting.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    /// WebSocket clients connect and stay silent (no subscription): for the memory of an idle
    /// connection.
    #[arg(long)]
    idle: bool,
    /// WebSocket clients that subscribe and then never read (slow consumers), opened before
    /// the measured ones; they count in no figure but the server's.
    #[arg(long, default_value_t = 0)]
    stalled: usize,
    /// Keep ramping after a step misses the goal.
    #[arg(long)]
    keep_going: bool,
    /// Trust this PEM certificate for https and wss URLs (the server's `--tls-cert`).
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// HTTP transports over HTTP/2 (https only; one connection per client, as one browser's).
    #[arg(long)]
    http2: bool,
    /// WebTransport: clients sharing one UDP socket (1: a socket each, as browsers have). On
    /// loopback a shared socket keeps the load generator's own reading off the lag it measures;
    /// the server's work is the same.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    quic_clients_per_socket: u32,
    /// Write the run as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Run(args) => run(args),
        Command::Report(args) => report::write(&args),
        Command::ClusterReport(args) => report::write_cluster(&args),
        Command::DeployReport(args) => deploy::write(&args),
        Command::NetReport(args) => network::write(&args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tickscope-load: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    check(&args)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = LocalSet::new().block_on(&runtime, steps(&args))?;
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&result)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(capacity) = result.capacity {
        println!(
            "capacity: {capacity} clients with p99 <= {} ms and no loss",
            args.p99_goal_ms
        );
    } else if args.clients.len() > 1 {
        println!(
            "capacity: no step met p99 <= {} ms with no loss",
            args.p99_goal_ms
        );
    }
    Ok(())
}

/// Refuses runs that are not bounded or not on this machine: loopback, or the network lab's
/// namespaces (198.18.0.0/15, RFC 2544's benchmarking range, see `lab/`).
fn check(args: &RunArgs) -> anyhow::Result<()> {
    let local = match args.url.host() {
        Some(Host::Ipv4(ip)) => {
            ip.is_loopback() || ip.octets()[..2] == [198, 18] || ip.octets()[..2] == [198, 19]
        }
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(name)) => name == "localhost",
        None => false,
    };
    ensure!(
        local,
        "{} is neither loopback nor the network lab (198.18.0.0/15); tickscope-load only talks to this machine",
        args.url
    );
    let most = args.clients.iter().copied().max().unwrap_or(0);
    ensure!(
        (1..=MAX_CLIENTS).contains(&most) && args.clients.iter().all(|&n| n > 0),
        "--clients must be between 1 and {MAX_CLIENTS}"
    );
    ensure!(
        args.clients.windows(2).all(|pair| pair[0] < pair[1]),
        "--clients steps must grow: {:?}",
        args.clients
    );
    ensure!(
        (1..=MAX_SECONDS).contains(&args.seconds),
        "--seconds must be between 1 and {MAX_SECONDS}"
    );
    ensure!(args.interval_ms > 0, "--interval-ms must be above 0");
    ensure!(
        !args.http2 || args.url.scheme() == "https",
        "--http2 is for https URLs (HTTP/2 is offered by ALPN)"
    );
    if (args.idle || args.stalled > 0) && args.transport != Transport::Websocket {
        bail!("--idle and --stalled are for --transport websocket");
    }
    if let Some(limit) = process::open_files_limit()
        && (most as u64) + 64 > limit
    {
        bail!(
            "{most} clients need more open files than this process may have ({limit}); raise it with `ulimit -n`"
        );
    }
    Ok(())
}

async fn steps(args: &RunArgs) -> anyhow::Result<RunResult> {
    let tls = args
        .tls_ca
        .as_deref()
        .map(|ca| clients::Tls::new(ca, args.http2))
        .transpose()?;
    let mut shared = Shared::new(
        args.connect_concurrency,
        Duration::from_millis(args.interval_ms),
        args.idle,
        tls.clone(),
    );
    shared.quic_clients_per_socket = args.quic_clients_per_socket as usize;
    let shared = Rc::new(shared);
    let baseline = args.server_pid.map(process::sample).transpose()?;
    let proxy_baseline = args.proxy_pid.map(process::sample_tree).transpose()?;
    let mut clients: Vec<AbortHandle> = Vec::new();
    let mut result = RunResult::new(
        &args.label,
        args.transport,
        args.url.as_str(),
        args.p99_goal_ms,
    );
    result.idle = args.idle;
    result.interval_ms = (args.transport == Transport::Polling).then_some(args.interval_ms);
    result.stalled = args.stalled;
    for _ in 0..args.stalled {
        let stalled = clients::stalled(args.url.clone());
        clients.push(tokio::task::spawn_local(stalled).abort_handle());
    }
    report::print_header();
    for &target in &args.clients {
        shared.recorder.borrow_mut().reset();
        let mut settled = shared.settled();
        for index in clients.len() - args.stalled..target {
            let client = clients::run(shared.clone(), args.transport, args.url.clone(), index);
            clients.push(tokio::task::spawn_local(client).abort_handle());
        }
        // Bounded: a server that stops accepting ends the wait, and the step reports how many
        // clients connected.
        let budget = Duration::from_secs(30 + target as u64 / 100);
        let connecting = Instant::now();
        let all_settled = timeout(budget, settled.wait_for(|&n| n >= target)).await;
        if all_settled.is_err() {
            eprintln!(
                "tickscope-load: only {} of {target} clients connected within {budget:?}",
                shared.connected()
            );
        }
        let connect_s = connecting.elapsed().as_secs_f64();
        sleep(Duration::from_secs(args.warmup_seconds)).await;
        let before = args.server_pid.map(process::sample).transpose()?;
        let proxy_before = args.proxy_pid.map(process::sample_tree).transpose()?;
        let load_before = process::sample(std::process::id())?;
        let server_wire_before = server_wire(args, tls.as_ref()).await;
        let wire_before = shared.wire.read();
        shared.recorder.borrow_mut().measuring = true;
        let started = Instant::now();
        sleep(Duration::from_secs(args.seconds)).await;
        shared.recorder.borrow_mut().measuring = false;
        let wire_after = shared.wire.read();
        let server_wire_after = server_wire(args, tls.as_ref()).await;
        let seconds = started.elapsed().as_secs_f64();
        let load_after = process::sample(std::process::id())?;
        let after = args.server_pid.map(process::sample).transpose()?;
        let proxy_after = args.proxy_pid.map(process::sample_tree).transpose()?;
        let step = StepResult::new(
            &shared.recorder.borrow(),
            report::StepSetup {
                clients: target,
                connected: shared.connected(),
                connect_s,
                seconds,
                load_cpu_s: load_after.cpu_s - load_before.cpu_s,
                wire: (wire_after.0 - wire_before.0, wire_after.1 - wire_before.1),
                server_wire: server_wire_before
                    .zip(server_wire_after)
                    .map(|((down0, up0), (down1, up1))| (down1 - down0, up1 - up0)),
            },
            report::ServerSamples {
                baseline,
                before,
                after,
            },
            report::ServerSamples {
                baseline: proxy_baseline,
                before: proxy_before,
                after: proxy_after,
            },
        );
        report::print_row(&args.label, args.transport, &step);
        let met = step.meets(args.p99_goal_ms);
        result.push(step, met);
        if !met && !args.keep_going {
            break;
        }
    }
    for client in clients {
        client.abort();
    }
    Ok(result)
}

/// The server's wire totals for the run's transport, or `None` when it has none or does not
/// answer within a few seconds: a peer whose accept queue is full of clients still connecting
/// would otherwise hold the step up for as long as it takes to reach the request.
async fn server_wire(args: &RunArgs, tls: Option<&clients::Tls>) -> Option<(u64, u64)> {
    timeout(
        Duration::from_secs(5),
        clients::server_wire(&args.url, args.transport, tls),
    )
    .await
    .ok()
    .flatten()
}
