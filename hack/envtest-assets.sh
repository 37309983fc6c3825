#!/usr/bin/env bash
# Installs what the integration tests need and prints the assets directory
# for KUBEBUILDER_ASSETS: kube-apiserver built from the k8s.io/kubernetes Go
# module (kube-apiserver is not published as a standalone module or package)
# and etcd from Debian's etcd-server.
#
# The build takes several minutes on 2 cores, so the result is cached in the
# user's cache directory, keyed by Kubernetes version: once per machine, not
# once per clone. Progress goes to stderr; stdout is only the directory.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.37.2}"
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/netguard/envtest"
assets="$cache_root/$K8S_VERSION"
log() { echo "envtest-assets: $*" >&2; }

install_etcd() {
  if command -v etcd >/dev/null 2>&1; then return; fi
  if [ -x /usr/bin/etcd ]; then return; fi
  log "installing etcd-server from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq etcd-server >&2
}

mkdir -p "$assets"
install_etcd
if [ ! -x "$assets/kube-apiserver" ]; then
  log "building kube-apiserver $K8S_VERSION (one time per machine, several minutes)"
  "$(dirname "$0")/k8s-build.sh" "$K8S_VERSION" "$assets" kube-apiserver
fi
ln -sf "$(command -v etcd || echo /usr/bin/etcd)" "$assets/etcd"
echo "$assets"
