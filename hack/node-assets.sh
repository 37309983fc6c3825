#!/usr/bin/env bash
# Installs what a real single-node cluster needs and prints a directory
# holding every binary it runs: kubelet, kube-proxy,
# kube-controller-manager and kube-scheduler built from the k8s.io/kubernetes
# module in one `go build`, kube-apiserver and etcd (hack/envtest-assets.sh),
# CoreDNS (hack/coredns.sh); and from Debian containerd, runc, the CNI
# plugins (/usr/lib/cni) and conntrack.
#
# Builds are cached in the user's cache directory keyed by version (about
# 2 minutes with a warm Go build cache, 6-8 minutes cold): once per machine.
# Progress goes to stderr, a line per step (lib/step.sh); stdout is only the
# directory.
set -euo pipefail
cd "$(dirname "$0")"
. lib/step.sh

K8S_VERSION="${K8S_VERSION:-v1.37.2}"
dir="${XDG_CACHE_HOME:-$HOME/.cache}/netguard/node/$K8S_VERSION"
log() { echo "node-assets: $*" >&2; }

pkgs=(containerd runc containernetworking-plugins conntrack iproute2 iptables)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" != 0 ]; then
		log "missing Debian packages: ${missing[*]} (run as root, or install them)"
		exit 1
	fi
	step "Installing Debian packages: ${missing[*]} (first run only, about 1 min)" apt_install "${missing[@]}"
fi

mkdir -p "$dir"
cmds=(kubelet kube-proxy kube-controller-manager kube-scheduler)
built=1
for c in "${cmds[@]}"; do [ -x "$dir/$c" ] || built=; done
if [ -n "$built" ]; then
	step_cached "${cmds[*]} $K8S_VERSION"
else
	step "Building ${cmds[*]} $K8S_VERSION from the k8s.io/kubernetes module (first run only, 2-8 min: less after kube-apiserver's build)" \
		./k8s-build.sh "$K8S_VERSION" "$dir" "${cmds[@]}"
fi
envtest=$(K8S_VERSION=$K8S_VERSION ./envtest-assets.sh)
ln -sf "$envtest/kube-apiserver" "$dir/kube-apiserver"
ln -sf "$envtest/etcd" "$dir/etcd"
ln -sf "$(./coredns.sh)" "$dir/coredns"
echo "$dir"
