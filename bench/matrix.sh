#!/usr/bin/env bash
# The benchmark matrix of `just bench`: tickscope against Bun (uWebSockets), Node `ws` and
# Socket.IO over WebSocket at 1k, 5k and 10k clients; tickscope and Bun again at 1k and 5k with
# the loopback receive processing on the load's core (as root); tickscope's other transports
# (WebTransport over HTTP/3 among them);
# idle connections.
# Each server runs alone on core 0 and the load on core 1; every run is on loopback and
# bounded in clients and time. Results go to target/bench/*.json, then into
# docs/BENCHMARKS.md and docs/bench-latency.svg.
#
# Usage: bench/matrix.sh [SECONDS]   (measured seconds per step, default 30)
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-30}
out=target/bench
load=target/release/tickscope-load
server=target/release/tickscope
port=18080

ulimit -n "$(ulimit -Hn)"
if (( $(ulimit -n) < 10200 )); then
  echo "bench: 10,000 clients need at least 10,200 open files; this shell allows $(ulimit -n)" >&2
  exit 1
fi
bun=bench/peers/node_modules/@oven/bun-linux-x64/bin/bun
if [[ ! -x $bun ]]; then
  npm ci --prefix bench/peers --no-audit --no-fund
fi
rps=/sys/class/net/lo/queues/rx-0/rps_cpus
rm -rf "$out" && mkdir -p "$out"

pid=
stop_server() {
  if [[ -n $pid ]]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=; fi
}
# Loopback receive processing back on the sender's core (the kernel's default).
unsteer() { if [[ -w $rps ]]; then echo 0 >"$rps"; fi; }
# WebTransport's endpoint and the load's QUIC sockets ask for 4 MiB receive buffers, and get
# at most net.core.rmem_max (Linux's default is 208 KiB, on which 1,000 clients lose packets
# that QUIC sends again). As root it is raised for the run and put back after.
rmem=/proc/sys/net/core/rmem_max
rmem_was=$(cat "$rmem")
if [[ -w $rmem ]] && (( rmem_was < 4194304 )); then echo 4194304 >"$rmem"; fi
rmem_now=$(cat "$rmem")
unraise() { if [[ -w $rmem ]]; then echo "$rmem_was" >"$rmem"; fi; }
trap 'stop_server; unsteer; unraise' EXIT

# Starts a server (the rest of the arguments) on core 0 and waits until it accepts.
start_server() {
  stop_server
  taskset -c 0 "$@" >"$out/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "bench: the server did not start: $*" >&2
  cat "$out/server.log" >&2
  exit 1
}

# Runs the load on core 1 against the running server; the name is the JSON file's.
measure() {
  local name=$1
  shift
  echo "== $name"
  taskset -c 1 "$load" run --server-pid "$pid" --seconds "$seconds" --json "$out/$name.json" "$@"
}

# All the clients come from 127.0.0.1, so the per-IP limits are lifted.
tickscope() {
  start_server "$server" --addr "127.0.0.1:$port" --workers 1 \
    --max-connections-per-ip 0 --max-long-polls-per-ip 0 "$@"
}

# Node's peers stop at 5,000: their 5,000 step already takes minutes to connect, and the
# goals compare 1,000 and 5,000.
ws_clients=1000,5000,10000
tickscope
measure ws-1-tickscope --label tickscope --transport websocket \
  --url "ws://127.0.0.1:$port/api/ws" --clients "$ws_clients" --keep-going

start_server env PORT=$port node bench/peers/ws-server.js
measure ws-2-node --label "node ws" --transport websocket \
  --url "ws://127.0.0.1:$port/" --clients 1000,5000 --keep-going

start_server env PORT=$port node bench/peers/socketio-server.js
measure ws-3-socketio --label socket.io --transport socketio \
  --url "ws://127.0.0.1:$port/socket.io/?EIO=4&transport=websocket" --clients 1000,5000 --keep-going

