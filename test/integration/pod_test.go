package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/netguard-io/netguard/config"
	"github.com/netguard-io/netguard/policies/podpolicy"
	"github.com/netguard-io/netguard/test/framework"
)

func option(pod *corev1.Pod, name string) (value string, found bool) {
	if pod.Spec.DNSConfig == nil {
		return "", false
	}
	for _, o := range pod.Spec.DNSConfig.Options {
		if o.Name == name {
			return ptr.Deref(o.Value, ""), true
		}
	}
	return "", false
}

func assertHardened(t *testing.T, pod *corev1.Pod, ns string) {
	t.Helper()
	status, err := podpolicy.ParseStatus(pod.Annotations[podpolicy.AnnotationStatus])
	if err != nil {
		t.Fatalf("status annotation: %v", err)
	}
	// musl ignores single-request-reopen, and Go needs none: a new socket
	// per query.
	wantReopen := status.Resolver != config.ResolverMusl && status.Resolver != config.ResolverGo
	if _, ok := option(pod, "single-request-reopen"); ok != wantReopen {
		t.Errorf("stored pod has option single-request-reopen: %v, want %v for resolver %q; dnsConfig=%+v", ok, wantReopen, status.Resolver, pod.Spec.DNSConfig)
	}
	// ndots is lowered only where the resolver searches after an absolute
	// lookup; every other pod keeps the kubelet's 5, written out.
	wantNdots := "5"
	if status.Resolver.SearchesAfterAbsolute() {
		wantNdots = "2"
	}
	if v, _ := option(pod, "ndots"); v != wantNdots {
		t.Errorf("stored pod ndots = %q, want %s for resolver %q", v, wantNdots, status.Resolver)
	}
	if pod.Spec.DNSPolicy != corev1.DNSNone {
		t.Fatalf("stored pod dnsPolicy = %q, want None (search domains scrubbed)", pod.Spec.DNSPolicy)
	}
	if got := pod.Spec.DNSConfig.Nameservers; !slices.Equal(got, []string{clusterDNSIP}) {
		t.Errorf("nameservers = %v, want [%s] (discovered from kube-system/kube-dns)", got, clusterDNSIP)
	}
	want := []string{ns + ".svc.cluster.local", "svc.cluster.local", "cluster.local"}
	if got := pod.Spec.DNSConfig.Searches; !slices.Equal(got, want) {
		t.Errorf("searches = %v, want %v", got, want)
	}
	if status.Version == "" || len(status.Applied) == 0 || status.Resolver == "" {
		t.Errorf("status annotation %q lacks version, applied policies or resolver", pod.Annotations[podpolicy.AnnotationStatus])
	}
}

func assertUntouched(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	if _, ok := pod.Annotations[podpolicy.AnnotationStatus]; ok {
		t.Errorf("pod was mutated: status annotation %q", pod.Annotations[podpolicy.AnnotationStatus])
	}
	if pod.Spec.DNSConfig != nil || pod.Spec.DNSPolicy != corev1.DNSClusterFirst {
		t.Errorf("pod DNS changed: dnsPolicy=%q dnsConfig=%+v", pod.Spec.DNSPolicy, pod.Spec.DNSConfig)
	}
}

func TestPodInOptedInNamespaceIsHardened(t *testing.T) {
	ns := newNamespace(t, "team", optedIn)
	pod := createPod(t, plainPod(ns, "app", "registry.example/app:1"))
	assertHardened(t, pod, ns)
}

