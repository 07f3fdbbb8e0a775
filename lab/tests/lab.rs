//! The lab through the kernel's real TCP: round trips take the profile's delay, the rate caps a
//! download, loss is recovered from, a running lab switches profile, and nothing of a lab is
//! left once it ends, however it ends. Needs root (namespaces, TUN devices) and iproute2.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tickscope_lab::lab::{ClientSide, Config, Lab, PREFIX, RUN_DIR};
use tickscope_lab::netns;
use tickscope_lab::probe::probe;
use tickscope_lab::relay::Paths;
use tickscope_shared::lab::profile;

/// A lab name of this test process's own.
fn name() -> String {
    static MADE: AtomicU32 = AtomicU32::new(0);
    format!(
        "t{}x{}",
        std::process::id() % 100_000,
        MADE.fetch_add(1, Ordering::Relaxed)
    )
}

fn lab(profile_name: &str) -> Lab {
    Lab::up(Config {
        name: name(),
        subnet: 0,
        client: ClientSide::Namespace,
        profile: profile(profile_name).unwrap(),
        paths: Paths::Shared,
        seed: 7,
    })
    .expect("making a lab (this test needs root)")
}

fn namespaces_of(name: &str) -> Vec<String> {
    let prefix = format!("{PREFIX}{name}-");
    netns::list()
        .into_iter()
        .filter(|namespace| namespace.starts_with(&prefix))
        .collect()
}

#[test]
fn a_round_trip_takes_the_profiles_delay_and_the_rate_caps_a_download() {
    let lab = lab("cable");
    let measured = probe(&lab, 30, Duration::from_secs(2)).unwrap();
    // Cable: 10 ms each way; 64-byte pings add well under a millisecond at 10 Mbit/s.
    let trips = &measured.through_link;
    assert!(
        (20.0..22.0).contains(&trips.p50_ms),
        "round trip p50 {} ms",
        trips.p50_ms
    );
    assert!(trips.min_ms >= 20.0, "no round trip beats the delay");
    assert!(
        (20.0..25.0).contains(&measured.connect_ms),
        "connect {} ms",
        measured.connect_ms
    );
    // 50 Mbit/s down, of which TCP/IP heads take about 3.5%.
    assert!(
        (35.0..=50.0).contains(&measured.download_mbit_s),
        "download {} Mbit/s",
        measured.download_mbit_s
    );
    assert!(trips.p50_ms > measured.loopback.p50_ms + 19.0);
}

#[test]
fn tcp_gets_through_bursty_loss_and_the_link_counts_it() {
    let lab = lab("wifi-lossy");
    let measured = probe(&lab, 200, Duration::from_secs(2)).unwrap();
    assert!(measured.download_bytes > 0);
    let (down, up) = lab.relay().counts();
    let lost = down.lost + up.lost;
    let share = lost as f64 / (down.packets + up.packets + lost) as f64;
    // The profile loses 3% of the *time*; what share of the packets meet a bad spell
    // depends on when TCP sends them. A 2 s download meets about nine spells, and TCP
    // sends less into a spell once it has lost there, so 15 runs here counted 0.6% to
    // 3.6% (CI once saw 0.98%). The link's own share is held exactly in `link.rs`'s
    // unit tests; this checks that real TCP meets the loss, is counted and gets through.
    assert!(
        (0.002..0.08).contains(&share),
        "lost {lost} packets, {share:.4} of them"
    );
}

#[test]
fn the_profile_switches_while_the_lab_runs() {
    let lab = lab("none");
    let before = probe(&lab, 20, Duration::from_millis(200)).unwrap();
    lab.switch().set(profile("3g").unwrap());
    let after = probe(&lab, 5, Duration::from_millis(200)).unwrap();
    assert_eq!(after.profile, "3g");
    assert!(before.through_link.p50_ms < 2.0, "{before:?}");
    assert!(after.through_link.min_ms >= 200.0, "{after:?}");
}

/// `tickscope-lab up` with a command in the server namespace; returns once it is up.
fn up(name: &str, command: &[&str]) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tickscope-lab"))
        .args([
            "up",
            "--name",
            name,
            "--client",
            "namespace",
            "--max-seconds",
            "120",
            "--",
        ])
        .args(command)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains(&format!("lab {name} up")), "{line}");
    child
}

fn wait(child: &mut Child) -> std::process::ExitStatus {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < until, "the lab did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn left_behind(name: &str) -> Vec<String> {
    let mut left = namespaces_of(name);
    for file in [
        format!("{RUN_DIR}/{name}.pid"),
        format!("{RUN_DIR}/{name}.sock"),
    ] {
        if std::path::Path::new(&file).exists() {
            left.push(file);
        }
    }
    left
}

#[test]
fn ctrl_c_takes_everything_down_and_so_does_the_commands_end() {
    let name = name();
    let mut lab = up(&name, &["sleep", "600"]);
    assert_eq!(namespaces_of(&name).len(), 2);
    let lab_cli = env!("CARGO_BIN_EXE_tickscope-lab");
    let get = Command::new(lab_cli)
        .args(["set", "4g", "--name", &name])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&get.stdout).contains(r#""active":"4g""#));
    let unknown = Command::new(lab_cli)
        .args(["set", "dialup", "--name", &name])
        .output()
        .unwrap();
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no profile"));
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(lab.id() as i32, libc::SIGINT) };
    assert!(wait(&mut lab).success());
    assert_eq!(left_behind(&name), Vec::<String>::new());

    let name = self::name();
    let mut lab = up(&name, &["true"]);
    assert!(wait(&mut lab).success());
    assert_eq!(left_behind(&name), Vec::<String>::new());
}

#[test]
fn clean_removes_what_a_killed_lab_left() {
    let name = name();
    let mut lab = up(&name, &["sleep", "600"]);
    lab.kill().unwrap();
    lab.wait().unwrap();
    // SIGKILL leaves the namespaces (the devices go with the process).
    assert_eq!(namespaces_of(&name).len(), 2);
    let clean = Command::new(env!("CARGO_BIN_EXE_tickscope-lab"))
        .arg("clean")
        .output()
        .unwrap();
    assert!(clean.status.success());
    assert_eq!(left_behind(&name), Vec::<String>::new());
}
