package node

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/netguard-io/netguard/internal/testlog"
)

// TestMain runs a test package on a node: it starts the node from the
// environment the make targets set (NETGUARD_NODE_ASSETS,
// NETGUARD_CERT_MANAGER, HELM, and
// NETGUARD_BIN and NETGUARD_VERSION, else netguard is built here), hands it
// to setCluster, runs the tests, prints the components' log tails on
// failure, and takes the node down. Unless the environment variable gate is
// set, or when not root, it skips the package, saying so; how names the
// make target that runs it.
func TestMain(m *testing.M, gate, how string, setCluster func(*Cluster)) int {
	start := time.Now()
	testlog.Discard()
	switch {
	case os.Getenv(gate) == "":
		fmt.Printf("skipping the tests on a node: run them with `%s`\n", how)
		return 0
	case os.Geteuid() != 0:
		fmt.Println("skipping the tests on a node: they need root (containers, interfaces, iptables)")
		return 0
	}
	opts := Options{
		Assets:      os.Getenv("NETGUARD_NODE_ASSETS"),
		CertManager: os.Getenv("NETGUARD_CERT_MANAGER"),
		Helm:        os.Getenv("HELM"),
		Netguard:    os.Getenv("NETGUARD_BIN"),
		Version:     os.Getenv("NETGUARD_VERSION"),
		// A run that is killed leaves its node to the next run.
		OwnedByCaller: true,
		Progress: func(s string) {
			fmt.Printf("node: starting %s (%s)\n", s, time.Since(start).Round(100*time.Millisecond))
		},
	}
	if opts.Assets == "" || opts.CertManager == "" || opts.Helm == "" {
		fmt.Fprintf(os.Stderr, "the tests on a node need NETGUARD_NODE_ASSETS (hack/node-assets.sh), NETGUARD_CERT_MANAGER (hack/cert-manager.sh) and HELM (hack/helm.sh); run `%s`\n", how)
		return 1
	}
	if opts.Netguard == "" {
		dir, err := os.MkdirTemp("", "netguard-node-test-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		opts.Netguard, opts.Version = filepath.Join(dir, "netguard"), "e2e"
		build := exec.Command("go", "build", "-trimpath", "-o", opts.Netguard, "github.com/netguard-io/netguard/cmd/netguard")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building netguard: %v\n%s", err, out)
			return 1
		}
	}
	if opts.Version == "" {
		opts.Version = "e2e"
	}
	opts.Version = strings.ReplaceAll(opts.Version, "+", "-")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cluster, err := Up(ctx, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the node:", err)
		return 1
	}
	fmt.Printf("node: up in %s\n", time.Since(start).Round(100*time.Millisecond))
	setCluster(cluster)
	code := m.Run()
	if code != 0 {
		for _, part := range []string{"kubelet", "kube-apiserver", "containerd", "cert-manager-controller", "cert-manager-cainjector"} {
			fmt.Printf("--- %s log (tail):\n%s\n", part, LogTail(part, 25))
		}
	}
	down := time.Now()
	if err := Down(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	fmt.Printf("node: down in %s; %s in all\n", time.Since(down).Round(100*time.Millisecond), time.Since(start).Round(time.Second))
	return code
}

// ImportImages loads image archives (ociimage.WriteArchive) into the
// node's containerd, for pods that never pull.
func (c *Cluster) ImportImages(archives ...string) error {
	for _, a := range archives {
		if err := run("ctr", "--address", ContainerdSocket, "-n", "k8s.io", "images", "import", a); err != nil {
			return err
		}
	}
	return nil
}
