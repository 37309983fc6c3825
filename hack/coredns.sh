#!/usr/bin/env bash
# Prints the path of a CoreDNS binary (for the node, test/node, and the
# forwarder benchmark, hack/bench-dns.sh), building it first when there is
# none: `go install github.com/coredns/coredns@VERSION` (static) into the
# user's cache directory, keyed by version, so the build (about two
# minutes) happens once per machine. Progress goes to stderr; stdout is
# only the path.
set -euo pipefail
COREDNS_VERSION="${COREDNS_VERSION:-v1.15.0}"
dir="${XDG_CACHE_HOME:-$HOME/.cache}/netguard/coredns/$COREDNS_VERSION"
if [ ! -x "$dir/coredns" ]; then
	echo "coredns.sh: building CoreDNS $COREDNS_VERSION (one time per machine)" >&2
	mkdir -p "$dir"
	# Outside any module so the project's go.mod is neither read nor changed.
	(cd / && GOFLAGS=-mod=mod CGO_ENABLED=0 GOBIN="$dir" go install -trimpath -ldflags "-s -w" \
		"github.com/coredns/coredns@$COREDNS_VERSION" >&2)
fi
echo "$dir/coredns"
