#!/usr/bin/env bash
# make demo: runs hack/demo (a real kube-apiserver and etcd, the Helm chart,
# netguard serve, pods before and after, a Service denied), then checks that
# it left nothing of its own behind (hack/leftovers). Needs KUBEBUILDER_ASSETS.
#
# The Go modules, helm and the demo itself are fetched and built first, a
# line per step (lib/step.sh), so that the demo's output is the demo's.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${KUBEBUILDER_ASSETS:?set by make demo}"
. hack/lib/step.sh

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

step_go_modules
hack/helm.sh >/dev/null
# The demo builds netguard too: on the first run, building both here
# fills the Go build cache it uses (a cold build took 250 s of CPU).
if [ "$(go_to_compile ./hack/demo ./cmd/netguard)" -gt 100 ]; then
	step "Building the demo and netguard (first run only, about 3 min on 2 cores)" \
		go build -o "$work/bin/" ./hack/demo ./cmd/netguard
else
	go build -o "$work/bin/" ./hack/demo
fi

# The marker of the demo's processes, and a temporary directory of its own
# (hack/leftovers judges only what the demo made).
export NETGUARD_TEST_RUN="demo-$$-$(date +%s%N)"
export TMPDIR="$work/tmp"
mkdir "$TMPDIR"
hack/leftovers.sh snapshot "$work/leftovers"

status=0
"$work/bin/demo" || status=1
printf '\n==> Checking that the demo left nothing behind\n'
left=$(hack/leftovers.sh check "$work/leftovers") || status=1
while IFS= read -r line; do echo "  $line"; done <<<"$left"
exit "$status"
