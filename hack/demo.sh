#!/usr/bin/env bash
# make demo: runs hack/demo (a real kube-apiserver and etcd, the Helm chart,
# netguard serve, pods before and after, a Service denied), then checks that
# it left nothing behind (hack/leftovers.sh). Needs KUBEBUILDER_ASSETS.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${KUBEBUILDER_ASSETS:?set by make demo}"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export NETGUARD_TEST_RUN="demo-$$-$(date +%s%N)"
hack/leftovers.sh snapshot "$work/before"

status=0
go run ./hack/demo || status=1
printf '\n==> Checking that the demo left nothing behind\n'
left=$(hack/leftovers.sh check "$work/before") || status=1
while IFS= read -r line; do echo "  $line"; done <<<"$left"
exit "$status"
