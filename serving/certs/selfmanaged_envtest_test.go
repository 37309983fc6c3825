package certs

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/netguard-io/netguard/test/ports"
)

// TestSelfManagedExportsItsCertificate runs self-managed TLS against a real
// kube-apiserver (the CA lives in a Secret there) and checks that the
// exported gauges are the validity of the certificate it serves.
func TestSelfManagedExportsItsCertificate(t *testing.T) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		if os.Getenv("NETGUARD_REQUIRE_ENVTEST") != "" {
			t.Fatal("KUBEBUILDER_ASSETS is not set; set KUBEBUILDER_ASSETS=$(hack/envtest-assets.sh)")
		}
		t.Skip("KUBEBUILDER_ASSETS is not set (see hack/envtest-assets.sh)")
	}
	t.Cleanup(func() { ExportServingCertificate(nil) })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env := &envtest.Environment{}
	restCfg, releasePorts, err := ports.StartEnvtest(env)
	if err != nil {
		t.Fatalf("starting the control plane: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop(); releasePorts() })
	cs, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "netguard"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	const leafDuration = 2 * time.Hour
	sm, err := New(restCfg, Options{
		Namespace:    "netguard",
		SecretName:   "netguard-ca",
		DNSNames:     ServiceDNSNames("netguard", "netguard", "cluster.local"),
		CADuration:   24 * time.Hour,
		LeafDuration: leafDuration,
	}, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- sm.Start(runCtx) }()
	t.Cleanup(func() { stop(); <-done })

	for !sm.source.Healthy() {
		select {
		case <-ctx.Done():
			t.Fatal("no serving certificate within 2 minutes")
		case <-time.After(50 * time.Millisecond):
		}
	}
	cert, err := sm.GetCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := leafOf(cert)
	if err != nil {
		t.Fatal(err)
	}
	nb, na := servingGauges(t)
	if na != float64(leaf.NotAfter.Unix()) || nb != float64(leaf.NotBefore.Unix()) {
		t.Errorf("gauges notBefore %v, notAfter %v; the served certificate's are %d and %d", nb, na, leaf.NotBefore.Unix(), leaf.NotAfter.Unix())
	}
	if life := leaf.NotAfter.Sub(leaf.NotBefore); life < leafDuration || life > leafDuration+10*time.Minute {
		t.Errorf("served certificate lives %s, want the configured %s", life, leafDuration)
	}
}
