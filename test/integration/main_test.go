// Package integration tests netguard against a real kube-apiserver and etcd:
// the API server calls a running `netguard serve` through the webhook
// configurations the chart installs, and the tests assert on the objects
// the API server stores. One control plane serves the whole package.
package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/netguard-io/netguard/internal/testlog"
	"github.com/netguard-io/netguard/test/framework"
)

// clusterDNSIP is the kube-dns Service IP; netguard discovers it (the
// default settings leave dns.search.clusterDNS empty).
const clusterDNSIP = framework.ClusterDNSIP

var (
	cp          *framework.ControlPlane
	netguardBin string
	server      *framework.Server
	k8s         client.Client
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	testlog.Discard()
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		if os.Getenv("NETGUARD_REQUIRE_ENVTEST") != "" {
			fmt.Fprintln(os.Stderr, "integration tests need a control plane:", framework.AssetsHint)
			return 1
		}
		fmt.Println("skipping integration tests: KUBEBUILDER_ASSETS is not set;", framework.AssetsHint)
		return 0
	}
	ctx := context.Background()
	var err error
	if cp, err = framework.StartControlPlane(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer cp.Stop()
	k8s = cp.Client
	dir, err := os.MkdirTemp("", "netguard-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if netguardBin, err = framework.BuildNetguard(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := setupCluster(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "setting up the cluster:", err)
		return 1
	}
	if server, err = cp.StartServer(ctx, netguardBin, ""); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := cp.InstallPodWebhook(ctx, server, framework.OptIn); err != nil {
		fmt.Fprintln(os.Stderr, "installing the pod webhook:", err)
		_ = server.Stop()
		return 1
	}
	code := m.Run()
	if err := server.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping netguard serve:", err)
		code = 1
	}
	if code != 0 {
		fmt.Fprintf(os.Stderr, "netguard serve log (%s):\n%s\n", server.LogFile, tail(server.Log(), 80))
	}
	return code
}

// setupCluster creates what a cluster has before netguard: the kube-dns
// Service and netguard's namespace.
func setupCluster(ctx context.Context) error {
	if err := cp.CreateClusterDNS(ctx); err != nil {
		return err
	}
	_, err := cp.CreateNamespace(ctx, "netguard", nil)
	return err
}

// restartServer replaces the running server with one using configFile; the
// webhook configurations are pointed at the new one.
func restartServer(t *testing.T, configFile string, extraArgs ...string) {
	t.Helper()
	if err := server.Stop(); err != nil {
		t.Fatalf("stopping netguard serve: %v", err)
	}
	s, err := cp.StartServer(context.Background(), netguardBin, configFile, extraArgs...)
	if err != nil {
		t.Fatal(err)
	}
	server = s
}

// writeConfig writes a settings file for netguard serve.
func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// newNamespace creates a namespace with a unique name and the given labels.
func newNamespace(t *testing.T, prefix string, labels map[string]string) string {
	t.Helper()
	name := prefix + "-" + rand.String(5)
	if _, err := cp.CreateNamespace(context.Background(), name, labels); err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
	return name
}

// optedIn are the labels of a namespace that opted in.
var optedIn = map[string]string{"netguard.io/inject": "enabled"}

// labelNamespace replaces the labels of namespace ns.
func labelNamespace(t *testing.T, ns string, labels map[string]string) {
	t.Helper()
	nsObj := &corev1.Namespace{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Name: ns}, nsObj); err != nil {
		t.Fatal(err)
	}
	nsObj.Labels = labels
	if err := k8s.Update(context.Background(), nsObj); err != nil {
		t.Fatalf("labelling namespace %s: %v", ns, err)
	}
}

// createPod creates pod through the API server and returns the stored pod.
func createPod(t *testing.T, pod *corev1.Pod, opts ...client.CreateOption) *corev1.Pod {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := k8s.Create(ctx, pod, opts...); err != nil {
		t.Fatalf("creating pod %s/%s: %v", pod.Namespace, pod.Name, err)
	}
	stored := &corev1.Pod{}
	if len(opts) > 0 {
		return pod // dry-run: nothing is stored
	}
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(pod), stored); err != nil {
		t.Fatalf("reading pod back: %v", err)
	}
	return stored
}

// plainPod is a pod with one ordinary container.
func plainPod(ns, name, image string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "app", Image: image}},
		},
	}
}

// waitFor polls cond until it holds, failing t after limit.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func tail(s string, lines int) string {
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

// TestControlPlaneVersion: the suite runs on the Kubernetes version its
// assets were built for (make test runs it on the newest and on the oldest
// netguard supports).
func TestControlPlaneVersion(t *testing.T) {
	framework.CheckServerVersion(t, cp.Config)
}
