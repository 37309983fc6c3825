// Package chart tests the Helm chart in charts/netguard: helm lint and helm
// template over a matrix of values, a golden file of the default render,
// every rendered object created on a real kube-apiserver (with
// cert-manager's and prometheus-operator's CRDs), a helm install/upgrade/uninstall against it, and
// TLS both ways: netguard's self-managed CA and caBundle, and a serving
// certificate rotated in the mounted Secret directory.
//
// helm comes from $HELM, PATH, or hack/helm.sh (which builds it once per
// machine). The API server tests need KUBEBUILDER_ASSETS; without it they
// are skipped unless NETGUARD_REQUIRE_ENVTEST is set.
package chart

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/netguard-io/netguard/internal/testlog"
	"github.com/netguard-io/netguard/test/framework"
)

// chartDir is the chart under test, relative to this package.
const chartDir = "../../charts/netguard"

var (
	helmBin     string
	cp          *framework.ControlPlane // nil without KUBEBUILDER_ASSETS
	netguardBin string
	// cpSkip says why the API server tests are skipped (cp == nil).
	cpSkip string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	testlog.Discard()
	require := os.Getenv("NETGUARD_REQUIRE_ENVTEST") != ""
	var err error
	if helmBin, err = findHelm(); err != nil {
		if require {
			fmt.Fprintln(os.Stderr, "chart tests need helm:", err)
			return 1
		}
		fmt.Println("skipping chart tests: no helm:", err)
		return 0
	}

	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		if require {
			fmt.Fprintln(os.Stderr, "chart tests need a control plane:", framework.AssetsHint)
			return 1
		}
		cpSkip = "KUBEBUILDER_ASSETS is not set; " + framework.AssetsHint
		fmt.Println("skipping the API server tests:", cpSkip)
		return m.Run()
	}
	if cp, err = framework.StartControlPlane(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer cp.Stop()
	if err := installCertManagerCRDs(cp); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := installOpenReportsCRDs(cp); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := installPrometheusOperatorCRDs(cp); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// netguard's namespace: its leader-election Lease and CA Secret live there.
	if _, err := cp.CreateNamespace(context.Background(), serverNamespace, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := cp.CreateClusterDNS(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "setting up the cluster:", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "netguard-chart-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if netguardBin, err = framework.BuildNetguard(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// needControlPlane skips t when there is no API server.
func needControlPlane(t *testing.T) {
	t.Helper()
	if cp == nil {
		t.Skip(cpSkip)
	}
}

// findHelm returns $HELM, helm on PATH, or what hack/helm.sh installs.
func findHelm() (string, error) {
	if h := os.Getenv("HELM"); h != "" {
		return h, nil
	}
	if h, err := exec.LookPath("helm"); err == nil {
		return h, nil
	}
	script, err := filepath.Abs("../../hack/helm.sh")
	if err != nil {
		return "", err
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(script)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s: %w\n%s", script, err, stderr.String())
	}
	return strings.TrimSpace(stdout.String()), nil
}

// TestControlPlaneVersion: the API server tests run on the Kubernetes
// version their assets were built for (make test runs them on the newest
// and on the oldest netguard supports).
func TestControlPlaneVersion(t *testing.T) {
	needControlPlane(t)
	framework.CheckServerVersion(t, cp.Config)
}