// TestPodResolverDecidesTheRules: the stored pods of each resolver, and
// the warnings the API server passes on to the client that created them.
func TestPodResolverDecidesTheRules(t *testing.T) {
	ns := newNamespace(t, "resolver", optedIn)
	warned, seen := warnedClient(t)
	cases := []struct {
		name, image, annotation string
		resolver                config.Resolver
		options                 []string
		warning                 string // substring of an admission warning; "" means none
	}{
		{"alpine", "alpine:3.20", "", config.ResolverMusl, []string{"ndots:5"}, "resolver musl (image alpine:3.20): ndots stays 5"},
		{"debian", "debian:12", "", config.ResolverGlibc, []string{"single-request-reopen", "ndots:2"}, ""},
		{"unclassified", "registry.example/app:1", "", config.ResolverUnknown, []string{"single-request-reopen", "ndots:5"}, "annotate netguard.io/resolver: glibc (or go)"},
		{"annotated", "registry.example/app:1", "go", config.ResolverGo, []string{"ndots:2"}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			seen.texts = nil
			pod := plainPod(ns, tc.name, tc.image)
			if tc.annotation != "" {
				pod.Annotations = map[string]string{podpolicy.AnnotationResolver: tc.annotation}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := warned.Create(ctx, pod); err != nil {
				t.Fatal(err)
			}
			stored := &corev1.Pod{}
			if err := k8s.Get(ctx, client.ObjectKeyFromObject(pod), stored); err != nil {
				t.Fatal(err)
			}
			assertHardened(t, stored, ns)
			var opts []string
			for _, o := range stored.Spec.DNSConfig.Options {
				opts = append(opts, strings.TrimSuffix(o.Name+":"+ptr.Deref(o.Value, ""), ":"))
			}
			if !slices.Equal(opts, tc.options) {
				t.Errorf("options = %q, want %q", opts, tc.options)
			}
			st, _ := podpolicy.ParseStatus(stored.Annotations[podpolicy.AnnotationStatus])
			if st.Resolver != tc.resolver {
				t.Errorf("status resolver = %q, want %q", st.Resolver, tc.resolver)
			}
			switch {
			case tc.warning == "" && len(seen.texts) > 0:
				t.Errorf("unexpected warnings %q", seen.texts)
			case tc.warning != "" && !slices.ContainsFunc(seen.texts, func(w string) bool { return strings.Contains(w, tc.warning) }):
				t.Errorf("warnings %q lack %q", seen.texts, tc.warning)
			}
		})
	}
}

func TestPodKeepsItsOwnDNSOptions(t *testing.T) {
	ns := newNamespace(t, "own", optedIn)
	pod := plainPod(ns, "own", "registry.example/app:1")
	pod.Spec.DNSConfig = &corev1.PodDNSConfig{Options: []corev1.PodDNSConfigOption{
		{Name: "ndots", Value: ptr.To("3")}, {Name: "timeout", Value: ptr.To("1")},
	}}
	stored := createPod(t, pod)
	if v, _ := option(stored, "ndots"); v != "3" {
		t.Errorf("ndots = %q, want the pod's own 3", v)
	}
	if v, _ := option(stored, "timeout"); v != "1" {
		t.Errorf("timeout = %q, want the pod's own 1", v)
	}
	if _, ok := option(stored, "single-request-reopen"); !ok {
		t.Errorf("single-request-reopen not added: %+v", stored.Spec.DNSConfig.Options)
	}
	seen := map[string]bool{}
	for _, o := range stored.Spec.DNSConfig.Options {
		if seen[o.Name] {
			t.Errorf("option %s duplicated: %+v", o.Name, stored.Spec.DNSConfig.Options)
		}
		seen[o.Name] = true
	}
}

func TestPodInOtherNamespaceIsUntouched(t *testing.T) {
	ns := newNamespace(t, "other", nil)
	assertUntouched(t, createPod(t, plainPod(ns, "app", "registry.example/app:1")))
}

func TestOptedOutPodIsUntouched(t *testing.T) {
	ns := newNamespace(t, "optout", optedIn)
	pod := plainPod(ns, "app", "registry.example/app:1")
	pod.Annotations = map[string]string{"netguard.io/inject": "false"}
	assertUntouched(t, createPod(t, pod))
}

func TestHostNetworkPodIsUntouched(t *testing.T) {
	ns := newNamespace(t, "hostnet", optedIn)
	pod := plainPod(ns, "app", "registry.example/app:1")
	pod.Spec.HostNetwork = true
	assertUntouched(t, createPod(t, pod))
}

func TestDryRunCreateIsMutatedAndNotStored(t *testing.T) {
	ns := newNamespace(t, "dryrun", optedIn)
	pod := createPod(t, plainPod(ns, "app", "registry.example/app:1"), client.DryRunAll)
	assertHardened(t, pod, ns)
	err := k8s.Get(context.Background(), client.ObjectKeyFromObject(pod), &corev1.Pod{})
	if !apierrors.IsNotFound(err) {
		t.Fatalf("dry-run pod was stored (get: %v)", err)
	}
}

