#!/usr/bin/env bash
# Prints a directory holding cert-manager for the real single-node cluster
# (test/node): cert-manager-controller and cert-manager-cainjector, static,
# and crds/, the CustomResourceDefinitions (plain YAML from the module's
# deploy/crds, applied as they are). The version is netguard's go.mod's
# github.com/cert-manager/cert-manager (CERT_MANAGER_VERSION overrides it).
#
# cert-manager's commands are Go modules of their own that the Go module
# proxy does not serve; the module github.com/cert-manager/cert-manager,
# with every controller, is. So this copies that module from the module
# cache to a temporary directory, adds netguard's two small main packages
# (hack/cert-manager/controller and cainjector, which wire cert-manager's
# own controllers as upstream's commands do) and builds them inside the
# copy, where cert-manager's internal/ packages may be imported and its own
# go.sum applies. The result is cached in the user's cache directory keyed
# by version (and rebuilt when the two main packages change): once per
# machine. Progress goes to stderr, a line per step
# (lib/step.sh); stdout is only the directory.
set -euo pipefail
cd "$(dirname "$0")"
. lib/step.sh

CERT_MANAGER_VERSION="${CERT_MANAGER_VERSION:-$(awk '$1 == "github.com/cert-manager/cert-manager" { print $2; exit }' ../go.mod)}"
if [ -z "$CERT_MANAGER_VERSION" ]; then
	echo "cert-manager.sh: no github.com/cert-manager/cert-manager in go.mod; set CERT_MANAGER_VERSION" >&2
	exit 1
fi
dir="${XDG_CACHE_HOME:-$HOME/.cache}/netguard/cert-manager/$CERT_MANAGER_VERSION"
mains="$PWD/cert-manager"
sum=$(cat "$mains/controller/main.go" "$mains/cainjector/main.go" | sha256sum | cut -d' ' -f1)

# build VERSION DIR: the two binaries and the CRDs into DIR, all or nothing.
build() {
	local version=$1 out=$2 src
	# Outside any module so the project's go.mod is neither read nor changed.
	src=$(cd / && GOFLAGS=-mod=mod go mod download -json "github.com/cert-manager/cert-manager@$version" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[ -d "$src" ] || { echo "go mod download gave no directory for cert-manager $version" >&2; return 1; }
	tmp=$(mktemp -d "${TMPDIR:-/tmp}/netguard-cert-manager.XXXXXX") # global: the trap runs after build returns
	trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
	cp -r "$src" "$tmp/src"
	chmod -R u+w "$tmp/src" # the module cache is read-only
	for c in controller cainjector; do
		mkdir -p "$tmp/src/netguard/cert-manager-$c"
		# Without the build constraint that keeps it out of netguard's builds.
		grep -v '^//go:build ignore$' "$mains/$c/main.go" >"$tmp/src/netguard/cert-manager-$c/main.go"
	done
	mkdir -p "$tmp/out/crds"
	# The module's own go.mod and go.sum, unchanged (-mod=readonly); no
	# workspace, no other toolchain.
	(cd "$tmp/src" && GOWORK=off GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0 \
		go build -trimpath -ldflags "-s -w -X github.com/cert-manager/cert-manager/pkg/util.AppVersion=$version" \
		-o "$tmp/out/" ./netguard/cert-manager-controller ./netguard/cert-manager-cainjector)
	cp "$src"/deploy/crds/*.yaml "$tmp/out/crds/"
	chmod u+w "$tmp"/out/crds/*.yaml
	echo "$sum" >"$tmp/out/mains.sha256"
	mkdir -p "$(dirname "$out")"
	rm -rf "$out"
	mv "$tmp/out" "$out"
}

if [ -x "$dir/cert-manager-controller" ] && [ -x "$dir/cert-manager-cainjector" ] && [ -d "$dir/crds" ] &&
	[ "$(cat "$dir/mains.sha256" 2>/dev/null)" = "$sum" ]; then
	step_cached "cert-manager $CERT_MANAGER_VERSION"
else
	step "Building cert-manager-controller and cert-manager-cainjector $CERT_MANAGER_VERSION from the cert-manager module (first run only, about 3 min on 2 cores)" \
		build "$CERT_MANAGER_VERSION" "$dir"
fi
echo "$dir"