start_server env PORT=$port "$bun" bench/peers/bun-server.js
measure ws-4-bun --label bun --transport websocket \
  --url "ws://127.0.0.1:$port/" --clients "$ws_clients" --keep-going

# The same at 1k and 5k with the loopback receive processing on the load's core (CPU 1).
if [[ -w $rps ]]; then
  echo 2 >"$rps"
  tickscope
  measure steered-1-tickscope --label "tickscope, rx on load core" --transport websocket \
    --url "ws://127.0.0.1:$port/api/ws" --clients 1000,5000 --keep-going
  start_server env PORT=$port "$bun" bench/peers/bun-server.js
  measure steered-2-bun --label "bun, rx on load core" --transport websocket \
    --url "ws://127.0.0.1:$port/" --clients 1000,5000 --keep-going
  unsteer
else
  echo "bench: $rps is not writable (not root): the steered runs are left out" >&2
fi

tickscope
measure transport-1-sse --transport sse --url "http://127.0.0.1:$port/api/sse" --clients 1000,5000 --keep-going
tickscope
measure transport-1-stream --transport stream --url "http://127.0.0.1:$port/api/stream" --clients 1000
tickscope --webtransport-addr "127.0.0.1:$((port + 1))"
# Fifty clients to a UDP socket: the load reads the server's packets in batches, and the
# server's work per session is the same as with a socket each.
measure transport-1-webtransport --transport webtransport --quic-clients-per-socket 50 \
  --url "http://127.0.0.1:$port/api/webtransport" --clients 100,300,1000 --keep-going
tickscope
measure transport-2-long-polling --transport long-polling \
  --url "http://127.0.0.1:$port/api/long-poll" --clients 1000,5000 --keep-going
tickscope
measure transport-3-polling --transport polling --interval-ms 1000 \
  --url "http://127.0.0.1:$port/api/poll" --clients 1000
tickscope
measure stalled-1-none --label "tickscope, none stalled" --transport websocket \
  --url "ws://127.0.0.1:$port/api/ws" --clients 500
tickscope
measure stalled-2-one --label "tickscope, 1 stalled" --transport websocket --stalled 1 \
  --url "ws://127.0.0.1:$port/api/ws" --clients 500
tickscope
measure idle-websocket --transport websocket --idle \
  --url "ws://127.0.0.1:$port/api/ws" --clients 10000
stop_server

cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
cat >"$out/setup.md" <<SETUP
Measured on $(date -u +%Y-%m-%d) at commit \`$(git rev-parse --short HEAD)\`: ${cpu:-unknown CPU},
$(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB, Linux $(uname -r), $(rustc --version | cut -d' ' -f1-2),
Node $(node --version). Every server ran alone on core 0 (\`taskset -c 0\`, tickscope with
\`--workers 1\`), and \`tickscope-load\` on core 1, all on loopback. Each step connects its clients
(64 handshakes at a time), waits 3 s, then measures for $seconds s. The feed is 12 symbols at 50
ticks/s in total; every client subscribes to all of them. Ramps add clients to the ones already
connected. UDP receive buffers could be up to $((rmem_now / 1024)) KiB (\`net.core.rmem_max\`).

To reproduce: \`just bench\` (this page and its chart), or one run, for example:

\`\`\`sh
taskset -c 0 target/release/tickscope --workers 1 &
taskset -c 1 target/release/tickscope-load run --transport websocket \\
  --url ws://127.0.0.1:8080/api/ws --clients 1000,5000,10000 --server-pid \$! --keep-going
\`\`\`

The peers are in \`bench/peers/\`: \`bun-server.js\` (Bun $("$bun" --version), whose WebSocket
server is uWebSockets, broadcasting with its topic pub/sub), \`ws-server.js\` (\`ws@8\`) and
\`socketio-server.js\` (Socket.IO 4.8), all on the same feed (\`feed.js\`) in the same message shape, broadcasting
each tick to every client as those libraries document.
SETUP
"$load" report --results "$out" --setup "$out/setup.md" --out docs/BENCHMARKS.md --chart docs/bench-latency.svg
