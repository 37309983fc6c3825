#!/usr/bin/env bash
# The check of what a run left behind (hack/leftovers: what it judges, and
# why only the run's own objects):
#
#   hack/leftovers.sh snapshot DIR   build the check into DIR, record the machine's state
#   hack/leftovers.sh check DIR      compare with it; name each leftover and exit 1
#
# Set NETGUARD_TEST_RUN (the marker of the run's processes) and TMPDIR (the
# run's own temporary directory) before the snapshot.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
snapshot) mkdir -p "$2" && go build -o "$2/leftovers" ./hack/leftovers ;;
check) ;;
*)
	echo "usage: $0 snapshot DIR | check DIR" >&2
	exit 2
	;;
esac
exec "$2/leftovers" "$1" "$2"
