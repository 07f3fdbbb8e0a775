#!/usr/bin/env bash
# The untouched-defaults table of docs/DEPLOY.md, measured: tickscope behind nginx, HAProxy and
# Caddy as deploy/untouched/ leaves them (plain HTTP, no tuning), twice:
#   1. the lag each adds to every streamed transport, with tickscope's defaults, against
#      direct (10 clients each, SECONDS each);
#   2. how long a quiet stream lives with the server's heartbeats turned off (every 10 min)
#      and a long poll held 90 s: what the proxies' idle cuts do without the defaults.
# Prints the figures; everything runs on loopback and is stopped at the end.
#
# Usage: bench/untouched.sh [SECONDS]   (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-10}
out=target/bench-untouched
load=target/release/tickscope-load
server=target/release/tickscope
port=18090
rm -rf "$out" && mkdir -p "$out"

pids=()
# SIGTERM first: nginx's master takes its workers down with it (a SIGKILL would orphan them).
stop_all() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  pids=()
}
trap stop_all EXIT

start_proxies() {
  local n=0
  for proxy in nginx haproxy caddy; do
    n=$((n + 1))
    local run=$out/$proxy
    local config
    config=$(LISTEN=127.0.0.1:$((port + n)) EDGE_A=127.0.0.1:$port deploy/render.sh "$proxy" --untouched "$run")
    deploy/proxy.sh "$proxy" "$config" >"$run/proxy.log" 2>&1 &
    pids+=($!)
  done
  for n in 0 1 2 3; do
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$((port + n))/healthz" >/dev/null && break; sleep 0.1; done
  done
}
origin() {
  case "$1" in direct) echo "127.0.0.1:$port" ;; nginx) echo "127.0.0.1:$((port + 1))" ;;
    haproxy) echo "127.0.0.1:$((port + 2))" ;; caddy) echo "127.0.0.1:$((port + 3))" ;; esac
}

echo "== 1. lag with tickscope's defaults, 10 clients for $seconds s (p50 / p99 ms)"
"$server" --addr "127.0.0.1:$port" --max-connections-per-ip 0 >"$out/server.log" 2>&1 &
pids+=($!)
start_proxies
for transport in sse stream websocket long-polling; do
  case "$transport" in sse) path=/api/sse ;; stream) path=/api/stream ;; websocket) path=/api/ws ;; long-polling) path=/api/long-poll ;; esac
  for via in direct nginx haproxy caddy; do
    scheme=http; [ "$transport" = websocket ] && scheme=ws
    "$load" run --transport "$transport" --url "$scheme://$(origin "$via")$path" --clients 10 \
      --seconds "$seconds" --warmup-seconds 1 --label "$via" --p99-goal-ms 100000 \
      --json "$out/$transport-$via.json" >/dev/null 2>&1 || true
    python3 - "$out/$transport-$via.json" "$transport via $via" <<'EOF'
import json, sys
step = json.load(open(sys.argv[1]))["steps"][-1]
if step["connected"] == 0:
    print(f"{sys.argv[2]}: refused ({step['first_error']})")
else:
    lat = step["latency_ms"]
    print(f"{sys.argv[2]}: p50 {lat['p50']:.2f}, p99 {lat['p99']:.2f}, lost {step['lost']}")
EOF
  done
done
stop_all

echo "== 2. without heartbeats: how long a quiet stream lives, and a long poll held 90 s"
"$server" --addr "127.0.0.1:$port" --rate 0 --sse-heartbeat-ms 600000 --ws-heartbeat-ms 600000 \
  --ws-client-timeout-ms 1200000 --long-poll-max-timeout-ms 90000 >"$out/server.log" 2>&1 &
pids+=($!)
start_proxies
since=$(curl -s "http://$(origin direct)/api/snapshot" | sed -E 's/^\{"cursor":([0-9]+).*/\1/')
watchers=()
for via in nginx haproxy caddy; do
  for path in "/api/sse" "/api/stream" "/api/long-poll?since=$since&timeout_ms=90000"; do
    (
      read -r code took < <(curl -s -o /dev/null -w '%{http_code} %{time_total}\n' --max-time 150 "http://$(origin "$via")$path" || true)
      awk -v via="$via" -v path="${path%%\?*}" -v code="$code" -v took="$took" 'BEGIN {
        if (took >= 149) printf "%s %s: still open at 150 s\n", via, path;
        else printf "%s %s: ended after %.0f s (HTTP %s)\n", via, path, took, code }' 
    ) &
    watchers+=($!)
  done
done
python3 - "$(origin nginx)" "$(origin haproxy)" "$(origin caddy)" <<'EOF' &
import socket, sys, time, base64, os, threading
def watch(name, addr):
    host, port = addr.split(":")
    s = socket.create_connection((host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(f"GET /api/ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    start = time.time()
    head = s.recv(4096).split(b"\r\n")[0].decode()
    if " 101 " not in head:
        print(f"{name} /api/ws: refused at once ({head})")
        return
    s.settimeout(150)
    try:
        while s.recv(4096):
            pass
        print(f"{name} /api/ws: ended after {time.time() - start:.0f} s")
    except socket.timeout:
        print(f"{name} /api/ws: still open at 150 s")
threads = [threading.Thread(target=watch, args=(n, a)) for n, a in zip(["nginx", "haproxy", "caddy"], sys.argv[1:])]
[t.start() for t in threads]
[t.join() for t in threads]
EOF
watchers+=($!)
wait "${watchers[@]}"
