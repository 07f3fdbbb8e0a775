#!/usr/bin/env bash
# `just soak`: one server (core 0) and 2,000 mixed clients (core 1) for MINUTES (30):
# 500 WebSocket, 500 SSE, 500 long polling and 500 polling every second, all on loopback.
# Reports the server's resident-memory drift over the measured window, errors (failed
# connections and drops) and lost ticks. Goal: drift under 5 %, 0 errors, 0 unflagged loss.
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=${1:-30}
out=target/soak
port=18090
load=target/release/tickscope-load
rm -rf "$out" && mkdir -p "$out"
ulimit -n "$(ulimit -Hn)"

# The retained window is cut to 2,500 ticks so it is full before the warm-up ends: with the
# default 100,000 it fills for 33 minutes at 50 ticks/s, and that bounded growth would read as
# drift.
taskset -c 0 target/release/tickscope --addr "127.0.0.1:$port" --workers 1 --retention 2500 \
  --max-connections-per-ip 0 --max-long-polls-per-ip 0 >"$out/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do sleep 0.1; done

# Every minute: the server's RSS and what its allocator holds in use and free, to tell growth
# (allocated grows) from fragmentation (only free grows).
sample_memory() {
  echo "seconds rss_bytes heap_allocated_bytes heap_free_bytes" >"$out/memory.txt"
  local start=$SECONDS
  while kill -0 "$server" 2>/dev/null; do
    local rss heap
    rss=$(awk '/^VmRSS:/ { print $2 * 1024 }' "/proc/$server/status" 2>/dev/null) || break
    heap=$(curl -sf "http://127.0.0.1:$port/metrics" |
      awk '/^tickscope_heap_(allocated|free)_bytes / { printf " %s", $2 }') || break
    echo "$((SECONDS - start)) $rss$heap" >>"$out/memory.txt"
    sleep 60
  done
}
sample_memory &
sampler=$!

run() {
  local name=$1
  shift
  taskset -c 1 "$load" run --server-pid "$server" --clients 500 --warmup-seconds 60 \
    --seconds $((minutes * 60)) --json "$out/$name.json" "$@" >"$out/$name.txt" 2>&1
}
pids=()
run websocket --transport websocket --url "ws://127.0.0.1:$port/api/ws" & pids+=($!)
run sse --transport sse --url "http://127.0.0.1:$port/api/sse" & pids+=($!)
run long-polling --transport long-polling --url "http://127.0.0.1:$port/api/long-poll" & pids+=($!)
run polling --transport polling --interval-ms 1000 --url "http://127.0.0.1:$port/api/poll" & pids+=($!)
wait "${pids[@]}"
kill "$sampler" 2>/dev/null || true

cat "$out"/*.txt | grep -E '^\| (tickscope|server)' | sort -u -r
python3 - "$out" <<'PY'
import json, pathlib, sys
runs = [json.loads(p.read_text()) for p in sorted(pathlib.Path(sys.argv[1]).glob("*.json"))]
steps = [(r["transport"], r["steps"][-1]) for r in runs]
errors = sum(s["connect_errors"] + s["disconnects"] for _, s in steps)
lost = sum(s["lost"] + s["broken"] for _, s in steps)
gaps = sum(s["gaps"] for _, s in steps)
server = steps[0][1]["server"]
before, after = server["rss_before_bytes"], server["rss_bytes"]
drift = (after - before) / before * 100
print(f"clients: {sum(s['connected'] for _, s in steps)} of {sum(s['clients'] for _, s in steps)}")
print(f"server RSS: {before / 2**20:.1f} MiB after warm-up, {after / 2**20:.1f} MiB at the end: drift {drift:+.2f} % (goal under 5 %)")
print(f"errors: {errors} (goal 0); lost ticks: {lost} unflagged (goal 0), {gaps} flagged gaps")
rows = [line.split() for line in (pathlib.Path(sys.argv[1]) / "memory.txt").read_text().splitlines()[1:]]
rows = [[int(x) for x in row] for row in rows if len(row) == 4]
if len(rows) >= 3:
    # The first sample is before the clients' warm-up; the second is after it.
    (t0, rss0, alloc0, free0), (t1, rss1, alloc1, free1) = rows[1], rows[-1]
    mib = lambda b: f"{b / 2**20:.1f} MiB"
    print(f"from {t0} s to {t1} s: RSS {mib(rss0)} -> {mib(rss1)}, heap allocated {mib(alloc0)} -> {mib(alloc1)}, "
          f"heap free (held, unused) {mib(free0)} -> {mib(free1)}")
PY
