package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/netguard-io/netguard/config"
	"github.com/netguard-io/netguard/policies/podpolicy"
	"github.com/netguard-io/netguard/test/node"
)

// muslNames are what a pod of namespace ns looks up, and the address each
// resolves to: Services by the short forms that musl resolves only by the
// search list (svc.ns.svc has 2 dots), and the full name.
func muslNames() map[string]string {
	return map[string]string{
		"kubernetes.default":                   node.APIServiceIP,
		"kubernetes.default.svc":               node.APIServiceIP,
		"kube-dns.kube-system.svc":             node.ClusterDNSIP,
		"kubernetes.default.svc.cluster.local": node.APIServiceIP,
	}
}

// testMuslPod (netguard must not break a name): pods of a static musl
// program, which netguard counts as musl by their image, resolve the
// Service names of every shape through the resolv.conf the kubelet writes
// for them with netguard installed; ndots:2, which netguard gave every pod
// before it told resolvers apart, loses them. Then one CoreDNS pod turns
// silent: the musl pod with the resolv-mode sidecar still answers every
// lookup, the one without loses those pinned to the silent pod.
func testMuslPod(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, "musl", merge(optedIn, restricted))
	pods := map[string]map[string]string{
		"plain":   nil,
		"sidecar": {podpolicy.AnnotationDNSProxy: "resolv"},
		"ndots2":  {podpolicy.AnnotationNdots: "2"},
	}
	for name, annotations := range pods {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": "musl"}, Annotations: annotations},
			Spec: corev1.PodSpec{
				SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
				Containers:      []corev1.Container{{Name: "app", Image: node.MuslImage, ImagePullPolicy: corev1.PullNever, SecurityContext: restrictedContext()}},
			},
		}
		if _, err := cluster.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range readyPods(t, ns, "app=musl", len(pods)) {
		st, err := podpolicy.ParseStatus(p.Annotations[podpolicy.AnnotationStatus])
		if err != nil || st.Resolver != config.ResolverMusl {
			t.Errorf("pod %s: status %q, want resolver musl", p.Name, p.Annotations[podpolicy.AnnotationStatus])
		}
		// The image has no cat: read the file through the process's root.
		pid, err := cluster.ContainerPID(ctx, ns, p.Name, "app")
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/root/etc/resolv.conf", pid))
		if err != nil {
			t.Fatalf("reading %s's resolv.conf: %v", p.Name, err)
		}
		resolv := string(b)
		wantOptions, wantServer := "options ndots:5", node.ClusterDNSIP
		switch p.Name {
		case "sidecar":
			wantServer = "127.0.0.1"
		case "ndots2":
			wantOptions = "options ndots:2"
		}
		if !strings.Contains(resolv, "nameserver "+wantServer+"\n") || normalize(optionsOf(resolv)) != wantOptions {
			t.Errorf("pod %s: the kubelet wrote\n%s\nwant nameserver %s, %s (musl ignores single-request-reopen)", p.Name, resolv, wantServer, wantOptions)
		}
		t.Logf("pod %s: %s; resolv.conf: %s", p.Name, p.Annotations[podpolicy.AnnotationStatus], strings.ReplaceAll(strings.TrimSpace(resolv), "\n", " | "))
	}

	for name, addr := range muslNames() {
		for pod := range pods {
			out, stderr, err := cluster.Exec(ctx, ns, pod, "app", "/getaddrinfo", name)
			resolved := err == nil && slices.Contains(strings.Fields(out), addr)
			lost := pod == "ndots2" && strings.Count(name, ".") >= 2 && !strings.HasSuffix(name, ".local")
			switch {
			case lost && resolved:
				t.Errorf("pod %s (ndots:2) resolved %s: the test no longer reproduces what musl loses", pod, name)
			case !lost && !resolved:
				t.Errorf("pod %s: %s did not resolve to %s: %v %q %s", pod, name, addr, err, out, stderr)
			}
		}
	}

	// One CoreDNS pod silent for UDP: it stays ready and in the endpoints.
	dns, err := cluster.Client.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{LabelSelector: "k8s-app=kube-dns"})
	if err != nil || len(dns.Items) != 2 {
		t.Fatalf("CoreDNS pods: %v %d", err, len(dns.Items))
	}
	dead := dns.Items[0].Name
	silenceCoreDNS(t, dead)
	// Lookups at once, each its own process: each a new socket, so a new
	// choice of CoreDNS pod per kube-proxy rule, as separate requests of an
	// application would be.
	const n = 20
	answered := map[string]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, pod := range []string{"plain", "sidecar"} {
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				out, _, err := cluster.Exec(ctx, ns, pod, "app", "/getaddrinfo", "kube-dns.kube-system.svc")
				if err == nil && slices.Contains(strings.Fields(out), node.ClusterDNSIP) {
					mu.Lock()
					answered[pod]++
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	if err := cluster.WaitEndpoints(ctx, "kube-system", "kube-dns", 2); err != nil {
		t.Errorf("the silent CoreDNS pod left the endpoints: %v", err)
	}
	t.Logf("CoreDNS pod %s silent for UDP: musl lookups of kube-dns.kube-system.svc answered %d/%d without the sidecar, %d/%d with the resolv-mode sidecar",
		dead, answered["plain"], n, answered["sidecar"], n)
	if answered["sidecar"] != n {
		t.Errorf("musl pod with the sidecar: %d/%d lookups answered, want all", answered["sidecar"], n)
	}
	if answered["plain"] == n {
		t.Errorf("the control did not break: the musl pod without the sidecar answered %d/%d", answered["plain"], n)
	}
}

// optionsOf is the options line of a resolv.conf.
func optionsOf(resolv string) string {
	for _, l := range strings.Split(resolv, "\n") {
		if strings.HasPrefix(l, "options") {
			return l
		}
	}
	return fmt.Sprintf("(no options line in %q)", resolv)
}
