package ociimage

import (
	"fmt"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// NonRoot is the user netguard's image runs as (distroless "nonroot"); the
// chart and the injected sidecar run as it too.
const NonRoot = 65532

// Netguard is netguard's image, as the Dockerfile builds it on distroless
// static:nonroot: the static binary at /netguard as the entrypoint, user
// 65532:65532, the passwd and group entries and the writable /tmp that
// distroless provides, and the OCI labels with version and source.
func Netguard(binary, version, source string) (v1.Image, error) {
	bin, err := os.ReadFile(binary)
	if err != nil {
		return nil, err
	}
	files := append([]File{
		{Path: "/netguard", Data: bin, Mode: 0o755},
		{Path: "/tmp", Dir: true, Mode: 0o1777},
		{Path: "/home/nonroot", Dir: true, Mode: 0o700, UID: NonRoot, GID: NonRoot},
	}, Users()...)
	return Build(files, Config{
		Entrypoint: []string{"/netguard"},
		User:       fmt.Sprintf("%d:%d", NonRoot, NonRoot),
		Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin"},
		Labels: map[string]string{
			"org.opencontainers.image.title":       "netguard",
			"org.opencontainers.image.description": "Kubernetes admission webhook that removes outages caused by cluster networking defaults",
			"org.opencontainers.image.version":     version,
			"org.opencontainers.image.source":      source,
			"org.opencontainers.image.licenses":    "Apache-2.0",
		},
	})
}

// Users are /etc/passwd and /etc/group with root and nonroot (65532), as
// distroless has them.
func Users() []File {
	return []File{
		{Path: "/etc/passwd", Mode: 0o644, Data: []byte(fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", NonRoot, NonRoot))},
		{Path: "/etc/group", Mode: 0o644, Data: []byte(fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", NonRoot))},
	}
}
