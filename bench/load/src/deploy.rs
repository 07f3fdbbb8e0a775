//! The page `just bench-deploy` writes (docs/BENCHMARKS-deploy.md): each transport's clients
//! straight to the server and through nginx, HAProxy and Caddy, in one run, with what each
//! proxy adds to the lag and what it spends itself.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::clients::Transport;
use crate::report::{RunResult, StepResult, inputs, kib, ratio, thousands, yes_no};

/// The labels `bench/deploy.sh` gives its runs: the direct path first.
const PATHS: [&str; 4] = ["direct", "nginx", "haproxy", "caddy"];

/// The most a proxy may add to a transport's p50 on loopback (the goal).
const ADDED_P50_GOAL_MS: f64 = 1.0;

#[derive(Args)]
pub struct DeployReportArgs {
    /// Folder of the runs saved by `bench/deploy.sh`.
    #[arg(long)]
    results: PathBuf,
    /// The page to write.
    #[arg(long, default_value = "docs/BENCHMARKS-deploy.md")]
    out: PathBuf,
    /// A file describing the machine and how the run was made, copied into the page.
    #[arg(long)]
    setup: PathBuf,
}

/// One transport's runs by path, in [`PATHS`]' order; `None` where a path was not run.
struct Row<'a> {
    transport: Transport,
    runs: Vec<Option<&'a RunResult>>,
}

/// The step of `run` with `clients` clients.
fn step_of(run: &RunResult, clients: usize) -> Option<&StepResult> {
    run.steps.iter().find(|step| step.clients == clients)
}

