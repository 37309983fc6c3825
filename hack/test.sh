#!/usr/bin/env bash
# The whole test suite, as `make test` runs it: lint, every package's tests
# in parallel (unit, envtest integration, chart and alerts,
# network-namespace e2e), the tests on a real single-node cluster (make
# e2e-node, on their own: the node needs the machine's ports and iptables),
# short fuzzing, then two checks of the run itself: no controller-runtime
# "log.SetLogger(...) was never called" stack trace in the output, and
# nothing of the run's left behind on the machine (hack/leftovers). A red
# run ends with what its failed tests printed (hack/failed-tests.sh).
#
# Needs KUBEBUILDER_ASSETS, NETGUARD_FLOOR_ASSETS (the oldest Kubernetes
# supported), HELM and PROMTOOL (the Makefile sets them). FUZZTIME sets
# the time per fuzz target (default 10s).
#
# On a fresh machine the Go modules are downloaded and the packages
# compiled first, a line per step (lib/step.sh), so that vet and the tests
# do not sit silent for minutes or print "go: downloading" lines.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${KUBEBUILDER_ASSETS:?set by make test}" "${NETGUARD_FLOOR_ASSETS:?set by make test}" "${HELM:?set by make test}" "${PROMTOOL:?set by make test}"
. hack/lib/step.sh

step_go_modules
if [ "$(go_to_compile ./...)" -gt 100 ]; then
	step "Compiling netguard's packages and their dependencies (first run only, about 3 min on 2 cores)" go build ./...
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Every process the run starts inherits the marker, so that a leftover is
# found wherever it was reparented to; and a temporary directory of the
# run's own, so that what is left there is the run's, and what other
# programs put in /tmp meanwhile is not.
export NETGUARD_TEST_RUN="$$-$(date +%s%N)"
export TMPDIR="$work/tmp"
mkdir "$TMPDIR"
netns_mounted=$(mountpoint -q /run/netns && echo yes || echo no)
hack/leftovers.sh snapshot "$work/leftovers"

make --no-print-directory lint

status=0
NETGUARD_REQUIRE_ENVTEST=1 go test -count=1 -timeout 30m ./... 2>&1 | tee "$work/test.log" || status=1
# The API server suites again on the oldest Kubernetes netguard supports.
if [ "$status" = 0 ]; then
	echo "==> The integration and chart tests on Kubernetes $(basename "$NETGUARD_FLOOR_ASSETS"), the oldest netguard supports"
	KUBEBUILDER_ASSETS=$NETGUARD_FLOOR_ASSETS NETGUARD_REQUIRE_ENVTEST=1 go test -count=1 -timeout 20m ./test/integration/... ./test/chart/... 2>&1 |
		tee "$work/floor.log" || status=1
fi
if [ "$status" = 0 ]; then
	make --no-print-directory e2e-node 2>&1 | tee "$work/node.log" || status=1
fi
if [ "$status" = 0 ]; then
	hack/fuzz.sh "${FUZZTIME:-10s}" 2>&1 | tee "$work/fuzz.log" || status=1
fi

# `ip netns add` makes /run/netns a mount point of its own, once per boot,
# for whoever adds the first namespace. Take it back when it was not there
# before and no namespace, of this run or another program, is in it.
if [ "$netns_mounted" = no ] && mountpoint -q /run/netns && [ -z "$(ip netns list)" ]; then
	umount /run/netns
fi

if grep -h -A3 'log.SetLogger(...) was never called' "$work"/*.log; then
	echo "test: a process logged through controller-runtime without a logger (stack trace above)" >&2
	status=1
fi
hack/leftovers.sh check "$work/leftovers" || status=1
if [ "$status" != 0 ]; then
	hack/failed-tests.sh "$work"/*.log
fi
if [ "$status" = 0 ]; then
	echo "test: PASS"
else
	echo "test: FAIL" >&2
fi
exit "$status"
