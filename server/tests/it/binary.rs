//! The `tickscope` binary itself: its help, its refusal of bad flags, and a graceful stop on
//! SIGTERM.

use std::process::Command;

use crate::helpers::ServerProcess;

const BINARY: &str = env!("CARGO_BIN_EXE_tickscope");

#[test]
fn help_explains_every_option_with_its_variable() {
    let output = Command::new(BINARY).arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for (flag, variable) in [
        ("--addr", "TICKSCOPE_ADDR"),
        ("--symbols", "TICKSCOPE_SYMBOLS"),
        ("--rate", "TICKSCOPE_RATE"),
        ("--seed", "TICKSCOPE_SEED"),
        ("--speed", "TICKSCOPE_SPEED"),
        ("--retention", "TICKSCOPE_RETENTION"),
        ("--max-batch-ticks", "TICKSCOPE_MAX_BATCH_TICKS"),
        ("--max-symbols", "TICKSCOPE_MAX_SYMBOLS"),
        ("--long-poll-timeout-ms", "TICKSCOPE_LONG_POLL_TIMEOUT_MS"),
        (
            "--long-poll-max-timeout-ms",
            "TICKSCOPE_LONG_POLL_MAX_TIMEOUT_MS",
        ),
        ("--max-ws-message-bytes", "TICKSCOPE_MAX_WS_MESSAGE_BYTES"),
        ("--ws-heartbeat-ms", "TICKSCOPE_WS_HEARTBEAT_MS"),
        ("--ws-client-timeout-ms", "TICKSCOPE_WS_CLIENT_TIMEOUT_MS"),
        ("--sse-heartbeat-ms", "TICKSCOPE_SSE_HEARTBEAT_MS"),
        ("--static-dir", "TICKSCOPE_STATIC_DIR"),
        ("--workers", "TICKSCOPE_WORKERS"),
        ("--shutdown-timeout-ms", "TICKSCOPE_SHUTDOWN_TIMEOUT_MS"),
        ("--seq-base", "TICKSCOPE_SEQ_BASE"),
        ("--max-connections", "TICKSCOPE_MAX_CONNECTIONS"),
        (
            "--max-connections-per-ip",
            "TICKSCOPE_MAX_CONNECTIONS_PER_IP",
        ),
        ("--max-long-polls-per-ip", "TICKSCOPE_MAX_LONG_POLLS_PER_IP"),
        ("--min-poll-interval-ms", "TICKSCOPE_MIN_POLL_INTERVAL_MS"),
        ("--allowed-origins", "TICKSCOPE_ALLOWED_ORIGINS"),
        ("--cors-origins", "TICKSCOPE_CORS_ORIGINS"),
        ("--max-ws-messages-per-s", "TICKSCOPE_MAX_WS_MESSAGES_PER_S"),
        (
            "--request-head-timeout-ms",
            "TICKSCOPE_REQUEST_HEAD_TIMEOUT_MS",
        ),
        ("--conflate-after-ticks", "TICKSCOPE_CONFLATE_AFTER_TICKS"),
        (
            "--slow-client-timeout-ms",
            "TICKSCOPE_SLOW_CLIENT_TIMEOUT_MS",
        ),
        ("--role", "TICKSCOPE_ROLE"),
        ("--dead-peer-timeout-ms", "TICKSCOPE_DEAD_PEER_TIMEOUT_MS"),
        ("--nats-url", "TICKSCOPE_NATS_URL"),
        ("--nats-stream", "TICKSCOPE_NATS_STREAM"),
        ("--stale-after-ms", "TICKSCOPE_STALE_AFTER_MS"),
    ] {
        assert!(
            help.contains(flag) && help.contains(variable),
            "{flag} / {variable} in\n{help}"
        );
    }
}

#[test]
fn bad_flags_are_refused_with_a_reason() {
    let output = Command::new(BINARY).arg("--rate=fast").output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("rate must be a number"), "{stderr}");
    let output = Command::new(BINARY)
        .args(["--addr", "127.0.0.1:0", "--long-poll-timeout-ms", "70000"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("above --long-poll-max-timeout-ms"));
}

#[tokio::test]
async fn sigterm_stops_the_server_gracefully() {
    let mut server = ServerProcess::start(&[]);
    let health = reqwest::get(server.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);

    let killed = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let stopped = std::iter::from_fn(|| server.next_line()).any(|line| line.contains("stopped"));
    assert!(stopped, "the log ends with 'stopped'");
    let status = server.child.wait().unwrap();
    assert!(status.success(), "exit status {status}");
}
