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
        .init();
    let listener = TcpListener::bind(config.addr)
        .with_context(|| format!("binding {} (is another server on that port?)", config.addr))?;
    tickscope::run(listener, config, shutdown_signal()).await
}

/// Resolves on the first SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
