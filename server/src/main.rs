//! The `tickscope` binary: reads the configuration, binds, and runs until SIGINT or SIGTERM.

use std::net::TcpListener;

use anyhow::Context;
use clap::Parser;
use tickscope::Config;
use tracing_subscriber::EnvFilter;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    // Handlers go in before the server starts, so a signal right after "listening" is not lost.
    let shutdown = shutdown_signal().context("installing the SIGINT and SIGTERM handlers")?;
    let listener = TcpListener::bind(config.addr)
        .with_context(|| format!("binding {} (is another server on that port?)", config.addr))?;
    tickscope::run(listener, config, shutdown).await
}

/// Resolves on the first SIGINT (Ctrl-C) or SIGTERM.
#[cfg(unix)]
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}

/// Resolves on Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
