package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/netguard-io/netguard/policies/podpolicy"
)

// randomPod is a pod with DNS settings, containers and netguard
// annotations drawn from what clusters run, odd corners included. Some
// draws are invalid; the test lets the API server sort them out.
func randomPod(r *rand.Rand, ns, name string) *corev1.Pod {
	pick := func(vals ...string) string { return vals[r.IntN(len(vals))] }
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: map[string]string{}}}
	spec := &pod.Spec
	spec.DNSPolicy = corev1.DNSPolicy(pick("", "ClusterFirst", "ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"))
	spec.HostNetwork = r.IntN(6) == 0
	if r.IntN(2) == 0 || spec.DNSPolicy == corev1.DNSNone {
		dc := &corev1.PodDNSConfig{}
		for range r.IntN(4) {
			dc.Nameservers = append(dc.Nameservers, pick("10.0.0.10", "192.0.2.53", "198.51.100.53", "fd00::53"))
		}
		for range r.IntN(8) {
			dc.Searches = append(dc.Searches, pick("svc.cluster.local", "cluster.local", "corp.example.com", "example.org",
				strings.Repeat("a", 63)+"."+strings.Repeat("b", 60)+".example"))
		}
		for range r.IntN(4) {
			o := corev1.PodDNSConfigOption{Name: pick("ndots", "timeout", "attempts", "single-request", "single-request-reopen", "edns0", "use-vc")}
			switch o.Name {
			case "ndots":
				o.Value = ptr.To(pick("1", "2", "5", "15"))
			case "timeout", "attempts":
				o.Value = ptr.To(pick("1", "3"))
			}
			dc.Options = append(dc.Options, o)
		}
		spec.DNSConfig = dc
	}
	for i := range 1 + r.IntN(3) {
		c := corev1.Container{
			Name:  fmt.Sprintf("c%d", i),
			Image: pick("nginx:1.27", "docker.io/nginxinc/nginx-unprivileged:1.27-alpine", "registry.k8s.io/ingress-nginx/controller:v1.12.0", "openresty/openresty:1.25", "registry.example/app:1", "busybox:1.36"),
		}
		if r.IntN(3) == 0 {
			c.Ports = []corev1.ContainerPort{{ContainerPort: int32(pick1(r, 80, 8053, 8080))}}
		}
		spec.Containers = append(spec.Containers, c)
	}
	if r.IntN(4) == 0 {
		spec.InitContainers = []corev1.Container{{Name: "init", Image: "busybox:1.36"}}
	}
	for key, vals := range map[string][]string{
		podpolicy.AnnotationInject:   {"true", "false", "junk"},
		podpolicy.AnnotationNdots:    {"1", "3", "0", "16", "x"},
		podpolicy.AnnotationDNSProxy: {"true", "false", "junk"},
	} {
		if r.IntN(4) == 0 {
			pod.Annotations[key] = vals[r.IntN(len(vals))]
		}
	}
	return pod
}

func pick1(r *rand.Rand, vals ...int) int { return vals[r.IntN(len(vals))] }

// TestEveryMutatedPodIsValid: random pods go through the real API server
// (dry run) with netguard's webhook in the path, so that the API server's
// own validation judges every pod netguard returns. A pod the API server
// accepts without netguard must be accepted with it. Sending the mutated
// pod again must change nothing (the webhook may be called again).
func TestEveryMutatedPodIsValid(t *testing.T) {
	const n = 400
	seed := uint64(20261123)
	r := rand.New(rand.NewPCG(seed, seed))
	plain := newNamespace(t, "valid-plain", nil)
	served := newNamespace(t, "valid", optedIn)
	ctx := context.Background()
	dryRun := func(pod *corev1.Pod) (*corev1.Pod, error) {
		pod = pod.DeepCopy()
		err := k8s.Create(ctx, pod, client.DryRunAll)
		return pod, err
	}
	var valid, mutated, invalid int
	for i := range n {
		pod := randomPod(r, plain, fmt.Sprintf("p%03d", i))
		if _, err := dryRun(pod); err != nil {
			invalid++ // invalid before netguard sees it
			continue
		}
		valid++
		pod.Namespace = served
		once, err := dryRun(pod)
		if err != nil {
			t.Errorf("pod %d: valid without netguard, rejected after it: %v\ninput: %+v", i, err, pod.Spec)
			continue
		}
		if _, ok := once.Annotations[podpolicy.AnnotationStatus]; !ok {
			continue
		}
		mutated++
		again := once.DeepCopy()
		again.ObjectMeta = metav1.ObjectMeta{Namespace: served, Name: once.Name, Annotations: once.Annotations, Labels: once.Labels}
		twice, err := dryRun(again)
		if err != nil {
			t.Errorf("pod %d: the mutated pod, sent again, is rejected: %v", i, err)
			continue
		}
		if !equality.Semantic.DeepEqual(once.Spec, twice.Spec) || !equality.Semantic.DeepEqual(once.Annotations, twice.Annotations) {
			t.Errorf("pod %d: mutating twice differs from once\nonce:  %+v\ntwice: %+v", i, once.Spec, twice.Spec)
		}
	}
	t.Logf("seed %d: %d random pods, %d valid, %d of them mutated (all accepted by the API server, second pass a no-op); %d invalid before netguard", seed, n, valid, mutated, invalid)
	if valid < n/2 || mutated < valid/3 {
		t.Errorf("the generator gives too few valid (%d) or mutated (%d) pods to mean much", valid, mutated)
	}
}
