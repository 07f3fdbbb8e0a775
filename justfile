# tickscope's one entry point: `just --list` shows every recipe.
# On a fresh machine use `scripts/just <recipe>`, which installs just itself first.

set shell := ["bash", "-euo", "pipefail", "-c"]

tools := env_var_or_default("TICKSCOPE_TOOLS", env_var("HOME") + "/.cache/tickscope-tools")
export PATH := tools + "/node_modules/.bin:" + env_var("HOME") + "/.cargo/bin:" + env_var("PATH")

# List the recipes
default:
    @just --list

# Install the build tools (wasm target, trunk, wasm-bindgen, wasm-opt; --browser adds Chromium), skipping what is there
setup *FLAGS:
    scripts/setup.sh {{FLAGS}}

# Build the browser app and run the server with it at http://127.0.0.1:8080, WebTransport on UDP 4433 (flags go to the server; --tls serves https://localhost:8080 with HTTP/2, and HTTP/1.1 only on :8081 for compare mode, with a self-signed certificate made once)
run *ARGS: setup build-app
    #!/usr/bin/env bash
    set -euo pipefail
    args=()
    tls=""
    for arg in {{ARGS}}; do
      if [ "$arg" = "--tls" ]; then
        read -r cert key < <(scripts/localhost-cert.sh target/tls)
        args+=(--tls-cert "$cert" --tls-key "$key")
        tls=1
      else
        args+=("$arg")
      fi
    done
    # WebTransport (HTTP/3, UDP) beside it, unless the flags say where.
    if [[ " ${args[*]} " != *" --webtransport-addr "* ]] && [ -z "${TICKSCOPE_WEBTRANSPORT_ADDR:-}" ]; then
      args+=(--webtransport-addr 127.0.0.1:4433)
    fi
    # With --tls, a second port serves HTTP/1.1 only, for compare mode's HTTP/1.1 columns.
    if [ -n "$tls" ] && [[ " ${args[*]} " != *" --http1-addr "* ]] && [ -z "${TICKSCOPE_HTTP1_ADDR:-}" ]; then
      args+=(--http1-addr 127.0.0.1:8081)
    fi
    cargo run --release -p tickscope -- "${args[@]}"

# Build the browser app into dist/ (size-optimised profile, wasm-opt -Oz)
build-app:
    trunk build --release --offline --cargo-profile wasm-release

# The network lab: the server behind an emulated link (PROFILE: none, cable, 4g, 3g, satellite, wifi-lossy; the page switches it) at http://198.18.0.2:8080. Needs root or sudo; Ctrl-C takes it all down
lab PROFILE="none": (setup "--net") build-app
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build --release -p tickscope -p tickscope-lab
    as_root=""; [ "$(id -u)" -eq 0 ] || as_root="sudo"
    $as_root ./target/release/tickscope-lab clean
    echo "tickscope behind the network lab: open http://198.18.0.2:8080 (profile {{PROFILE}}; the page's Network buttons switch it). Ctrl-C stops."
    exec $as_root ./target/release/tickscope-lab up --name lab --client host --profile {{PROFILE}} -- \
      ./target/release/tickscope --addr 198.18.0.2:8080 --webtransport-addr 198.18.0.2:4433 --static-dir dist --lab-control /run/tickscope-lab/lab.sock

# Try the scale-out: nats-server (JetStream, :14222), a generator (:8091) and 2 edges with the app (:8080, :8082); Ctrl-C stops all
cluster: (setup "--nats") build-app
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build --release -p tickscope
    mkdir -p target/cluster
    pids=()
    trap 'kill "${pids[@]}" 2>/dev/null; wait' EXIT
    nats-server -a 127.0.0.1 -p 14222 -js -sd target/cluster/nats >target/cluster/nats.log 2>&1 & pids+=($!)
    export TICKSCOPE_NATS_URL=nats://127.0.0.1:14222
    ./target/release/tickscope --role generator --addr 127.0.0.1:8091 & pids+=($!)
    ./target/release/tickscope --role edge --addr 127.0.0.1:8080 & pids+=($!)
    ./target/release/tickscope --role edge --addr 127.0.0.1:8082 & pids+=($!)
    echo "edges: http://127.0.0.1:8080 and http://127.0.0.1:8082; generator health: http://127.0.0.1:8091/healthz"
    echo "nats-server log: target/cluster/nats.log. Ctrl-C stops everything."
    wait -n

