// Package alerts tests the monitoring the Helm chart ships, on what the chart
// renders: the PrometheusRule's rules pass `promtool check rules`; every
// alert has `promtool test rules` cases (testdata/*.test.yaml) where it
// fires and where it stays silent, and a runbook in docs/alerts.md; every
// metric the rules and the Grafana dashboard use is one netguard or
// controller-runtime registers (or an explicit, documented exception); the
// dashboard is well-formed.
//
// helm comes from $HELM, PATH or hack/helm.sh, promtool from $PROMTOOL,
// PATH or hack/promtool.sh (both build once per machine). Without them the
// tests are skipped, unless NETGUARD_REQUIRE_ENVTEST is set, as `make test`
// does: then a missing tool fails the run.
package alerts

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

const (
	chartDir = "../../charts/netguard"
	// The release the promtool tests' series and expected labels assume.
	releaseName      = "netguard"
	releaseNamespace = "netguard"
)

// monitoringValues turn on everything the chart has for monitoring.
var monitoringValues = []string{
	"metrics.serviceMonitor.enabled=true",
	"metrics.podMonitor.enabled=true",
	"metrics.prometheusRule.enabled=true",
	"metrics.dashboard.enabled=true",
}

var (
	helmBin, promtoolBin string
	// helmSkip and promtoolSkip say why the tests that need the tool skip.
	helmSkip, promtoolSkip string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	require := os.Getenv("NETGUARD_REQUIRE_ENVTEST") != ""
	var err error
	if helmBin, err = findTool("HELM", "helm", "../../hack/helm.sh"); err != nil {
		if require {
			fmt.Fprintln(os.Stderr, "the alert tests need helm:", err)
			return 1
		}
		helmSkip = "no helm: " + err.Error()
	}
	if promtoolBin, err = findTool("PROMTOOL", "promtool", "../../hack/promtool.sh"); err != nil {
		if require {
			fmt.Fprintln(os.Stderr, "the alert tests need promtool (hack/promtool.sh builds it; make test passes it as $PROMTOOL):", err)
			return 1
		}
		promtoolSkip = "no promtool: " + err.Error()
	}
	return m.Run()
}

// findTool returns $env, name on PATH, or what script installs.
func findTool(env, name, script string) (string, error) {
	if p := os.Getenv(env); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("$%s: %w", env, err)
		}
		return p, nil
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	abs, err := filepath.Abs(script)
	if err != nil {
		return "", err
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(abs)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s: %w\n%s", abs, err, stderr.String())
	}
	return strings.TrimSpace(stdout.String()), nil
}

func needHelm(t *testing.T) {
	t.Helper()
	if helmBin == "" {
		t.Skip(helmSkip)
	}
}

func needPromtool(t *testing.T) {
	t.Helper()
	needHelm(t)
	if promtoolBin == "" {
		t.Skip(promtoolSkip)
	}
}

// render runs helm template on the chart with monitoringValues and extra
// --set values, and returns the objects.
func render(t *testing.T, extra ...string) []*unstructured.Unstructured {
	t.Helper()
	needHelm(t)
	args := []string{"template", releaseName, chartDir, "--namespace", releaseNamespace}
	for _, v := range append(append([]string{}, monitoringValues...), extra...) {
		args = append(args, "--set", v)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(helmBin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	tmp := t.TempDir()
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(tmp, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(tmp, "config"),
		"HELM_DATA_HOME="+filepath.Join(tmp, "data"),
	)
	if err := cmd.Run(); err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(&stdout, 4096)
	var objs []*unstructured.Unstructured
	for {
		var m map[string]any
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			t.Fatalf("decoding the rendered chart: %v", err)
		}
		if len(m) > 0 {
			objs = append(objs, &unstructured.Unstructured{Object: m})
		}
	}
}

// find returns the one rendered object of kind, failing t otherwise.
func find(t *testing.T, objs []*unstructured.Unstructured, kind string) *unstructured.Unstructured {
	t.Helper()
	var found []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		t.Fatalf("the chart renders %d %s objects, want 1", len(found), kind)
	}
	return found[0]
}
