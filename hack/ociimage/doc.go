// Package ociimage builds container images from files on this machine,
// without a container engine or a registry (go-containerregistry), and
// writes them as an archive that containerd (`ctr images import`), docker
// and podman (`load`) read: an OCI image layout with a docker-style
// manifest.json beside it, as `docker save` writes since Docker 25.
//
// Tooling: hack/image and test/node use it, none of netguard's layered
// packages. It imports no netguard package.
package ociimage
