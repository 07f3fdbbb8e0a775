//! `tickscope-lab`: runs the network lab (see the library's documentation).
//!
//! - `up`: makes a lab and keeps it until Ctrl-C, SIGTERM, `--max-seconds` or the end of the
//!   command it was given to run in the server namespace;
//! - `set`, `get`: switch or read a running lab's profile through its control socket;
//! - `probe`: round trips and a bulk download through a fresh lab, as JSON;
//! - `profiles`: every profile, as JSON;
//! - `clean`: removes what labs that were killed left behind.

use std::path::PathBuf;
use std::process::{Child, Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use tickscope_lab::control::{self, Control};
use tickscope_lab::lab::{self, ClientSide, Config, Lab};
use tickscope_lab::probe;
use tickscope_lab::relay::Paths;
use tickscope_shared::lab::{PROFILES, Profile, profile};

#[derive(Parser)]
#[command(
    version,
    about = "Network lab for tickscope: emulated links between namespaces"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Make a lab and keep it until Ctrl-C (or the end of COMMAND, run in the server namespace).
    Up(UpArgs),
    /// Switch a running lab to another profile.
    Set {
        profile: String,
        #[arg(long, default_value = "lab")]
        name: String,
    },
    /// Print a running lab's profile.
    Get {
        #[arg(long, default_value = "lab")]
        name: String,
    },
    /// Measure round trips and a bulk download through a fresh lab with PROFILE, as JSON.
    Probe {
        #[arg(long, default_value = "none")]
        profile: String,
        #[arg(long, default_value_t = 200)]
        rounds: usize,
        /// Seconds of bulk download.
        #[arg(long, default_value_t = 3)]
        seconds: u64,
    },
    /// Print every profile as JSON.
    Profiles,
    /// Remove the namespaces and files of labs whose process is gone.
    Clean,
}

