#!/usr/bin/env bash
# Prints a directory holding e2e.test, Kubernetes' end-to-end test binary,
# and agnhost, the program of its test images, both built from the
# k8s.io/kubernetes module at the node's version (hack/k8s-build.sh) and
# cached in the user's cache directory: once per machine (about 10-15
# minutes on 2 cores, most of it e2e.test; 3 minutes after the node's
# build). Installs Debian's busybox-static, the shell of the specs' probe
# images. Progress goes to stderr, a line per step (lib/step.sh); stdout
# is only the directory.
set -euo pipefail
cd "$(dirname "$0")"
. lib/step.sh

if ! dpkg -s busybox-static >/dev/null 2>&1; then
	step "Installing busybox-static from Debian (first run only, about 20 s)" apt_install busybox-static
fi

K8S_VERSION="${K8S_VERSION:-v1.37.2}"
dir="${XDG_CACHE_HOME:-$HOME/.cache}/netguard/conformance/$K8S_VERSION"
if [ -x "$dir/e2e.test" ] && [ -x "$dir/agnhost" ]; then
	step_cached "e2e.test and agnhost $K8S_VERSION"
else
	step "Building e2e.test and agnhost $K8S_VERSION from the k8s.io/kubernetes module (first run only, 3-15 min: less after the node's build)" \
		./k8s-build.sh "$K8S_VERSION" "$dir" test/images/agnhost test/e2e.test
fi
echo "$dir"
