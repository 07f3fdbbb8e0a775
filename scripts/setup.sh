#!/usr/bin/env bash
# Installs what building and running tickscope needs, skipping whatever is already there at the
# right version:
#   - the wasm32 target (rustup),
#   - trunk 0.21.14 (cargo install; 0.22 needs a newer rustc than this project's),
#   - wasm-bindgen-cli at exactly the version in Cargo.lock (trunk uses it from PATH),
#   - just and wasm-opt (npm: rust-just, binaryen 132; Debian's binaryen 108 breaks the app).
# With --browser it also installs Debian's chromium and chromium-driver for the browser tests,
# with --nats Debian's nats-server (JetStream) for the scale-out tests and `just cluster`, and
# with --net iproute2 and curl for the dead-peer tests (clients in a network namespace; the
# WebSocket one is python3, which every machine has), tcpdump for the packet-capture test of
# the wire figures, and faketime (libfaketime) for the clock-skew test; with --proxies
# Debian's nginx, haproxy and caddy (`just deploy`, the tests behind real proxies). Their
# packages' services are not started: tickscope runs each proxy as a process of its own.
set -euo pipefail
# shellcheck source=tools.sh
source "$(dirname "$0")/tools.sh"
cd "$SCRIPTS_DIR/.."

TRUNK_VERSION=0.21.14

want_browser=false
want_nats=false
want_net=false
want_proxies=false
for arg in "$@"; do
  case "$arg" in
    --browser) want_browser=true ;;
    --nats) want_nats=true ;;
    --net) want_net=true ;;
    --proxies) want_proxies=true ;;
    *) echo "usage: scripts/setup.sh [--browser] [--nats] [--net] [--proxies]" >&2; exit 2 ;;
  esac
done

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi

if ! trunk --version 2>/dev/null | grep -q " $TRUNK_VERSION\$"; then
  echo "installing trunk $TRUNK_VERSION (about 9 minutes on 2 cores, once)" >&2
  cargo install trunk --version "$TRUNK_VERSION" --locked
fi

bindgen_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if ! wasm-bindgen --version 2>/dev/null | grep -q " $bindgen_version\$"; then
  echo "installing wasm-bindgen-cli $bindgen_version (about 3 minutes, once)" >&2
  # Not --locked: its lock file names a webpki-roots version the registry does not serve.
  cargo install wasm-bindgen-cli --version "=$bindgen_version"
fi

install_npm_tools

debian_packages=()
if $want_browser && ! { [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; }; then
  debian_packages+=(chromium chromium-driver)
fi
if $want_nats && ! command -v nats-server >/dev/null; then
  debian_packages+=(nats-server)
fi
if $want_net && ! command -v ip >/dev/null; then
  debian_packages+=(iproute2)
fi
if $want_net && ! command -v curl >/dev/null; then
  debian_packages+=(curl)
fi
if $want_net && ! command -v tcpdump >/dev/null; then
  debian_packages+=(tcpdump)
fi
if $want_net && ! [ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1 ]; then
  debian_packages+=(faketime)
fi
if $want_proxies; then
  for proxy in nginx haproxy caddy; do
    command -v "$proxy" >/dev/null || [ -x "/usr/sbin/$proxy" ] || debian_packages+=("$proxy")
  done
fi
if [ ${#debian_packages[@]} -gt 0 ]; then
  echo "installing ${debian_packages[*]} from Debian" >&2
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get -o DPkg::Lock::Timeout=300 update -qq
  # policy-rc.d says no to starting services: a proxy's package would start it on :80.
  policy=/usr/sbin/policy-rc.d
  if $want_proxies && [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo_cmd tee "$policy" >/dev/null
    $sudo_cmd chmod +x "$policy"
    trap '$sudo_cmd rm -f "$policy"' EXIT
  fi
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get -o DPkg::Lock::Timeout=300 install -y -qq "${debian_packages[@]}"
fi
