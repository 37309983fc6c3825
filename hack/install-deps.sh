#!/usr/bin/env bash
# Installs the Debian packages the tests and the demo use, if missing:
# etcd (control plane), nginx, dnsmasq, dnsperf and curl (DNS tests and
# benchmarks), iproute2 and iptables (network namespaces), dig. Prints
# nothing when they are all there; otherwise one line for the install
# (lib/step.sh), apt-get's output only if it fails.
set -euo pipefail
. "$(dirname "$0")/lib/step.sh"
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
# About 1 min on a fresh machine: the packages and what they need are 140
# packages, 95 MB, at most.
step "Installing Debian packages: ${missing[*]} (first run only, about 1 min)" apt_install "${missing[@]}"
