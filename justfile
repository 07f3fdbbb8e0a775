# tickscope's one entry point: `just --list` shows every recipe.
# On a fresh machine use `scripts/just <recipe>`, which installs just itself first.

set shell := ["bash", "-euo", "pipefail", "-c"]

tools := env_var_or_default("TICKSCOPE_TOOLS", env_var("HOME") + "/.cache/tickscope-tools")
export PATH := tools + "/node_modules/.bin:" + env_var("HOME") + "/.cargo/bin:" + env_var("PATH")

# List the recipes
default:
    @just --list

# Install every tool the app needs (wasm target, trunk, wasm-bindgen, wasm-opt), skipping what is there
setup:
    scripts/setup.sh

# Build the browser app and run the server with it at http://127.0.0.1:8080 (flags go to the server)
run *ARGS: setup build-app
    cargo run --release -p tickscope -- {{ARGS}}

# Build the browser app into dist/ (size-optimised profile, wasm-opt -Oz)
build-app:
    trunk build --release --offline --cargo-profile wasm-release

# Run the server and `trunk serve` with live reload at http://127.0.0.1:8081, proxying /api to it
dev: setup
    #!/usr/bin/env bash
    set -euo pipefail
    mkdir -p dist
    cargo build -p tickscope
    ./target/debug/tickscope & server=$!
    trap 'kill $server' EXIT
    trunk serve

# Run every test: unit tests, the server's integration tests, and the app's wasm build
test:
    cargo test --workspace
    rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
    cargo check -p tickscope-frontend -p tickscope-shared --target wasm32-unknown-unknown

# Formatting and clippy with warnings as errors
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings

# Lint, then every test
check: lint test

# Measure update lag per transport against a release server (SECONDS per transport)
bench SECONDS="30":
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build --release -p tickscope --example lag_probe
    port=18080
    taskset -c 0 ./target/release/tickscope --addr 127.0.0.1:$port --workers 1 --static-dir /nonexistent & server=$!
    trap 'kill $server' EXIT
    taskset -c 1 ./target/release/examples/lag_probe --url http://127.0.0.1:$port --seconds {{SECONDS}}
