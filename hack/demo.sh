#!/usr/bin/env bash
# make demo: runs hack/demo (a real kube-apiserver and etcd, the Helm chart,
# netguard serve, pods before and after, a Service denied), then checks that
# it left nothing of its own behind (hack/leftovers). Needs KUBEBUILDER_ASSETS.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${KUBEBUILDER_ASSETS:?set by make demo}"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The marker of the demo's processes, and a temporary directory of its own
# (hack/leftovers judges only what the demo made).
export NETGUARD_TEST_RUN="demo-$$-$(date +%s%N)"
export TMPDIR="$work/tmp"
mkdir "$TMPDIR"
hack/leftovers.sh snapshot "$work/leftovers"

status=0
go run ./hack/demo || status=1
printf '\n==> Checking that the demo left nothing behind\n'
left=$(hack/leftovers.sh check "$work/leftovers") || status=1
while IFS= read -r line; do echo "  $line"; done <<<"$left"
exit "$status"