#[derive(Args)]
struct UpArgs {
    /// The lab's name: namespaces `tslab-<name>-srv` and `-cli`, control socket
    /// `/run/tickscope-lab/<name>.sock`.
    #[arg(long, default_value = "lab")]
    name: String,
    #[arg(long, default_value = "none")]
    profile: String,
    /// Where the clients are: this host (a browser) or a namespace of their own.
    #[arg(long, value_enum, default_value = "host")]
    client: ClientSide,
    /// The third byte of the addresses, 198.18.<subnet>.1 (client) and .2 (server).
    #[arg(long, default_value_t = 0)]
    subnet: u8,
    /// One path for all the client's connections (one user), or one per connection (a user
    /// each, for load generators).
    #[arg(long, value_enum, default_value = "shared")]
    paths: Paths,
    /// Seed of the links' loss and jitter.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The lab ends after this long in any case.
    #[arg(long, default_value_t = 8 * 3600)]
    max_seconds: u64,
    /// Run in the server namespace; the lab ends when it does, and stops it when the lab ends.
    #[arg(last = true)]
    command: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("tickscope-lab: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Cmd) -> anyhow::Result<ExitCode> {
    match command {
        Cmd::Up(args) => up(args),
        Cmd::Set { profile, name } => {
            let answer = control::request(&socket(&name), &format!("set {profile}"))?;
            println!("{answer}");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Get { name } => {
            let answer = control::request(&socket(&name), "get")?;
            println!("{answer}");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Probe {
            profile,
            rounds,
            seconds,
        } => {
            let profile = known(&profile)?;
            let _signals = Signals::block()?;
            let lab = Lab::up(Config {
                name: format!("p{}", std::process::id() % 100_000_000),
                subnet: 0,
                client: ClientSide::Namespace,
                profile,
                paths: Paths::Shared,
                seed: 1,
            })?;
            let result = probe::probe(&lab, rounds, Duration::from_secs(seconds))?;
            println!("{}", serde_json::to_string_pretty(&result)?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Profiles => {
            println!("{}", serde_json::to_string_pretty(PROFILES)?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Clean => {
            for namespace in lab::clean_stale() {
                println!("removed {namespace}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn socket(name: &str) -> PathBuf {
    PathBuf::from(format!("{}/{name}.sock", lab::RUN_DIR))
}

fn known(name: &str) -> anyhow::Result<&'static Profile> {
    profile(name).with_context(|| {
        let names: Vec<_> = PROFILES.iter().map(|p| p.name).collect();
        format!("no profile {name:?}; there are {}", names.join(", "))
    })
}

fn up(args: UpArgs) -> anyhow::Result<ExitCode> {
    let profile = known(&args.profile)?;
    // Before any thread exists, so that every thread leaves these signals to the wait below.
    let signals = Signals::block()?;
    let lab = Lab::up(Config {
        name: args.name.clone(),
        subnet: args.subnet,
        client: args.client,
        profile,
        paths: args.paths,
        seed: args.seed,
    })?;
    let control = Control::serve(&socket(&args.name), lab.switch())?;
    let side = match lab.client_namespace() {
        Some(namespace) => format!("namespace {}", namespace.name()),
        None => "this host".to_owned(),
    };
    println!(
        "lab {} up: client {} ({side}), server {} (namespace {}), profile {}",
        args.name,
        lab.client_ip(),
        lab.server_ip(),
        lab.server_namespace().name(),
        profile.name
    );
    let mut child = match args.command.split_first() {
        Some((program, rest)) => Some(spawn_in(lab.server_namespace().name(), program, rest)?),
        None => None,
    };
    let deadline = Instant::now() + Duration::from_secs(args.max_seconds);
    let mut code = ExitCode::SUCCESS;
    loop {
        if let Some(signal) = signals.wait(Duration::from_millis(200)) {
            eprintln!("tickscope-lab: signal {signal}, taking the lab down");
            break;
        }
        if let Some(running) = &mut child
            && let Some(status) = running.try_wait()?
        {
            eprintln!("tickscope-lab: the command ended ({status}), taking the lab down");
            if !status.success() {
                code = ExitCode::FAILURE;
            }
            child = None;
            break;
        }
        if Instant::now() >= deadline {
            eprintln!("tickscope-lab: --max-seconds reached, taking the lab down");
            break;
        }
    }
    if let Some(running) = child {
        stop(running);
    }
    let (down, up) = lab.relay().counts();
    eprintln!("tickscope-lab: down {down:?}; up {up:?}");
    drop(control);
    drop(lab);
    Ok(code)
}

/// Runs `program` in `namespace`, with the signals the lab blocks unblocked again.
fn spawn_in(namespace: &str, program: &str, rest: &[String]) -> anyhow::Result<Child> {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", namespace, program])
        .args(rest);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(|| {
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
            Ok(())
        });
    }
    command
        .spawn()
        .with_context(|| format!("running {program} in {namespace}"))
}

/// SIGTERM, then SIGKILL if it has not ended within 5 s.
fn stop(mut child: Child) {
    // SAFETY: kill with a pid of our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// SIGINT, SIGTERM and SIGHUP, blocked in every thread and taken by [`Signals::wait`], so
/// that Ctrl-C and `kill` take the lab down cleanly.
struct Signals {
    set: libc::sigset_t,
}

impl Signals {
    fn block() -> anyhow::Result<Self> {
        // SAFETY: sigset functions on a zeroed set of our own.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                libc::sigaddset(&mut set, signal);
            }
            if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
                bail!("blocking signals failed");
            }
            Ok(Self { set })
        }
    }

    /// A signal that came within `wait`.
    fn wait(&self, wait: Duration) -> Option<i32> {
        let timeout = libc::timespec {
            tv_sec: wait.as_secs() as libc::time_t,
            tv_nsec: wait.subsec_nanos() as libc::c_long,
        };
        // SAFETY: a valid set and timeout; no siginfo wanted.
        let signal = unsafe { libc::sigtimedwait(&self.set, std::ptr::null_mut(), &timeout) };
        (signal > 0).then_some(signal)
    }
}
