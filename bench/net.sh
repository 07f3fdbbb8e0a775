#!/usr/bin/env bash
# The network benchmark of `just bench-net`: tickscope-load's 100 clients in the lab's client
# namespace against the server in its server namespace, through the link emulator (lab/),
# for every profile and transport, and first over the server namespace's own loopback (no
# link: what the machine itself takes). Each client connection gets a path of its own
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
server_ns=tslab-$name-srv

[[ $(id -u) == 0 ]] || { echo "bench-net: needs root (network namespaces, TUN devices)" >&2; exit 1; }
rm -rf "$out" && mkdir -p "$out"
"$lab" clean

echo "== the emulator alone (profile none): round trips and a bulk download"
"$lab" probe --profile none --seconds 3 | tee "$out/probe-none.json"

# The lab runs the server in its namespace and takes both down when it ends.
"$lab" up --name "$name" --client namespace --paths per-flow --max-seconds 3600 -- \
  taskset -c 0 "$server" --addr 0.0.0.0:8080 --webtransport-addr 0.0.0.0:4433 --workers 1 --max-connections-per-ip 0 \
  --max-long-polls-per-ip 0 --static-dir /nonexistent >"$out/lab.log" 2>&1 &
lab_pid=$!
trap 'kill -INT $lab_pid 2>/dev/null || true; wait $lab_pid 2>/dev/null || true' EXIT

for _ in $(seq 300); do
  if ip netns exec "$client_ns" curl -sf http://198.18.0.2:8080/healthz >/dev/null 2>&1; then break; fi
  kill -0 $lab_pid 2>/dev/null || { cat "$out/lab.log" >&2; exit 1; }
  sleep 0.1
done
ip netns exec "$client_ns" curl -sf http://198.18.0.2:8080/healthz >/dev/null || { echo "bench-net: the server never answered" >&2; cat "$out/lab.log" >&2; exit 1; }

# url_of TRANSPORT HOST
url_of() {
  case $1 in
    polling) echo "http://$2:8080/api/poll" ;;
    long-polling) echo "http://$2:8080/api/long-poll" ;;
    websocket) echo "ws://$2:8080/api/ws" ;;
    sse) echo "http://$2:8080/api/sse" ;;
    stream) echo "http://$2:8080/api/stream" ;;
    # The page's description of the endpoint: the session URL (UDP 4433) and the hashes to pin.
    webtransport) echo "http://$2:8080/api/webtransport" ;;
  esac
}

# run LABEL NAMESPACE HOST: each transport's 100 clients from NAMESPACE to HOST.
run() {
  for transport in polling long-polling websocket sse stream webtransport; do
    ip netns exec "$2" taskset -c 1 "$load" run --transport "$transport" \
      --url "$(url_of "$transport" "$3")" --clients 100 --seconds "$seconds" --warmup-seconds 3 \
      --label "$1" --p99-goal-ms 100000 --json "$out/$1-$transport.json"
  done
}

echo "== loopback (no link)"
run loopback "$server_ns" 127.0.0.1
for profile in ${profiles//,/ }; do
  "$lab" set "$profile" --name "$name" >/dev/null
  echo "== profile $profile"
  run "$profile" "$client_ns" 198.18.0.2
done

kill -INT $lab_pid && wait $lab_pid || true
trap - EXIT
"$load" net-report --results "$out"
