#!/usr/bin/env bash
# Prints the path of a promtool binary (Prometheus's rule checker and
# rule unit-test runner), installing it first when there is none: promtool
# on PATH is used as it is; otherwise promtool is built with `go install`
# from the prometheus module into the user's cache directory, keyed by
# version, so the build (about 7 minutes on 2 cores) happens once per
# machine, not once per clone. Progress goes to stderr, a line per step
# (lib/step.sh); stdout is only the path.
set -euo pipefail
. "$(dirname "$0")/lib/step.sh"

# Go module versions of Prometheus 3.x are v0.3MM.P for v3.MM.P.
PROMTOOL_VERSION="${PROMTOOL_VERSION:-v0.316.0}"

if command -v promtool >/dev/null 2>&1; then
  command -v promtool
  exit 0
fi

dir="${XDG_CACHE_HOME:-$HOME/.cache}/netguard/promtool/$PROMTOOL_VERSION"
promtool="$dir/promtool"
if [ -x "$promtool" ]; then
  step_cached "promtool $PROMTOOL_VERSION"
else
  mkdir -p "$dir"
  # Outside any module so the project's go.mod is neither read nor changed.
  step "Building promtool $PROMTOOL_VERSION with go install (first run only, about 7 min on 2 cores)" \
    bash -c 'cd / && GOFLAGS=-mod=mod CGO_ENABLED=0 GOBIN="$1" go install -trimpath "github.com/prometheus/prometheus/cmd/promtool@$2"' \
    _ "$dir" "$PROMTOOL_VERSION"
fi
echo "$promtool"
