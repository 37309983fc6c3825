package chart

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/netguard-io/netguard/test/framework"
)

// installCertManagerCRDs installs cert-manager's CRDs from the cert-manager
// Go module netguard builds with, so the chart's Issuers and Certificates
// are checked against the real schemas.
func installCertManagerCRDs(cp *framework.ControlPlane) error {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/cert-manager/cert-manager").Output()
	if err != nil {
		return fmt.Errorf("locating the cert-manager module: %w", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "deploy", "crds")
	if _, err := os.Stat(dir); err != nil {
		return fmt.Errorf("cert-manager CRDs: %w", err)
	}
	if _, err := envtest.InstallCRDs(cp.Config, envtest.CRDInstallOptions{Paths: []string{dir}, ErrorIfPathMissing: true}); err != nil {
		return fmt.Errorf("installing cert-manager CRDs from %s: %w", dir, err)
	}
	return nil
}

// installOpenReportsCRDs installs the OpenReports CRDs from the module
// netguard builds with, for the Reports netguard writes.
func installOpenReportsCRDs(cp *framework.ControlPlane) error {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/openreports/reports-api").Output()
	if err != nil {
		return fmt.Errorf("locating the OpenReports module: %w", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "config", "crd")
	if _, err := envtest.InstallCRDs(cp.Config, envtest.CRDInstallOptions{Paths: []string{dir}, ErrorIfPathMissing: true}); err != nil {
		return fmt.Errorf("installing the OpenReports CRDs from %s: %w", dir, err)
	}
	return nil
}

// restrictedNamespace creates namespace name with Pod Security "restricted"
// enforced, as a careful cluster would run netguard.
func restrictedNamespace(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	_, err := cp.CreateNamespace(ctx, name, map[string]string{
		"pod-security.kubernetes.io/enforce":         "restricted",
		"pod-security.kubernetes.io/enforce-version": "latest",
	})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
}

// applyObjects creates every object on the API server, in order, and
// deletes them when t ends, so that a test runs again on the same API
// server (go test -count). Namespaces stay: without a namespace controller
// a deleted namespace never goes away.
func applyObjects(t *testing.T, ctx context.Context, objs objects) {
	t.Helper()
	for _, obj := range objs {
		obj := obj.DeepCopy()
		if err := cp.Client.Create(ctx, obj); err != nil {
			t.Fatalf("the API server rejects %s %s/%s: %v", obj.GetKind(), obj.GetNamespace(), obj.GetName(), err)
		}
		deleteAtEnd(t, obj)
	}
}

// deleteAtEnd deletes obj when t ends.
func deleteAtEnd(t *testing.T, obj client.Object) {
	t.Cleanup(func() {
		if err := cp.Client.Delete(context.Background(), obj); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("deleting %T %s/%s: %v", obj, obj.GetNamespace(), obj.GetName(), err)
		}
	})
}

// TestChartObjectsAreAccepted creates every rendered object of every case
// on a real API server (cert-manager's and prometheus-operator's CRDs
// installed, Pod Security "restricted" enforced on the release namespace),
// reads each back, and has the API server's Pod Security admission judge
// netguard's pod.
func TestChartObjectsAreAccepted(t *testing.T) {
	needControlPlane(t)
	i := 0
	for name, tc := range valueCases {
		i++
		rel := release{name: fmt.Sprintf("ng%d", i), namespace: fmt.Sprintf("netguard-apply-%d", i)}
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			restrictedNamespace(t, ctx, rel.namespace)
			objs := render(t, rel, tc.values)
			applyObjects(t, ctx, objs)
			for _, obj := range objs {
				got := &unstructured.Unstructured{}
				got.SetGroupVersionKind(obj.GroupVersionKind())
				if err := cp.Client.Get(ctx, client.ObjectKeyFromObject(obj), got); err != nil {
					t.Errorf("reading back %s %s: %v", obj.GetKind(), obj.GetName(), err)
				}
			}

			// The Deployment's pod, created as the ReplicaSet controller
			// would, passes Pod Security "restricted".
			r := renderCase(t, rel, tc.values)
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: rel.namespace, Name: "netguard-pod", Labels: r.deployment.Spec.Template.Labels},
				Spec:       r.deployment.Spec.Template.Spec,
			}
			if err := cp.Client.Create(ctx, pod); err != nil {
				t.Errorf("the API server rejects netguard's pod: %v", err)
			} else {
				deleteAtEnd(t, pod)
			}
		})
	}
}

// TestPodSecurityIsEnforced makes sure the Pod Security check above can
// fail: a pod that is not "restricted" is rejected in the same setup.
func TestPodSecurityIsEnforced(t *testing.T) {
	needControlPlane(t)
	ctx := context.Background()
	restrictedNamespace(t, ctx, "netguard-psa-control")
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "netguard-psa-control", Name: "root"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}},
	}
	err := cp.Client.Create(ctx, pod)
	if err == nil || !strings.Contains(err.Error(), "restricted") {
		t.Fatalf("a pod without a security context was not rejected by Pod Security: %v", err)
	}
}

