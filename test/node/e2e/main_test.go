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
	"os"
	"testing"

	"github.com/netguard-io/netguard/test/node"
)

// cluster is the node every test runs on.
var cluster *node.Cluster

func TestMain(m *testing.M) {
	os.Exit(node.TestMain(m, "NETGUARD_E2E_NODE", "make e2e-node", func(c *node.Cluster) { cluster = c }))
}
