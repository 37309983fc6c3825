#!/usr/bin/env bash
# Prints the path of a helm binary, installing it first when there is none:
# helm on PATH is used as it is; otherwise helm is built with `go install`
# into GOBIN (or GOPATH/bin), so the build happens once per machine, not
# once per clone. Progress goes to stderr; stdout is only the path.
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v4.3.1}"
log() { echo "helm.sh: $*" >&2; }

if command -v helm >/dev/null 2>&1; then
  command -v helm
  exit 0
fi

gobin="$(go env GOBIN)"
if [ -z "$gobin" ]; then
  gobin="$(go env GOPATH | cut -d: -f1)/bin"
fi
helm="$gobin/helm"
if [ ! -x "$helm" ]; then
  log "installing helm $HELM_VERSION with go install (one time per machine)"
  # Outside any module so the project's go.mod is neither read nor changed.
  (cd / && GOFLAGS=-mod=mod CGO_ENABLED=0 go install "helm.sh/helm/v4/cmd/helm@$HELM_VERSION" >&2)
fi
echo "$helm"
