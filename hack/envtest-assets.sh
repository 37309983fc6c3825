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

build_apiserver() {
  local out="$1" minor tools gomod
  minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  tools="$(mktemp -d)"
  trap 'rm -rf "$tools"' RETURN
  log "building kube-apiserver $K8S_VERSION (one time per machine, several minutes)"
  gomod="$(cd "$tools" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
  [ -f "$gomod" ] || { log "could not download k8s.io/kubernetes@$K8S_VERSION"; return 1; }
  {
    echo "module netguard.local/envtest-tools"
    echo
    echo "go $(go env GOVERSION | sed 's/^go//; s/^\([0-9]*\.[0-9]*\).*/\1/')"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    # One replace per staging module: k8s.io/X => ./staging/src/k8s.io/X
    # in kubernetes' go.mod becomes k8s.io/X => k8s.io/X v0.<minor>.<patch>.
    sed -n 's#^[[:space:]]*\(k8s.io/[^[:space:]]*\) => ./staging/src/.*#replace \1 => \1 v0.'"${K8S_VERSION#v1.}"'#p' "$gomod"
  } >"$tools/go.mod"
  echo 'package tools' >"$tools/tools.go"
  echo 'import _ "k8s.io/kubernetes/cmd/kube-apiserver"' >>"$tools/tools.go"
  (cd "$tools" && GOFLAGS=-mod=mod go mod tidy >&2 2>&1 || true)
  (cd "$tools" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -o "$out.tmp" \
    -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor" \
    k8s.io/kubernetes/cmd/kube-apiserver >&2)
  mv "$out.tmp" "$out"
}

mkdir -p "$assets"
install_etcd
if [ ! -x "$assets/kube-apiserver" ]; then
  build_apiserver "$assets/kube-apiserver"
fi
ln -sf "$(command -v etcd || echo /usr/bin/etcd)" "$assets/etcd"
echo "$assets"
