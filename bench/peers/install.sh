#!/usr/bin/env bash
# Installs the C peers the benchmarks compare ambit with, from Debian: stunnel (mTLS tunnel pair),
# nghttpx + tinyproxy (HTTP/2 CONNECT pair; tinyproxy is its last CONNECT hop), haproxy (L7, and
# the TCP-mode mutual-TLS pair), nginx (backend), and the load/measurement tools wrk, h2load
# (nghttp2-client) and iperf3.
# Idempotent: installs only what is missing, runs `apt-get update` once, and only as root.
# Without root or apt-get it prints what is missing and exits 0: the suites skip those peers.
set -euo pipefail

packages=(stunnel4 nghttp2-proxy nghttp2-client tinyproxy-bin haproxy nginx-light wrk iperf3)

missing=()
for p in "${packages[@]}"; do
  if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    continue
  fi
  missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "peers: all installed (${packages[*]})"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "peers: skipped, no apt-get on this machine; missing: ${missing[*]}"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "peers: skipped, not root; missing: ${missing[*]} (run: sudo $0)"
  exit 0
fi

echo "peers: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# --no-install-recommends keeps it small; policy-rc.d-less containers may print that services
# could not be started: the benchmarks start their own instances, so that does not matter.
apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "peers: installed ${missing[*]}"