// restrictedPod meets Pod Security "restricted" on its own, so the only
// thing under test is what netguard adds.
func restrictedPod(ns, name, image string) *corev1.Pod {
	pod := plainPod(ns, name, image)
	pod.Spec.SecurityContext = &corev1.PodSecurityContext{
		RunAsNonRoot:   ptr.To(true),
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	pod.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr.To(false),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
	return pod
}

var restricted = map[string]string{
	"netguard.io/inject":                 "enabled",
	"pod-security.kubernetes.io/enforce": "restricted",
}

func sidecar(pod *corev1.Pod) *corev1.Container {
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == podpolicy.DNSProxyContainerName {
			return &pod.Spec.InitContainers[i]
		}
	}
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == podpolicy.DNSProxyContainerName {
			return &pod.Spec.Containers[i]
		}
	}
	return nil
}

func TestNginxPodGetsDNSSidecarUnderRestrictedPodSecurity(t *testing.T) {
	ns := newNamespace(t, "gateway", restricted)
	stored := createPod(t, restrictedPod(ns, "gateway", "nginxinc/nginx-unprivileged:1.27"))
	c := sidecar(stored)
	if c == nil {
		t.Fatalf("nginx pod has no %s container; init=%v", podpolicy.DNSProxyContainerName, stored.Spec.InitContainers)
	}
	if len(stored.Spec.InitContainers) == 0 || stored.Spec.InitContainers[0].Name != podpolicy.DNSProxyContainerName {
		t.Errorf("sidecar is not the first init container: %v", stored.Spec.InitContainers)
	}
	if ptr.Deref(c.RestartPolicy, "") != corev1.ContainerRestartPolicyAlways {
		t.Errorf("sidecar restartPolicy = %v, want Always (native sidecar)", c.RestartPolicy)
	}
	if !slices.Contains(c.Args, "dns-proxy") {
		t.Errorf("sidecar args %v do not run dns-proxy", c.Args)
	}
	status, _ := podpolicy.ParseStatus(stored.Annotations[podpolicy.AnnotationStatus])
	if !slices.Contains(status.Applied, podpolicy.AppliedDNSProxy) {
		t.Errorf("status %q does not record the sidecar", stored.Annotations[podpolicy.AnnotationStatus])
	}
}

func TestNonNginxPodGetsNoSidecar(t *testing.T) {
	ns := newNamespace(t, "plain", restricted)
	stored := createPod(t, restrictedPod(ns, "app", "registry.example/app:1"))
	if c := sidecar(stored); c != nil {
		t.Fatalf("non-nginx pod got a sidecar: %+v", c)
	}
	assertHardened(t, stored, ns)
}

func TestResolvModeSidecarUnderRestrictedPodSecurity(t *testing.T) {
	restartServer(t, writeConfig(t, "dnsProxy:\n  mode: resolv\n"))
	t.Cleanup(func() { restartServer(t, "") })
	ns := newNamespace(t, "resolv", restricted)
	stored := createPod(t, restrictedPod(ns, "gateway", "nginx:1.27"))
	if sidecar(stored) == nil {
		t.Fatalf("nginx pod has no sidecar in resolv mode")
	}
	if stored.Spec.DNSPolicy != corev1.DNSNone || stored.Spec.DNSConfig == nil || !slices.Equal(stored.Spec.DNSConfig.Nameservers, []string{"127.0.0.1"}) {
		t.Fatalf("resolv mode: pod DNS does not point at the sidecar: policy=%s config=%+v", stored.Spec.DNSPolicy, stored.Spec.DNSConfig)
	}
	if !slices.Contains(sidecar(stored).Args, clusterDNSIP+":53") {
		t.Errorf("resolv-mode sidecar upstream is not the cluster DNS IP: %v", sidecar(stored).Args)
	}
}

// TestSidecarWithoutNativeSidecars: on a cluster whose provider turned
// native sidecars off (dnsProxy.nativeSidecar: false), the sidecar is a
// regular container beside nginx, and the API server (on every version
// make test runs) accepts the pod under Pod Security "restricted".
func TestSidecarWithoutNativeSidecars(t *testing.T) {
	restartServer(t, writeConfig(t, "dnsProxy:\n  nativeSidecar: false\n"))
	t.Cleanup(func() { restartServer(t, "") })
	ns := newNamespace(t, "plain-sidecar", restricted)
	stored := createPod(t, restrictedPod(ns, "gateway", "nginx:1.27"))
	i := slices.IndexFunc(stored.Spec.Containers, func(c corev1.Container) bool { return c.Name == podpolicy.DNSProxyContainerName })
	if len(stored.Spec.Containers) != 2 || i < 0 || len(stored.Spec.InitContainers) != 0 {
		t.Fatalf("containers %d (sidecar at %d), init containers %d; want nginx and the sidecar, no init container",
			len(stored.Spec.Containers), i, len(stored.Spec.InitContainers))
	}
	if c := stored.Spec.Containers[i]; c.RestartPolicy != nil || !slices.Contains(c.Args, "dns-proxy") {
		t.Errorf("sidecar: restartPolicy %v, args %v; want none and dns-proxy", c.RestartPolicy, c.Args)
	}
}

