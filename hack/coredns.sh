#!/usr/bin/env bash
# Prints the path of a CoreDNS binary (for the node, test/node, and the
# forwarder benchmark, hack/bench-dns.sh), building it first when there is
# none: `go install github.com/coredns/coredns@VERSION` (static) into the
# user's cache directory, keyed by version, so the build (about two
# minutes) happens once per machine. Progress goes to stderr, a line per
# step (lib/step.sh); stdout is only the path.
set -euo pipefail
. "$(dirname "$0")/lib/step.sh"
COREDNS_VERSION="${COREDNS_VERSION:-v1.15.0}"
dir="${XDG_CACHE_HOME:-$HOME/.cache}/netguard/coredns/$COREDNS_VERSION"
if [ -x "$dir/coredns" ]; then
	step_cached "CoreDNS $COREDNS_VERSION"
else
	mkdir -p "$dir"
	# Outside any module so the project's go.mod is neither read nor changed.
	step "Building CoreDNS $COREDNS_VERSION with go install (first run only, about 2 min)" \
		bash -c 'cd / && GOFLAGS=-mod=mod CGO_ENABLED=0 GOBIN="$1" go install -trimpath -ldflags "-s -w" "github.com/coredns/coredns@$2"' \
		_ "$dir" "$COREDNS_VERSION"
fi
echo "$dir/coredns"
