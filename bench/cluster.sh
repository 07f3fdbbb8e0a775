#!/usr/bin/env bash
# The scale-out benchmark of `just bench-cluster`: WebSocket clients on one edge fed through
# NATS JetStream, against the same clients on `--role all`. The server under test (the edge,
# or the single process) runs alone on core 0; nats-server, the generator and the load share
# core 1. Everything is on loopback and bounded. Results go to target/bench-cluster/*.json,
# then into docs/BENCHMARKS-cluster.md.
#
# Usage: bench/cluster.sh [SECONDS]   (measured seconds per step, default 20)
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-20}
out=target/bench-cluster
load=target/release/tickscope-load
server=target/release/tickscope
port=18080
generator_port=18091
nats_port=14222
steps=1000,2000,3000,4000,5000

command -v nats-server >/dev/null || { echo "bench: needs nats-server (scripts/setup.sh --nats)" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)"
rm -rf "$out" && mkdir -p "$out"

pids=()
stop_all() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  pids=()
}
trap stop_all EXIT

# Waits until the server on $1 answers /healthz (an edge answers once it has backfilled).
wait_healthy() {
  for _ in $(seq 200); do
    if curl -sf "http://127.0.0.1:$1/healthz" >/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "bench: nothing healthy on port $1" >&2
  tail -20 "$out"/*.log >&2
  exit 1
}

measure() {
  local name=$1 label=$2 pid=$3
  echo "== $label"
  taskset -c 1 "$load" run --server-pid "$pid" --seconds "$seconds" --json "$out/$name.json" \
    --label "$label" --transport websocket --url "ws://127.0.0.1:$port/api/ws" \
    --clients "$steps" --keep-going
}

limits=(--workers 1 --max-connections-per-ip 0 --max-long-polls-per-ip 0)

taskset -c 0 "$server" --addr "127.0.0.1:$port" "${limits[@]}" >"$out/single.log" 2>&1 &
single=$!
pids+=("$single")
wait_healthy "$port"
measure 1-single "tickscope --role all" "$single"
stop_all

taskset -c 1 nats-server -a 127.0.0.1 -p "$nats_port" -js -sd "$out/nats" >"$out/nats.log" 2>&1 &
pids+=("$!")
nats=(--nats-url "nats://127.0.0.1:$nats_port")
taskset -c 1 "$server" --role generator --addr "127.0.0.1:$generator_port" --workers 1 "${nats[@]}" \
  >"$out/generator.log" 2>&1 &
pids+=("$!")
wait_healthy "$generator_port"
taskset -c 0 "$server" --role edge --addr "127.0.0.1:$port" "${limits[@]}" "${nats[@]}" \
  >"$out/edge.log" 2>&1 &
edge=$!
pids+=("$edge")
wait_healthy "$port"
measure 2-edge "edge over NATS" "$edge"
stop_all

cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
cat >"$out/setup.md" <<SETUP
Measured on $(date -u +%Y-%m-%d) at commit \`$(git rev-parse --short HEAD)\`: ${cpu:-unknown CPU},
$(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB, Linux $(uname -r), $(nats-server --version).

Two runs of the same WebSocket load (\`tickscope-load\`, ramping ${steps//,/, } clients, $seconds s
measured per step after a 3 s warm-up; 12 symbols at 50 ticks/s; every client takes all symbols):

1. **\`--role all\`**: one tickscope process with the simulator in it, on core 0.
2. **edge over NATS**: \`--role edge\` on core 0, fed by \`--role generator\` through
   \`nats-server -js\` (file store). nats-server, the generator and the load generator share core 1.

The capacity is the largest step with p99 ≤ 50 ms, no loss, and every client held, when every
step before it also met that.
SETUP
"$load" cluster-report --results "$out" --setup "$out/setup.md" --out docs/BENCHMARKS-cluster.md
