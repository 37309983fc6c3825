package framework

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
)

// assetsVersion matches the directories hack/envtest-assets.sh and
// hack/node-assets.sh build Kubernetes into: the version.
var assetsVersion = regexp.MustCompile(`^v\d+\.\d+\.\d+$`)

// AssetsVersion returns the Kubernetes version of the assets directory dir
// (KUBEBUILDER_ASSETS, NETGUARD_NODE_ASSETS), or "" for a directory of
// another name.
func AssetsVersion(dir string) string {
	if v := filepath.Base(dir); assetsVersion.MatchString(v) {
		return v
	}
	return ""
}

// CheckServerVersion logs the version of the API server cfg points at and
// fails t when KUBEBUILDER_ASSETS is a directory hack/envtest-assets.sh
// made for another version: make test runs the API server suites on the
// newest Kubernetes and on the oldest netguard supports, and each says
// which it ran on.
func CheckServerVersion(t testing.TB, cfg *rest.Config) {
	t.Helper()
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	v, err := dc.ServerVersion()
	if err != nil {
		t.Fatalf("reading the API server's version: %v", err)
	}
	t.Logf("kube-apiserver %s", v.GitVersion)
	if want := AssetsVersion(os.Getenv("KUBEBUILDER_ASSETS")); want != "" && v.GitVersion != want {
		t.Fatalf("kube-apiserver %s, want %s (KUBEBUILDER_ASSETS)", v.GitVersion, want)
	}
}