// TestHelmInstallUpgradeUninstall installs the chart with helm against the
// API server, upgrades it, uninstalls it and installs it again. netguard's
// writes survive the upgrade (its CA Secret and a caBundle are not the
// chart's), the uninstall leaves no webhook configuration behind that would
// send pods to a webhook that is gone, and the CA Secret netguard wrote,
// left behind on purpose, does not stand in the way of the reinstall.
func TestHelmInstallUpgradeUninstall(t *testing.T) {
	needControlPlane(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rel := release{name: "lifecycle", namespace: "netguard-lifecycle"}
	fullname := "lifecycle-netguard"
	helmCluster := func(args ...string) {
		t.Helper()
		args = append(args, "--kubeconfig", cp.Kubeconfig, "--namespace", rel.namespace)
		if _, err := helm(args...); err != nil {
			t.Fatal(err)
		}
	}
	selfManaged := valuesFile(t, map[string]any{"certManager": map[string]any{"enabled": false}})
	helmCluster("install", rel.name, chartDir, "--create-namespace", "--values", selfManaged)

	// What netguard writes at runtime (no netguard runs here).
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: rel.namespace, Name: fullname + "-ca"},
		Data:       map[string][]byte{"ca.crt": []byte("ca"), "tls.crt": []byte("ca"), "tls.key": []byte("key")},
	}
	if err := cp.Client.Create(ctx, secret, client.FieldOwner("netguard")); err != nil {
		t.Fatalf("creating the CA Secret as netguard does: %v", err)
	}
	bundle := []byte("-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n")
	setCABundle(t, ctx, fullname, bundle)

	// An upgrade that changes the webhooks and the pods' labels.
	helmCluster("upgrade", rel.name, chartDir, "--values", selfManaged,
		"--set", "webhook.pods.timeoutSeconds=3", "--set", "podLabels.tier=platform")
	if err := cp.Client.Get(ctx, client.ObjectKeyFromObject(secret), secret); err != nil {
		t.Fatalf("the CA Secret netguard wrote, after helm upgrade: %v", err)
	}
	if string(secret.Data["ca.crt"]) != "ca" {
		t.Errorf("helm upgrade changed the CA netguard wrote: %v", secret.Data)
	}
	mwc := mutatingConfiguration(t, ctx, fullname)
	if got := *mwc.Webhooks[0].TimeoutSeconds; got != 3 {
		t.Errorf("upgrade not applied: timeoutSeconds = %d", got)
	}
	if string(mwc.Webhooks[0].ClientConfig.CABundle) != string(bundle) {
		t.Errorf("helm upgrade dropped the caBundle netguard wrote: %q", mwc.Webhooks[0].ClientConfig.CABundle)
	}

	helmCluster("uninstall", rel.name, "--wait", "--timeout", "60s")
	for _, obj := range []client.Object{
		&unstructured.Unstructured{Object: map[string]any{"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration", "metadata": map[string]any{"name": fullname}}},
		&unstructured.Unstructured{Object: map[string]any{"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration", "metadata": map[string]any{"name": fullname}}},
		&unstructured.Unstructured{Object: map[string]any{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": map[string]any{"name": fullname}}},
	} {
		err := cp.Client.Get(ctx, client.ObjectKeyFromObject(obj), obj)
		if !apierrors.IsNotFound(err) {
			t.Errorf("%s %s is left after helm uninstall (get: %v)", obj.GetObjectKind().GroupVersionKind().Kind, obj.GetName(), err)
		}
	}
	if err := cp.Client.Get(ctx, client.ObjectKeyFromObject(secret), secret); err != nil {
		t.Errorf("the CA Secret netguard wrote is gone after helm uninstall (docs/install.md: it stays): %v", err)
	}
	// Installed again over the CA Secret left behind, in both TLS modes.
	helmCluster("install", rel.name, chartDir, "--values", selfManaged)
	helmCluster("uninstall", rel.name, "--wait", "--timeout", "60s")
	helmCluster("install", rel.name, chartDir)
	helmCluster("uninstall", rel.name, "--wait", "--timeout", "60s")
}

// setCABundle writes bundle into every webhook of the configurations named
// name, as netguard or cainjector does; a conflict with netguard's own
// write of the same configuration is retried.
func setCABundle(t *testing.T, ctx context.Context, name string, bundle []byte) {
	t.Helper()
	for _, kind := range []string{"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"} {
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			obj := &unstructured.Unstructured{}
			obj.SetAPIVersion("admissionregistration.k8s.io/v1")
			obj.SetKind(kind)
			if err := cp.Client.Get(ctx, client.ObjectKey{Name: name}, obj); err != nil {
				if apierrors.IsNotFound(err) {
					return nil
				}
				return err
			}
			webhooks, _, _ := unstructured.NestedSlice(obj.Object, "webhooks")
			for _, w := range webhooks {
				w.(map[string]any)["clientConfig"].(map[string]any)["caBundle"] = bundle
			}
			// caBundle is base64 in JSON; round-trip through JSON to encode it.
			raw, err := json.Marshal(webhooks)
			if err != nil {
				return err
			}
			var encoded []any
			if err := json.Unmarshal(raw, &encoded); err != nil {
				return err
			}
			if err := unstructured.SetNestedSlice(obj.Object, encoded, "webhooks"); err != nil {
				return err
			}
			return cp.Client.Update(ctx, obj, client.FieldOwner("netguard"))
		})
		if err != nil {
			t.Fatalf("writing caBundle of %s %s: %v", kind, name, err)
		}
	}
}
