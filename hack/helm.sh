#!/usr/bin/env bash
# Prints the path of a helm binary, installing it first when there is none:
# helm on PATH is used as it is; otherwise helm is built with `go install`
# into GOBIN (or GOPATH/bin), so the build (about 2 minutes on 2 cores)
# happens once per machine, not once per clone. Progress goes to stderr, a
# line per step (lib/step.sh); stdout is only the path.
set -euo pipefail
. "$(dirname "$0")/lib/step.sh"

HELM_VERSION="${HELM_VERSION:-v4.3.1}"

if command -v helm >/dev/null 2>&1; then
  command -v helm
  exit 0
fi

gobin="$(go env GOBIN)"
if [ -z "$gobin" ]; then
  gobin="$(go env GOPATH | cut -d: -f1)/bin"
fi
helm="$gobin/helm"
if [ -x "$helm" ]; then
  step_cached "helm ($helm)"
else
  # Outside any module so the project's go.mod is neither read nor changed.
  step "Building helm $HELM_VERSION with go install (first run only, about 2 min)" \
    bash -c 'cd / && GOFLAGS=-mod=mod CGO_ENABLED=0 go install "helm.sh/helm/v4/cmd/helm@$1"' _ "$HELM_VERSION"
fi
echo "$helm"
