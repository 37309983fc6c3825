#!/usr/bin/env bash
# Prints a directory holding e2e.test, Kubernetes' end-to-end test binary,
# and agnhost, the program of its test images, both built from the
# k8s.io/kubernetes module at the node's version (hack/k8s-build.sh) and
# cached in the user's cache directory: once per machine (about 10-15
# minutes on 2 cores, most of it e2e.test). Installs Debian's
# busybox-static, the shell of the specs' probe images. Progress goes to
# stderr.
set -euo pipefail
cd "$(dirname "$0")"

if ! dpkg -s busybox-static >/dev/null 2>&1; then
	echo "conformance-assets: installing busybox-static from Debian" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >&2
	apt-get install -y -qq --no-install-recommends busybox-static >&2
fi

K8S_VERSION="${K8S_VERSION:-v1.37.2}"
dir="${XDG_CACHE_HOME:-$HOME/.cache}/netguard/conformance/$K8S_VERSION"
if [ ! -x "$dir/e2e.test" ] || [ ! -x "$dir/agnhost" ]; then
	echo "conformance-assets: building e2e.test and agnhost $K8S_VERSION (one time per machine)" >&2
	./k8s-build.sh "$K8S_VERSION" "$dir" test/images/agnhost test/e2e.test
fi
echo "$dir"