pub fn write(args: &DeployReportArgs) -> anyhow::Result<()> {
    let (runs, setup) = inputs(&args.results, &args.setup)?;
    let mut transports: Vec<Transport> = runs.iter().map(|run| run.transport).collect();
    transports.dedup();
    let rows: Vec<Row> = transports
        .into_iter()
        .map(|transport| Row {
            transport,
            runs: PATHS
                .iter()
                .map(|path| {
                    runs.iter()
                        .find(|run| run.transport == transport && run.label == *path)
                })
                .collect(),
        })
        .collect();
    anyhow::ensure!(!rows.is_empty(), "no runs in {}", args.results.display());

    let mut out = String::from("# Benchmarks: through nginx, HAProxy and Caddy\n\n");
    out.push_str(
        "This page is written by `just bench-deploy` from the runs it makes; do not edit it \
         by hand. What the configurations are and why: [DEPLOY.md](DEPLOY.md).\n\n",
    );
    out.push_str(setup.trim());
    out.push_str("\n\n## Goals\n\n| goal | measured | met |\n|---|---|---|\n");
    let mut counts: Vec<usize> = runs
        .iter()
        .flat_map(|run| run.steps.iter().map(|step| step.clients))
        .collect();
    counts.sort_unstable();
    counts.dedup();
    for &clients in &counts {
        let mut worst: Option<(f64, String)> = None;
        for row in &rows {
            let Some(direct) = row.runs[0].and_then(|run| step_of(run, clients)) else {
                continue;
            };
            for (path, run) in PATHS.iter().zip(&row.runs).skip(1) {
                let Some(step) = run.and_then(|run| step_of(run, clients)) else {
                    continue;
                };
                let added = step.latency_ms.p50 - direct.latency_ms.p50;
                if worst.as_ref().is_none_or(|(most, _)| added > *most) {
                    worst = Some((added, format!("{path}, {}", row.transport.as_str())));
                }
            }
        }
        if let Some((added, where_)) = &worst {
            let _ = writeln!(
                out,
                "| at {} clients, each proxy adds ≤ {ADDED_P50_GOAL_MS} ms to the p50 of every \
                 transport, against direct in the same run | the most: {added:+.2} ms \
                 ({where_}) | {} |",
                thousands(clients as f64),
                yes_no(*added <= ADDED_P50_GOAL_MS)
            );
        }
    }
    let steps = || {
        rows.iter()
            .flat_map(|row| row.runs.iter().flatten())
            .flat_map(|run| run.steps.iter())
    };
    let lost: u64 = steps()
        .map(|step| step.lost + step.gaps + step.broken + step.connect_errors + step.disconnects)
        .sum();
    let load_cpu = steps().map(|step| step.load_cpu).fold(0.0, f64::max);
    let _ = writeln!(
        out,
        "| every client held, nothing lost | {lost} lost, gaps, breaks, failed or dropped \
         connections | {} |",
        yes_no(lost == 0)
    );
    let _ = writeln!(
        out,
        "| the load is not the bottleneck (under 90 % of its core) | at most {:.0} % | {} |",
        load_cpu * 100.0,
        yes_no(load_cpu < 0.9)
    );

    out.push_str(
        "\n## By transport\n\n\
         | transport | clients | path | p50 ms | p99 ms | p50 added | p99 added | server CPU µs/tick | proxy CPU µs/tick | proxy RSS/connection | core 0 busy | load CPU |\n\
         |---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n",
    );
    for row in &rows {
        for &clients in &counts {
            let direct = row.runs[0].and_then(|run| step_of(run, clients));
            for (path, run) in PATHS.iter().zip(&row.runs) {
                let Some(step) = run.and_then(|run| step_of(run, clients)) else {
                    continue;
                };
                let added = |pick: fn(&StepResult) -> f64| match direct {
                    Some(direct) if *path != "direct" => {
                        format!("{:+.2} ms", pick(step) - pick(direct))
                    }
                    _ => "-".into(),
                };
                let per_tick = |cpu_s: f64| format!("{:.2}", ratio(cpu_s * 1e6, step.ticks as f64));
                let cpu = |use_: &Option<crate::report::ServerUse>| {
                    use_.as_ref().map_or(0.0, |use_| use_.cpu_s)
                };
                // The server and the proxy share core 0: how much of it they kept busy.
                let busy = ratio(cpu(&step.server) + cpu(&step.proxy), step.seconds);
                let _ = writeln!(
                    out,
                    "| {} | {} | {path} | {:.2} | {:.2} | {} | {} | {} | {} | {} | {:.0} % | {:.0} % |",
                    row.transport.as_str(),
                    thousands(step.connected as f64),
                    step.latency_ms.p50,
                    step.latency_ms.p99,
                    added(|step| step.latency_ms.p50),
                    added(|step| step.latency_ms.p99),
                    step.server
                        .as_ref()
                        .map_or("-".into(), |server| per_tick(server.cpu_s)),
                    step.proxy
                        .as_ref()
                        .map_or("-".into(), |proxy| per_tick(proxy.cpu_s)),
                    step.proxy
                        .as_ref()
                        .map_or("-".into(), |proxy| kib(proxy.rss_per_client_bytes)),
                    busy * 100.0,
                    step.load_cpu * 100.0,
                );
            }
        }
    }

    out.push_str("\n## Which proxy for which transport\n\n");
    out.push_str(
        "Per transport at the most clients, the proxy that adds the least to the p99, and the \
         one that spends the least CPU per delivered tick (on loopback, one run: a difference of \
         a few tenths of a millisecond is within what runs vary by).\n\n",
    );
    for row in &rows {
        let most = counts.last().copied().unwrap_or(0);
        let proxied: Vec<(&str, &StepResult)> = PATHS
            .iter()
            .zip(&row.runs)
            .skip(1)
            .filter_map(|(path, run)| Some((*path, run.and_then(|run| step_of(run, most))?)))
            .collect();
        let fastest = proxied
            .iter()
            .min_by(|a, b| a.1.latency_ms.p99.total_cmp(&b.1.latency_ms.p99));
        let cheapest = proxied
            .iter()
            .filter_map(|(path, step)| {
                Some((*path, ratio(step.proxy.as_ref()?.cpu_s, step.ticks as f64)))
            })
            .min_by(|a, b| a.1.total_cmp(&b.1));
        if let (Some((fast, _)), Some((cheap, _))) = (fastest, cheapest) {
            let _ = writeln!(
                out,
                "- **{}**: lowest p99 through {fast}; least proxy CPU per tick: {cheap}.",
                row.transport.as_str()
            );
        }
    }
    out.push_str(
        "\nLatency is from the tick's server timestamp to its arrival at the client. Server CPU \
         is the tickscope process's; proxy CPU and memory are the proxy's (nginx's master and \
         workers together), memory as resident bytes added since before the first client, per \
         client connection. Core 0 busy is the server's and the proxy's CPU together, as a share of \
         the one core they share: near 100 %, the proxy's own work is what the clients wait for. \
         Load CPU is the load generator's share of its core.\n",
    );
    std::fs::write(&args.out, out).with_context(|| format!("writing {}", args.out.display()))?;
    println!("wrote {}", args.out.display());
    Ok(())
}
