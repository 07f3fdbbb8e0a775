//! Measures a lab from both ends, with the kernel's own TCP: round trips of small messages
//! and the rate of a bulk download, through the link and, for the baseline, over the server
//! namespace's loopback.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use serde::Serialize;

use crate::lab::Lab;
use crate::netns::Namespace;

/// Bytes in each ping and pong.
const PING: usize = 64;

#[derive(Debug, Clone, Serialize)]
pub struct RoundTrips {
    pub rounds: usize,
    pub min_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    pub profile: String,
    pub connect_ms: f64,
    pub through_link: RoundTrips,
    /// The same exchange over the server namespace's loopback: what the machine takes alone.
    pub loopback: RoundTrips,
    /// Server to client, megabits per second of TCP payload.
    pub download_mbit_s: f64,
    pub download_bytes: u64,
}

/// Round trips then a bulk download of `bulk`, through `lab` (whose client side must be a
/// namespace).
pub fn probe(lab: &Lab, rounds: usize, bulk: Duration) -> anyhow::Result<Probe> {
    let client = lab
        .client_namespace()
        .context("probing needs a lab whose client side is a namespace")?;
    let server_ip: Ipv4Addr = lab.server_ip().parse()?;
    let listener = lab
        .server_namespace()
        .run(|| TcpListener::bind((server_ip, 0)))??;
    let address = listener.local_addr()?;
    let serving = std::thread::spawn(move || serve(listener, bulk));

    let started = Instant::now();
    let mut ping = client.run(|| TcpStream::connect(address))??;
    let connect_ms = ms(started.elapsed());
    let through_link = round_trips(&mut ping, rounds)?;
    drop(ping);
    let mut download = client.run(|| TcpStream::connect(address))??;
    download.set_read_timeout(Some(bulk + Duration::from_secs(30)))?;
    let (download_bytes, seconds) = drain(&mut download)?;
    serving
        .join()
        .map_err(|_| anyhow::anyhow!("the probe's server panicked"))??;

    let loopback = loopback_round_trips(lab.server_namespace(), rounds)?;
    Ok(Probe {
        profile: lab.switch().active().name.to_owned(),
        connect_ms,
        through_link,
        loopback,
        download_mbit_s: download_bytes as f64 * 8.0 / seconds / 1e6,
        download_bytes,
    })
}

/// Echoes the first connection, then sends the second bytes for `bulk`.
fn serve(listener: TcpListener, bulk: Duration) -> anyhow::Result<()> {
    let (echo, _) = listener.accept()?;
    echo_all(echo)?;
    let (mut sink, _) = listener.accept()?;
    let chunk = vec![0x5a; 64 * 1024];
    let until = Instant::now() + bulk;
    while Instant::now() < until {
        sink.write_all(&chunk)?;
    }
    Ok(())
}

fn echo_all(mut stream: TcpStream) -> anyhow::Result<()> {
    stream.set_nodelay(true)?;
    let mut buffer = [0; PING];
    loop {
        match stream.read_exact(&mut buffer) {
            Ok(()) => stream.write_all(&buffer)?,
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(error) => return Err(error.into()),
        }
    }
}

fn round_trips(stream: &mut TcpStream, rounds: usize) -> anyhow::Result<RoundTrips> {
    ensure!(rounds > 0, "at least one round");
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut times = Vec::with_capacity(rounds);
    let mut buffer = [0; PING];
    for _ in 0..rounds {
        let started = Instant::now();
        stream.write_all(&buffer)?;
        stream.read_exact(&mut buffer)?;
        times.push(ms(started.elapsed()));
    }
    times.sort_by(f64::total_cmp);
    let at = |share: f64| times[((times.len() - 1) as f64 * share).round() as usize];
    Ok(RoundTrips {
        rounds,
        min_ms: times[0],
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        max_ms: times[times.len() - 1],
    })
}

fn loopback_round_trips(namespace: &Namespace, rounds: usize) -> anyhow::Result<RoundTrips> {
    namespace.run(|| {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let address: SocketAddr = listener.local_addr()?;
        let echo = std::thread::spawn(move || -> anyhow::Result<()> {
            let (stream, _) = listener.accept()?;
            echo_all(stream)
        });
        let mut stream = TcpStream::connect(address)?;
        let trips = round_trips(&mut stream, rounds)?;
        drop(stream);
        echo.join()
            .map_err(|_| anyhow::anyhow!("the loopback echo panicked"))??;
        Ok(trips)
    })?
}

/// Reads to the end: (bytes, seconds from the first byte to the end).
fn drain(stream: &mut TcpStream) -> anyhow::Result<(u64, f64)> {
    let mut buffer = vec![0; 256 * 1024];
    let mut total = 0u64;
    let mut first = None;
    loop {
        let read = stream.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        first.get_or_insert_with(Instant::now);
        total += read as u64;
    }
    let seconds = first.map_or(0.0, |at| at.elapsed().as_secs_f64());
    ensure!(total > 0 && seconds > 0.0, "the download carried nothing");
    Ok((total, seconds))
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
