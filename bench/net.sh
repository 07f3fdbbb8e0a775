#!/usr/bin/env bash
# The network benchmark of `just bench-net`: tickscope-load's 100 clients in the lab's client
# namespace against the server in its server namespace, through the link emulator (lab/),
# for every profile and transport. Each client connection gets a path of its own
# (`--paths per-flow`): 100 users on 3G, not one phone with 100 tabs. The server runs on core
# 0, the load on core 1. Results go to target/bench-net/*.json, then into docs/NETWORK.md.
#
# Usage: bench/net.sh [SECONDS] [PROFILES]   (measured seconds per run, default 15;
#        profiles comma-separated, default all). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-15}
profiles=${2:-none,cable,4g,3g,satellite,wifi-lossy}
out=target/bench-net
lab=target/release/tickscope-lab
load=target/release/tickscope-load
server=target/release/tickscope
name=bn$$
client_ns=tslab-$name-cli
base=http://198.18.0.2:8080

[[ $(id -u) == 0 ]] || { echo "bench-net: needs root (network namespaces, TUN devices)" >&2; exit 1; }
rm -rf "$out" && mkdir -p "$out"
"$lab" clean

echo "== the emulator alone (profile none): round trips and a bulk download"
"$lab" probe --profile none --seconds 3 | tee "$out/probe-none.json"

# The lab runs the server in its namespace and takes both down when it ends.
"$lab" up --name "$name" --client namespace --paths per-flow --max-seconds 3600 -- \
  taskset -c 0 "$server" --addr 198.18.0.2:8080 --workers 1 --max-connections-per-ip 0 \
  --max-long-polls-per-ip 0 --static-dir /nonexistent >"$out/lab.log" 2>&1 &
lab_pid=$!
trap 'kill -INT $lab_pid 2>/dev/null || true; wait $lab_pid 2>/dev/null || true' EXIT

for _ in $(seq 300); do
  if ip netns exec "$client_ns" curl -sf "$base/healthz" >/dev/null 2>&1; then break; fi
  kill -0 $lab_pid 2>/dev/null || { cat "$out/lab.log" >&2; exit 1; }
  sleep 0.1
done
ip netns exec "$client_ns" curl -sf "$base/healthz" >/dev/null || { echo "bench-net: the server never answered" >&2; cat "$out/lab.log" >&2; exit 1; }

url_of() {
  case $1 in
    polling) echo "$base/api/poll" ;;
    long-polling) echo "$base/api/long-poll" ;;
    websocket) echo "ws://198.18.0.2:8080/api/ws" ;;
    sse) echo "$base/api/sse" ;;
  esac
}

for profile in ${profiles//,/ }; do
  "$lab" set "$profile" --name "$name" >/dev/null
  echo "== profile $profile"
  for transport in polling long-polling websocket sse; do
    ip netns exec "$client_ns" taskset -c 1 "$load" run --transport "$transport" \
      --url "$(url_of "$transport")" --clients 100 --seconds "$seconds" --warmup-seconds 3 \
      --label "$profile" --p99-goal-ms 100000 --json "$out/$profile-$transport.json"
  done
done

kill -INT $lab_pid && wait $lab_pid || true
trap - EXIT
"$load" net-report --results "$out"
