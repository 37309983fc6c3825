#!/usr/bin/env bash
# Installs what the integration tests need and prints the assets directory
# for KUBEBUILDER_ASSETS: kube-apiserver built from the k8s.io/kubernetes Go
# module (kube-apiserver is not published as a standalone module or package)
# and etcd from Debian's etcd-server.
#
# The build takes about 5 minutes on 2 cores (with the Go caches empty), so
# the result is cached in the user's cache directory, keyed by Kubernetes
# version: once per machine, not once per clone. Progress goes to stderr, a
# line per step (lib/step.sh); stdout is only the directory.
set -euo pipefail
. "$(dirname "$0")/lib/step.sh"

K8S_VERSION="${K8S_VERSION:-v1.37.2}"
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/netguard/envtest"
assets="$cache_root/$K8S_VERSION"

mkdir -p "$assets"
if ! command -v etcd >/dev/null 2>&1 && [ ! -x /usr/bin/etcd ]; then
  step "Installing etcd-server from Debian (first run only, about 20 s)" apt_install etcd-server
fi
if [ -x "$assets/kube-apiserver" ]; then
  step_cached "kube-apiserver $K8S_VERSION"
else
  step "Building kube-apiserver $K8S_VERSION from the k8s.io/kubernetes module (first run only, about 5 min on 2 cores)" \
    "$(dirname "$0")/k8s-build.sh" "$K8S_VERSION" "$assets" kube-apiserver
fi
ln -sf "$(command -v etcd || echo /usr/bin/etcd)" "$assets/etcd"
echo "$assets"
