#!/usr/bin/env bash
# Runs every Go fuzz target in the module for a bounded time each.
# Usage: hack/fuzz.sh [DURATION]   (default 10s per target)
#
# A run that fails without a failing input, only because the fuzzing engine
# could not stop a worker in time ("context deadline exceeded" on a loaded
# machine), is run once more; any real finding fails at once.
set -euo pipefail
fuzztime="${1:-10s}"
log=$(mktemp)
trap 'rm -f "$log"' EXIT

fuzz() { go test -run '^$' -fuzz "^$2\$" -fuzztime "$fuzztime" "$1" 2>&1 | tee "$log"; return "${PIPESTATUS[0]}"; }

for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //'); do
    echo "fuzz: $pkg $target ($fuzztime)"
    if ! fuzz "$pkg" "$target"; then
      if grep -q 'Failing input written' "$log" || ! grep -q 'context deadline exceeded' "$log"; then
        exit 1
      fi
      echo "fuzz: $target: the engine timed out stopping a worker; running it once more"
      fuzz "$pkg" "$target"
    fi
  done
done
