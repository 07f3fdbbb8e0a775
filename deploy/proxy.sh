#!/usr/bin/env bash
# Runs a proxy in the foreground on a configuration from deploy/render.sh, its pid, logs and
# state in RUN_DIR (the folder render.sh wrote to): deploy/proxy.sh nginx|haproxy|caddy CONFIG
set -euo pipefail
proxy=${1:?usage: deploy/proxy.sh nginx|haproxy|caddy CONFIG}
config=$(realpath "${2:?the configuration render.sh printed}")
run=$(dirname "$config")
case "$proxy" in
  nginx) exec nginx -c "$config" -g 'daemon off;' -e "$run/nginx-startup.log" ;;
  haproxy) exec haproxy -f "$config" -db ;;
  # Caddy keeps its autosave and state under the XDG folders.
  caddy) XDG_DATA_HOME=$run XDG_CONFIG_HOME=$run exec caddy run --config "$config" --adapter caddyfile ;;
  *) echo "usage: deploy/proxy.sh nginx|haproxy|caddy CONFIG" >&2; exit 2 ;;
esac
