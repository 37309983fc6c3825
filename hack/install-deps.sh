#!/usr/bin/env bash
# Installs the Debian packages the tests and the demo use, if missing:
# etcd (control plane), nginx, dnsmasq, dnsperf and curl (DNS tests and
# benchmarks), iproute2 and iptables (network namespaces), dig.
set -euo pipefail
pkgs=(etcd-server nginx-light dnsmasq-base dnsperf iproute2 iptables dnsutils curl musl-tools)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "install-deps: missing Debian packages: ${missing[*]} (run as root, or install them)" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