# Deploy as production does, on this machine: nats-server, a generator, two edges and PROXY (nginx, haproxy or caddy, with deploy/'s configuration) at https://localhost:8443; WebTransport goes to the edges on UDP 4433/4434. Ctrl-C stops all
deploy PROXY="nginx": (setup "--nats" "--proxies") build-app
    #!/usr/bin/env bash
    set -euo pipefail
    case "{{PROXY}}" in nginx|haproxy|caddy) ;; *) echo "PROXY is nginx, haproxy or caddy" >&2; exit 2 ;; esac
    cargo build --release -p tickscope
    run=target/deploy/{{PROXY}}
    rm -rf "$run"; mkdir -p "$run"
    read -r cert key < <(scripts/localhost-cert.sh target/tls)
    config=$(LISTEN=127.0.0.1:8443 EDGE_A=127.0.0.1:9081 EDGE_B=127.0.0.1:9082 \
      CERT=$(realpath "$cert") KEY=$(realpath "$key") deploy/render.sh {{PROXY}} "$run")
    pids=()
    trap 'kill "${pids[@]}" 2>/dev/null; wait' EXIT
    nats-server -a 127.0.0.1 -p 14222 -js -sd "$run/nats" >"$run/nats.log" 2>&1 & pids+=($!)
    export TICKSCOPE_NATS_URL=nats://127.0.0.1:14222
    ./target/release/tickscope --role generator --addr 127.0.0.1:8091 2>"$run/generator.log" & pids+=($!)
    # The page's origin is the proxy's: the edges let it open WebTransport sessions, and
    # count clients behind the proxy by X-Forwarded-For.
    edge=(--role edge --static-dir dist --allowed-origins https://localhost:8443,https://127.0.0.1:8443 --trusted-proxies 127.0.0.1)
    ./target/release/tickscope "${edge[@]}" --edge-name edge-a --addr 127.0.0.1:9081 --webtransport-addr 127.0.0.1:4433 2>"$run/edge-a.log" & pids+=($!)
    ./target/release/tickscope "${edge[@]}" --edge-name edge-b --addr 127.0.0.1:9082 --webtransport-addr 127.0.0.1:4434 2>"$run/edge-b.log" & pids+=($!)
    deploy/proxy.sh {{PROXY}} "$config" 2>"$run/proxy.log" & pids+=($!)
    echo "tickscope behind {{PROXY}}: open https://localhost:8443 (self-signed certificate: the browser asks once)"
    echo "edges: edge-a 127.0.0.1:9081, edge-b 127.0.0.1:9082 (readiness at /readyz); logs in $run. Ctrl-C stops everything."
    wait -n

# Run the server and `trunk serve` with live reload at http://127.0.0.1:8081, proxying /api to it
dev: setup
    #!/usr/bin/env bash
    set -euo pipefail
    mkdir -p dist
    cargo build -p tickscope
    # trunk's proxy brings the page's origin (:8081) to the server's streams.
    ./target/debug/tickscope --allowed-origins http://127.0.0.1:8081,http://localhost:8081 & server=$!
    trap 'kill $server' EXIT
    trunk serve

# Run every test: unit tests, the server's integration tests (a real nats-server for scale-out, nginx, HAProxy and Caddy in front), and the app end to end in headless Chromium
test: (setup "--browser" "--nats" "--net" "--proxies") build-app
    cargo test --workspace

# Formatting and clippy with warnings as errors
lint:
    rustup component list --installed | grep -q '^clippy' || rustup component add clippy rustfmt
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings

# Dependency policy with cargo deny: licenses, bans, sources; advisories too where GitHub (the RustSec database) is reachable
deny:
    cargo deny --version 2>/dev/null | grep -q "^cargo-deny 0.20.2$" || cargo install cargo-deny --version 0.20.2 --locked
    cargo deny check bans licenses sources
    @if timeout 30 git ls-remote https://github.com/rustsec/advisory-db HEAD >/dev/null 2>&1; then cargo deny check advisories; else echo "deny: advisories NOT checked: the RustSec database (github.com/rustsec/advisory-db) is unreachable from here" >&2; fi

# Lint, then every test
check: lint deny test

# Fuzz every decoder of client input (WebSocket messages and frame headers, query strings) for SECONDS each
fuzz SECONDS="60":
    #!/usr/bin/env bash
    set -euo pipefail
    command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
    cd fuzz
    # cargo fuzz passes nightly-only flags; RUSTC_BOOTSTRAP lets the stable compiler take them.
    export RUSTC_BOOTSTRAP=1
    for target in $(cargo fuzz list); do
      echo "== $target"
      log=$(mktemp)
      if cargo fuzz run "$target" -- -max_total_time={{SECONDS}} -print_final_stats=1 >"$log" 2>&1; then
        status="no crash"
      else
        status="CRASH: see fuzz/artifacts/$target/"
      fi
      runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
      echo "$target: ${runs:-?} executions in {{SECONDS}} s, $status"
      [[ $status == "no crash" ]] || { tail -40 "$log"; exit 1; }
    done

# Every benchmark: the load matrix (docs/BENCHMARKS.md) and the app's budgets, SECONDS per step
bench SECONDS="30": (bench-load SECONDS) (bench-cluster) (bench-deploy) (bench-app SECONDS) (bench-http SECONDS)

# tickscope and Bun at 1k/5k/10k clients, Node ws and Socket.IO at 1k/5k and tickscope's transports; writes docs/BENCHMARKS.md
bench-load SECONDS="30":
    cargo build --release -p tickscope -p tickscope-load
    cargo bench -p tickscope --bench fanout -- --quick --noplot
    bench/matrix.sh {{SECONDS}}

# One edge fed through NATS JetStream against `--role all`: capacity and added latency; writes docs/BENCHMARKS-cluster.md
bench-cluster SECONDS="20": (setup "--nats")
    cargo build --release -p tickscope -p tickscope-load
    bench/cluster.sh {{SECONDS}}

# CLIENTS clients of each transport straight to tickscope and through nginx, HAProxy and Caddy (deploy/'s configurations) in one run, tickscope and the proxy on core 0, the load on core 1; writes docs/BENCHMARKS-deploy.md
bench-deploy SECONDS="20" CLIENTS="10,100,1000": (setup "--proxies" "--net")
    cargo build --release -p tickscope -p tickscope-load
    bench/deploy.sh {{SECONDS}} {{CLIENTS}}
    bench/untouched.sh

# The transports across the network lab's profiles (100 clients each, through the link emulator); writes docs/NETWORK.md. Needs root
bench-net SECONDS="15" PROFILES="none,cable,4g,3g,satellite,wifi-lossy": (setup "--net")
    cargo build --release -p tickscope -p tickscope-load -p tickscope-lab
    bench/net.sh {{SECONDS}} {{PROFILES}}

# 2,000 mixed clients for MINUTES (30): the server's memory drift, errors and lost ticks
soak MINUTES="30":
    cargo build --release -p tickscope -p tickscope-load
    bench/soak.sh {{MINUTES}}

# Bytes per tick and lag of the HTTP transports over HTTP/1.1 and HTTP/2 (TLS) in headless Chromium, one after the other and then side by side in compare mode (SERVER_ARGS go to the server, like --rate 5)
bench-http SECONDS="30" *SERVER_ARGS: (setup "--browser") build-app
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build --release -p tickscope --bins --examples
    read -r cert key < <(scripts/localhost-cert.sh target/tls)
    port=18443
    taskset -c 0 ./target/release/tickscope --addr 127.0.0.1:$port --workers 1 --static-dir dist \
      --tls-cert "$cert" --tls-key "$key" --http1-addr 127.0.0.1:$((port + 1)) {{SERVER_ARGS}} 2>/dev/null & server=$!
    trap 'kill $server' EXIT
    taskset -c 1 ./target/release/examples/http_versions --url https://localhost:$port --seconds {{SECONDS}}

# Lag per transport with one client each, and the app's budgets (size, first paint, CPU) in Chromium
bench-app SECONDS="30": (setup "--browser") build-app
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build --release -p tickscope --bins --examples
    echo "== app size"
    total=0
    for f in dist/*.wasm dist/*.js; do
      gz=$(gzip -9 -c "$f" | wc -c); total=$((total + gz))
      echo "$(basename "$f"): $(wc -c < "$f") bytes, $gz gzipped"
    done
    echo "wasm + js gzipped: $total bytes ($((total / 1024)) KiB)"
    port=18080
    taskset -c 0 ./target/release/tickscope --addr 127.0.0.1:$port --workers 1 --static-dir dist 2>/dev/null & server=$!
    trap 'kill $server' EXIT
    echo "== lag per transport"
    taskset -c 1 ./target/release/examples/lag_probe --url http://127.0.0.1:$port --seconds {{SECONDS}}
    echo "== app in headless Chromium"
    taskset -c 1 ./target/release/examples/app_budget --url http://127.0.0.1:$port --seconds {{SECONDS}}
