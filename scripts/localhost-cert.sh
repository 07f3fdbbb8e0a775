#!/usr/bin/env bash
# Makes a self-signed certificate for localhost and 127.0.0.1 (ECDSA P-256, a year) in DIR
# (default target/tls) unless one is there; prints the certificate's and the key's paths.
# A leaf, not a CA (rustls's webpki refuses a CA certificate as a server's).
set -euo pipefail
dir=${1:-target/tls}
if [ ! -s "$dir/localhost.pem" ] || [ ! -s "$dir/localhost-key.pem" ]; then
  mkdir -p "$dir"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 365 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -addext basicConstraints=critical,CA:FALSE -addext keyUsage=critical,digitalSignature \
    -addext extendedKeyUsage=serverAuth \
    -keyout "$dir/localhost-key.pem" -out "$dir/localhost.pem" 2>/dev/null
  echo "made $dir/localhost.pem (self-signed: the browser asks once; curl takes --cacert $dir/localhost.pem)" >&2
fi
echo "$dir/localhost.pem $dir/localhost-key.pem"
