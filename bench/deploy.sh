#!/usr/bin/env bash
# The proxy benchmark of `just bench-deploy`: CLIENTS clients of each transport straight to
# tickscope over TLS, then through nginx, HAProxy and Caddy with deploy/'s configurations
# (TLS and HTTP/2 at the proxy, plain HTTP/1.1 to tickscope), one after the other in one run.
# tickscope and the proxy share core 0; the load runs alone on core 1. Everything is on
# loopback and bounded. Results go to target/bench-deploy/*.json (a run of some transports
# replaces theirs and keeps the others'), then into docs/BENCHMARKS-deploy.md.
#
# Usage: bench/deploy.sh [SECONDS] [CLIENTS] [TRANSPORTS]   (20, 10,100,1000, websocket,sse,stream,long-polling,polling)
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-20}
clients=${2:-10,100,1000}
transports=${3:-websocket,sse,stream,long-polling,polling}
out=target/bench-deploy
load=target/release/tickscope-load
server=target/release/tickscope
edge_port=18080
tls_port=18443
proxy_port=18444

for tool in nginx haproxy caddy curl; do
  command -v "$tool" >/dev/null || { echo "bench: needs $tool (scripts/setup.sh --proxies --net)" >&2; exit 1; }
done
ulimit -n "$(ulimit -Hn)"
mkdir -p "$out"
read -r cert key < <(scripts/localhost-cert.sh target/tls)
cert=$(realpath "$cert")
key=$(realpath "$key")

pids=()
stop_all() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  pids=()
}
trap stop_all EXIT

# Waits until $1 answers /readyz with 200 (a proxy once its health check has passed).
wait_ready() {
  for _ in $(seq 200); do
    if curl -sf --cacert "$cert" "$1/readyz" >/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "bench: $1 is not ready" >&2
  tail -20 "$out"/*.log >&2
  exit 1
}

# The same server flags on both paths: one worker, no per-address limits (every client is
# 127.0.0.1), no poll-rate limit (behind a proxy a connection carries many clients' polls).
flags=(--workers 1 --max-connections-per-ip 0 --max-long-polls-per-ip 0 --min-poll-interval-ms 0)

path_of() {
  case "$1" in
    websocket) echo /api/ws ;;
    sse) echo /api/sse ;;
    stream) echo /api/stream ;;
    long-polling) echo /api/long-poll ;;
    polling) echo /api/poll ;;
    *) echo "bench: no transport $1" >&2; exit 2 ;;
  esac
}

measure() {
  local transport=$1 label=$2 origin=$3 server_pid=$4 proxy_pid=${5:-}
  local url=$origin$(path_of "$transport")
  [ "$transport" = websocket ] && url=wss${url#https}
  echo "== $transport, $label"
  local extra=()
  [ -n "$proxy_pid" ] && extra+=(--proxy-pid "$proxy_pid")
  [ "$transport" = websocket ] || extra+=(--http2)
  taskset -c 1 "$load" run --server-pid "$server_pid" "${extra[@]}" --seconds "$seconds" \
    --json "$out/$transport-$label.json" --label "$label" --transport "$transport" \
    --url "$url" --clients "$clients" --keep-going --tls-ca "$cert" --p99-goal-ms 1000
}

IFS=, read -r -a wanted <<<"$transports"
for transport in "${wanted[@]}"; do
  # A run of some transports keeps the others' results for the page.
  rm -f "$out/$transport"-*.json
  # Straight to tickscope, which does TLS and HTTP/2 itself.
  taskset -c 0 "$server" --addr "127.0.0.1:$tls_port" --tls-cert "$cert" --tls-key "$key" \
    "${flags[@]}" >"$out/direct.log" 2>&1 &
  pids+=($!)
  wait_ready "https://localhost:$tls_port"
  measure "$transport" direct "https://localhost:$tls_port" "${pids[0]}"
  stop_all

  for proxy in nginx haproxy caddy; do
    taskset -c 0 "$server" --addr "127.0.0.1:$edge_port" --trusted-proxies 127.0.0.1 \
      "${flags[@]}" >"$out/edge.log" 2>&1 &
    pids+=($!)
    run=$out/run-$proxy
    config=$(LISTEN=127.0.0.1:$proxy_port EDGE_A=127.0.0.1:$edge_port CERT=$cert KEY=$key \
      deploy/render.sh "$proxy" "$run")
    taskset -c 0 deploy/proxy.sh "$proxy" "$config" >"$out/proxy.log" 2>&1 &
    pids+=($!)
    wait_ready "https://localhost:$proxy_port"
    measure "$transport" "$proxy" "https://localhost:$proxy_port" "${pids[0]}" "${pids[1]}"
    # Caddy waits for open streams on SIGTERM; nothing is left to wait for here.
    [ "$proxy" = caddy ] && kill -9 "${pids[1]}" 2>/dev/null || true
    stop_all
  done
done

{
  echo "Measured on $(date -u +%Y-%m-%d) at $(git rev-parse --short HEAD): $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)),"
  echo "nginx $(nginx -v 2>&1 | cut -d/ -f2), HAProxy $(haproxy -v | head -1 | awk '{print $3}'), Caddy $(caddy version | awk '{print $1}')."
  echo "$clients clients per transport and path, measured for $seconds s after connecting, over TLS with HTTP/2 for"
  echo "the HTTP transports (one connection per client, as a browser's) and a wss connection for WebSocket;"
  echo "polling every second. tickscope (\`--role all\`, one worker) and the proxy share core 0, the load runs on core 1."
  echo "WebTransport is not here: no proxy carries it (its path goes to the edge on UDP)."
} >"$out/setup.md"
"$load" deploy-report --results "$out" --setup "$out/setup.md"
