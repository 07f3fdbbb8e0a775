#!/usr/bin/env bash
# Renders a proxy's configuration from this folder with the addresses of one deployment:
#
#   LISTEN=127.0.0.1:8443 EDGE_A=127.0.0.1:9081 EDGE_B=127.0.0.1:9082 \
#   CERT=cert.pem KEY=key.pem deploy/render.sh nginx|haproxy|caddy [--untouched] RUN_DIR
#
# writes the configuration (and for HAProxy the PEM of certificate and key it takes) into
# RUN_DIR, where the proxy also keeps its pid, log and temporary files, and prints its path.
# --untouched renders deploy/untouched/ instead: the smallest configuration each proxy's
# documentation gives, plain HTTP to one edge, which the untouched-defaults test runs behind.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
usage="usage: deploy/render.sh nginx|haproxy|caddy [--untouched] RUN_DIR"
proxy=${1:?$usage}
shift
dir=$here
if [ "${1:-}" = "--untouched" ]; then
  dir=$here/untouched
  shift
fi
run=${1:?$usage}
case "$proxy" in
  nginx) file=nginx.conf ;;
  haproxy) file=haproxy.cfg ;;
  caddy) file=Caddyfile ;;
  *) echo "$usage" >&2; exit 2 ;;
esac
: "${LISTEN:?LISTEN=host:port the proxy listens on}" "${EDGE_A:?EDGE_A=host:port of an edge}"
EDGE_B=${EDGE_B:-$EDGE_A}
mkdir -p "$run"
run=$(cd "$run" && pwd)
pem=""
if [ "$dir" = "$here" ]; then
  : "${CERT:?CERT=the PEM certificate}" "${KEY:?KEY=its PEM key}"
  if [ "$proxy" = haproxy ]; then
    pem=$run/haproxy.pem
    cat "$CERT" "$KEY" >"$pem"
  fi
fi
sed -e "s|@LISTEN@|$LISTEN|g" -e "s|@LISTEN_HOST@|${LISTEN%:*}|g" -e "s|@LISTEN_PORT@|${LISTEN##*:}|g" \
  -e "s|@EDGE_A@|$EDGE_A|g" -e "s|@EDGE_B@|$EDGE_B|g" \
  -e "s|@CERT@|${CERT:-}|g" -e "s|@KEY@|${KEY:-}|g" -e "s|@PEM@|$pem|g" -e "s|@RUN@|$run|g" \
  "$dir/$file" >"$run/$file"
echo "$run/$file"
