package e2e

import (
	"context"
	"slices"
	"sync"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/netguard-io/netguard/policies/podpolicy"
	"github.com/netguard-io/netguard/test/node"
)

// testReinstall: helm uninstall while pods are created at 20/s fails no
// pod creation and half-patches none, and leaves what checkUninstalled
// allows; netguard installed again, with self-managed TLS and then with
// cert-manager over the Secrets left behind, serves at once.
func testReinstall(t *testing.T) {
	ctx := context.Background()
	uninstall := func(ns string) {
		t.Helper()
		// The stream lasts until netguard's pods are gone: they serve on
		// for a while after the webhook configurations went.
		pods := duringPodStream(t, ns, func() error {
			if err := cluster.HelmUninstall(ctx); err != nil {
				return err
			}
			return cluster.WaitPodsGone(ctx, node.NetguardNamespace, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=netguard"})
		})
		mutated := 0
		for _, p := range pods {
			switch st := p.Annotations[podpolicy.AnnotationStatus]; {
			case st != "" && wholePatch(p):
				mutated++
			case st != "":
				t.Errorf("pod %s created during helm uninstall is half-patched: status %q, dnsConfig %+v", p.Name, st, p.Spec.DNSConfig)
			}
		}
		checkUninstalled(t)
		t.Logf("helm uninstall while %d pods were created: none failed, %d mutated, the rest untouched after the webhooks went", len(pods), mutated)
	}
	install := func(extra ...string) {
		t.Helper()
		if err := cluster.Helm(ctx, "install", append(extra, "--wait", "--timeout", "180s")...); err != nil {
			t.Fatal(err)
		}
		if err := cluster.WaitNetguard(ctx); err != nil {
			t.Fatal(err)
		}
	}

	uninstall("reinstall-1")
	install("--set", "certManager.enabled=false")
	t.Log("installed again with self-managed TLS: pods are mutated")
	uninstall("reinstall-2")
	install()
	t.Log("installed again with the chart's defaults over the Secrets left behind: pods are mutated")
}

// checkUninstalled checks what helm uninstall left: no webhook
// configuration, netguard's or another, calls netguard's Service; none of
// the chart's cert-manager objects is left; the Secrets left are those
// docs/install.md ("Uninstall") says stay.
func checkUninstalled(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	if calling := webhooksCallingNetguard(t); len(calling) > 0 {
		t.Errorf("after helm uninstall, webhooks still call netguard's Service: %v", calling)
	}
	for _, resource := range []string{"certificates", "issuers"} {
		gvr := node.CertificateGVR
		gvr.Resource = resource
		list, err := cluster.Dynamic.Resource(gvr).Namespace(node.NetguardNamespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range list.Items {
			t.Errorf("%s %s/%s is left after helm uninstall", resource, node.NetguardNamespace, o.GetName())
		}
	}
	// Left on purpose (docs/install.md, "Uninstall"): the Secrets with
	// the certificates, which the chart does not own: those cert-manager
	// wrote, and netguard's own CA once self-managed TLS ran (the TLS
	// modes part).
	secrets, err := cluster.Client.CoreV1().Secrets(node.NetguardNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, s := range secrets.Items {
		left = append(left, s.Name)
	}
	documented := []string{node.NetguardRelease + "-tls", node.NetguardRelease + "-root", node.NetguardRelease + "-ca"}
	for _, name := range left {
		if !slices.Contains(documented, name) {
			t.Errorf("Secret %s/%s is left after helm uninstall; docs/install.md names only %v", node.NetguardNamespace, name, documented)
		}
	}
	for _, name := range documented[:2] {
		if !slices.Contains(left, name) {
			t.Errorf("Secret %s/%s, which cert-manager wrote, is gone after helm uninstall", node.NetguardNamespace, name)
		}
	}
	t.Logf("left after helm uninstall, as documented: Secrets %v", left)
}

// duringPodStream creates pods at podsPerSecond in a new opted-in
// namespace while fn runs, fails the test on any creation error, and
// returns the pods.
func duringPodStream(t *testing.T, ns string, fn func() error) []corev1.Pod {
	t.Helper()
	ctx := context.Background()
	ns = newNamespace(t, ns, optedIn)
	var l load
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); createPods(ctx, loadClient(t), ns, stop, &l) }()
	err := fn()
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if len(l.podErrors) > 0 {
		t.Errorf("%d pod creations failed, the first: %s", len(l.podErrors), l.podErrors[0])
	}
	pods, err := cluster.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != l.created {
		t.Errorf("%d pods exist, %d were created", len(pods.Items), l.created)
	}
	return pods.Items
}

// webhooksCallingNetguard names the webhooks, of any configuration, that
// call netguard's Service.
func webhooksCallingNetguard(t *testing.T) []string {
	t.Helper()
	ctx := context.Background()
	ours := func(s *admissionregistrationv1.ServiceReference) bool {
		return s != nil && s.Namespace == node.NetguardNamespace && s.Name == node.NetguardRelease
	}
	var out []string
	mutating, err := cluster.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range mutating.Items {
		for _, w := range c.Webhooks {
			if ours(w.ClientConfig.Service) {
				out = append(out, c.Name+"/"+w.Name)
			}
		}
	}
	validating, err := cluster.Client.AdmissionregistrationV1().ValidatingWebhookConfigurations().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range validating.Items {
		for _, w := range c.Webhooks {
			if ours(w.ClientConfig.Service) {
				out = append(out, c.Name+"/"+w.Name)
			}
		}
	}
	return out
}