func TestClusterWideMode(t *testing.T) {
	ctx := context.Background()
	restartServer(t, writeConfig(t, "namespaces:\n  mode: cluster-wide\n"))
	if err := cp.InstallPodWebhook(ctx, server, framework.ClusterWide); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// netguard's own opt-in setting leaves unlabelled namespaces
		// alone even while the API server still uses the wider selector.
		restartServer(t, "")
		if err := cp.InstallPodWebhook(ctx, server, framework.OptIn); err != nil {
			t.Error(err)
		}
	})
	unlabelled := newNamespace(t, "wide", nil)
	waitMutatedIn(t, unlabelled) // the API server has the new selector
	assertHardened(t, createPod(t, plainPod(unlabelled, "app", "registry.example/app:1")), unlabelled)
	disabled := newNamespace(t, "wideout", map[string]string{"netguard.io/inject": "disabled"})
	assertUntouched(t, createPod(t, plainPod(disabled, "app", "registry.example/app:1")))
	excluded := "netguard"
	assertUntouched(t, createPod(t, plainPod(excluded, "app-"+disabled, "registry.example/app:1")))
}

// waitMutatedIn waits until a dry-run pod in ns comes back mutated: the
// API server uses a webhook configuration moments after it changed.
func waitMutatedIn(t *testing.T, ns string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		pod := createPod(t, plainPod(ns, fmt.Sprintf("probe-%d", i), "registry.example/app:1"), client.DryRunAll)
		if _, ok := pod.Annotations[podpolicy.AnnotationStatus]; ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pods in namespace %s not mutated within 30s", ns)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestWebhookDownFailsOpen: with netguard gone, pods are still created
// (failurePolicy Ignore), unmutated; once it is back they are mutated again.
func TestWebhookDownFailsOpen(t *testing.T) {
	ns := newNamespace(t, "down", optedIn)
	if err := server.Kill(); err != nil {
		t.Fatal(err)
	}
	assertUntouched(t, createPod(t, plainPod(ns, "while-down", "registry.example/app:1")))
	restartServer(t, "")
	assertHardened(t, createPod(t, plainPod(ns, "after", "registry.example/app:1")), ns)
}

// TestMutationKeepsEveryField guards against a corrupt patch: the
// stored pod keeps every field the client sent.
func TestMutationKeepsEveryField(t *testing.T) {
	ns := newNamespace(t, "keep", optedIn)
	pod := plainPod(ns, "keep", "registry.example/app:1")
	pod.Labels = map[string]string{"app": "keep"}
	pod.Annotations = map[string]string{"team": "a"}
	pod.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "A", Value: "1"}}
	pod.Spec.Containers[0].Args = []string{"--flag"}
	stored := createPod(t, pod)
	assertHardened(t, stored, ns)
	got, _ := json.Marshal(stored.Spec.Containers[0])
	if stored.Labels["app"] != "keep" || stored.Annotations["team"] != "a" || stored.Spec.Containers[0].Env[0].Value != "1" || stored.Spec.Containers[0].Args[0] != "--flag" {
		t.Fatalf("fields lost in mutation: labels=%v annotations=%v container=%s", stored.Labels, stored.Annotations, got)
	}
}

// TestRestrictedNamespaceRejectsNonCompliantPods is the control for the
// sidecar tests: Pod Security "restricted" is enforced in those namespaces,
// so a sidecar that broke it would make the pod fail to create.
func TestRestrictedNamespaceRejectsNonCompliantPods(t *testing.T) {
	ns := newNamespace(t, "control", restricted)
	err := k8s.Create(context.Background(), plainPod(ns, "root", "nginx:1.27"))
	if !apierrors.IsForbidden(err) {
		t.Fatalf("a pod without a restricted securityContext was not rejected: %v", err)
	}
}
