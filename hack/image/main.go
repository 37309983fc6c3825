// Command image builds netguard's container image without a container
// engine (see hack/ociimage) and writes it as an OCI archive that
// `ctr images import`, `docker load` and `podman load` read. `make image`
// runs it on bin/netguard. The Dockerfile builds the same image with an
// engine.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/netguard-io/netguard/hack/ociimage"
)

func main() {
	binary := flag.String("binary", "bin/netguard", "static netguard binary to put in the image")
	version := flag.String("version", "devel", "version for the org.opencontainers.image.version label")
	source := flag.String("source", "https://github.com/netguard-io/netguard", "repository for the org.opencontainers.image.source label")
	ref := flag.String("ref", "ghcr.io/netguard-io/netguard:devel", "name the archive gives the image")
	out := flag.String("o", "bin/netguard-image.tar", "archive to write")
	flag.Parse()
	img, err := ociimage.Netguard(*binary, *version, *source)
	if err == nil {
		err = ociimage.WriteArchive(*out, img, *ref)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
	digest, _ := img.Digest()
	fmt.Printf("%s: %s (%s)\n", *out, *ref, digest)
}
