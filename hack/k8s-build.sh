#!/usr/bin/env bash
# Builds Kubernetes commands from the k8s.io/kubernetes Go module (its
# components are not published as standalone modules or packages here):
#
#   hack/k8s-build.sh VERSION OUTDIR COMMAND...     e.g. v1.37.2 out kubelet kube-proxy
#
# A COMMAND is a name under cmd/ (kubelet), a package path in the module
# (test/images/agnhost), or a package path ending in .test for its test
# binary (test/e2e.test: `go test -c` of test/e2e); each lands in OUTDIR
# under its last path element.
#
# A throwaway tools module requires k8s.io/kubernetes@VERSION and replaces
# every staging module (k8s.io/X => ./staging/src/k8s.io/X in kubernetes'
# go.mod) with k8s.io/X v0.<minor>.<patch>. All commands are built by one
# `go build`, so the packages they share compile once, statically, with the
# version stamped in (without it they report v0.0.0 and version-dependent
# behaviour goes wrong). Progress goes to stderr.
set -euo pipefail
version=$1 out=$2
shift 2
minor=${version#v1.}
minor=${minor%%.*}
tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT

# On failure go prints the reason in the JSON, on stdout.
if ! info=$(cd "$tools" && go mod download -json "k8s.io/kubernetes@$version"); then
	echo "k8s-build: could not download k8s.io/kubernetes@$version:" >&2
	echo "$info" >&2
	exit 1
fi
gomod=$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p' <<<"$info")
[ -f "$gomod" ] || { echo "k8s-build: no go.mod for k8s.io/kubernetes@$version in: $info" >&2; exit 1; }
{
	echo "module netguard.local/k8s-tools"
	echo
	echo "go $(go env GOVERSION | sed 's/^go//; s/^\([0-9]*\.[0-9]*\).*/\1/')"
	echo
	echo "require k8s.io/kubernetes $version"
	echo
	sed -n 's#^[[:space:]]*\(k8s.io/[^[:space:]]*\) => ./staging/src/.*#replace \1 => \1 v0.'"${version#v1.}"'#p' "$gomod"
} >"$tools/go.mod"
pkg() {
	case $1 in
	*/*) echo "k8s.io/kubernetes/${1%.test}" ;;
	*) echo "k8s.io/kubernetes/cmd/$1" ;;
	esac
}
{
	echo 'package tools'
	for c in "$@"; do echo "import _ \"$(pkg "$c")\""; done
} >"$tools/tools.go"
(cd "$tools" && GOFLAGS=-mod=mod go mod tidy >&2 2>&1 || true)
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
pkgs=()
for c in "$@"; do
	case $c in
	*.test) ;;
	*) pkgs+=("$(pkg "$c")") ;;
	esac
done
mkdir -p "$out" "$tools/bin"
if [ ${#pkgs[@]} -gt 0 ]; then
	(cd "$tools" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -o "$tools/bin/" -ldflags "$ldflags" "${pkgs[@]}" >&2)
fi
for c in "$@"; do
	case $c in
	*.test) (cd "$tools" && GOFLAGS=-mod=mod CGO_ENABLED=0 go test -c -trimpath -o "$tools/bin/${c##*/}" -ldflags "$ldflags" "$(pkg "$c")" >&2) ;;
	esac
	mv "$tools/bin/${c##*/}" "$out/${c##*/}"
done
