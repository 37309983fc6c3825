// Package e2e runs netguard on a real single-node cluster (package
// test/node): netguard's image in pods on a kubelet, installed with helm,
// called by the API server through its own Service, and the outages it
// exists for replayed with real pods, CoreDNS and kube-proxy.
//
// `make e2e-node` runs it (as root); `make test` runs it after the other
// packages, on its own, since the node needs the machine's ports and
// iptables to itself.
package e2e

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
	"github.com/netguard-io/netguard/test/node"
)

// cluster is the node every test runs on.
var cluster *node.Cluster

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	testlog.Discard()
	switch {
	case os.Getenv("NETGUARD_E2E_NODE") == "":
		fmt.Println("skipping the node tests: run them with `make e2e-node` (make test runs them after the other packages)")
		return 0
	case os.Geteuid() != 0:
		fmt.Println("skipping the node tests: they need root (containers, interfaces, iptables)")
		return 0
	}
	opts := node.Options{
		Assets:   os.Getenv("NETGUARD_NODE_ASSETS"),
		Helm:     os.Getenv("HELM"),
		Netguard: os.Getenv("NETGUARD_BIN"),
		Version:  os.Getenv("NETGUARD_VERSION"),
		Progress: func(s string) {
			fmt.Printf("node: starting %s (%s)\n", s, time.Since(start).Round(100*time.Millisecond))
		},
	}
	if opts.Assets == "" || opts.Helm == "" {
		fmt.Fprintln(os.Stderr, "the node tests need NETGUARD_NODE_ASSETS (hack/node-assets.sh) and HELM (hack/helm.sh); run `make e2e-node`")
		return 1
	}
	if opts.Netguard == "" {
		dir, err := os.MkdirTemp("", "netguard-e2e-node-")
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
	var err error
	if cluster, err = node.Up(ctx, opts); err != nil {
		fmt.Fprintln(os.Stderr, "starting the node:", err)
		return 1
	}
	fmt.Printf("node: up in %s\n", time.Since(start).Round(100*time.Millisecond))
	code := m.Run()
	if code != 0 {
		for _, part := range []string{"kubelet", "kube-apiserver", "containerd"} {
			fmt.Printf("--- %s log (tail):\n%s\n", part, node.LogTail(part, 25))
		}
	}
	down := time.Now()
	if err := node.Down(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	fmt.Printf("node: down in %s; %s in all\n", time.Since(down).Round(100*time.Millisecond), time.Since(start).Round(time.Second))
	return code
}

var start = time.Now()
