package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	"github.com/netguard-io/netguard/policies/podpolicy"
	"github.com/netguard-io/netguard/test/framework"
	"github.com/netguard-io/netguard/test/node"
)

// TestNode replays what netguard is for on the node, in order; each part
// leaves netguard installed and ready for the next.
func TestNode(t *testing.T) {
	parts := []struct {
		name string
		run  func(*testing.T)
	}{
		{"install", testInstall},
		{"cert-manager", testCertManager},
		{"pod DNS", testPodDNS},
		{"musl pod DNS", testMuslPod},
		{"sidecar port mode", func(t *testing.T) { testSidecar(t, "port") }},
		{"nginx outage", testNginxOutage},
		{"rollout", testRollout},
		{"faults", testFaults},
		{"rolling netguard under load", testRollingNetguard},
		{"upgrade", testUpgrade},
		{"TLS modes", testTLSModes},
		{"uninstall and reinstall", testReinstall},
		{"uninstall", testUninstall},
	}
	for _, p := range parts {
		began := time.Now()
		ok := t.Run(p.name, p.run)
		t.Logf("%s: %s (%s)", p.name, map[bool]string{true: "ok", false: "FAILED"}[ok], time.Since(began).Round(100*time.Millisecond))
	}
}

// testInstall: netguard's pods run its image and are ready, and the API
// server calls the webhooks through netguard's Service.
func testInstall(t *testing.T) {
	ctx := context.Background()
	checkVersions(t)
	pods := readyPods(t, node.NetguardNamespace, "app.kubernetes.io/name=netguard", 2)
	for _, p := range pods {
		if img := p.Spec.Containers[0].Image; img != cluster.NetguardImage {
			t.Errorf("pod %s runs %s, want %s", p.Name, img, cluster.NetguardImage)
		}
	}
	m, err := cluster.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, node.NetguardRelease, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svc := m.Webhooks[0].ClientConfig.Service
	if svc == nil || svc.Namespace != node.NetguardNamespace || m.Webhooks[0].ClientConfig.URL != nil {
		t.Fatalf("the pod webhook does not go through netguard's Service: %+v", m.Webhooks[0].ClientConfig)
	}
	ns := newNamespace(t, "install", optedIn)
	if ndots := podNdots(t, ns, "app", "glibc"); ndots != "2" {
		t.Fatalf("ndots of a glibc pod = %q, want netguard's 2", ndots)
	}
	if ndots := podNdots(t, ns, "unclassified", ""); ndots != "5" {
		t.Fatalf("ndots of a pod whose resolver netguard cannot tell = %q, want the kubelet's 5", ndots)
	}
	t.Logf("2 netguard pods ready from %s; the API server calls them through Service %s/%s", cluster.NetguardImage, svc.Namespace, svc.Name)
}

// testUpgrade: helm upgrade with other settings rolls netguard's pods and
// the new settings apply (ndots 3), including the sidecar's resolv mode.
func testUpgrade(t *testing.T) {
	ctx := context.Background()
	if err := cluster.Helm(ctx, "upgrade", "--set", "dns.ndots=3", "--set", "dnsProxy.mode=resolv", "--wait", "--timeout", "180s"); err != nil {
		t.Fatal(err)
	}
	if err := cluster.WaitNetguard(ctx); err != nil {
		t.Fatal(err)
	}
	ns := newNamespace(t, "upgraded", optedIn)
	if ndots := podNdots(t, ns, "app", "glibc"); ndots != "3" {
		t.Fatalf("ndots after helm upgrade = %q, want 3", ndots)
	}
	testSidecar(t, "resolv")
}

// podNdots creates a pod in ns (dry run), declared to use resolver unless
// that is "", and returns the ndots netguard gave it.
func podNdots(t *testing.T, ns, name, resolver string) string {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: node.PauseImage, ImagePullPolicy: corev1.PullNever}}},
	}
	if resolver != "" {
		pod.Annotations = map[string]string{podpolicy.AnnotationResolver: resolver}
	}
	got, err := cluster.Client.CoreV1().Pods(ns).Create(context.Background(), pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		t.Fatal(err)
	}
	if got.Spec.DNSConfig != nil {
		for _, o := range got.Spec.DNSConfig.Options {
			if o.Name == "ndots" {
				return ptr.Deref(o.Value, "")
			}
		}
	}
	return ""
}

// testPodDNS (the search-list storm and the A/AAAA race): the real kubelet
// writes the resolv.conf netguard asked for, and a lookup of an external
// name from a glibc pod (its image holds glibc's getent; its annotation
// says so, as the image name does not) costs M queries at the real CoreDNS
// pods with netguard against N without.
func testPodDNS(t *testing.T) {
	ctx := context.Background()
	plain := newNamespace(t, "dns-plain", nil)
	hardened := newNamespace(t, "dns-hardened", optedIn)
	want := map[string]string{
		plain:    fmt.Sprintf("search %s.svc.cluster.local svc.cluster.local cluster.local example.org\nnameserver %s\noptions ndots:5", plain, node.ClusterDNSIP),
		hardened: fmt.Sprintf("search %s.svc.cluster.local svc.cluster.local cluster.local\nnameserver %s\noptions single-request-reopen ndots:2", hardened, node.ClusterDNSIP),
	}
	queries := map[string]int{}
	for _, ns := range []string{plain, hardened} {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "client", Labels: map[string]string{"app": "client"},
				Annotations: map[string]string{podpolicy.AnnotationResolver: "glibc"}},
			Spec: corev1.PodSpec{
				SecurityContext: &corev1.PodSecurityContext{RunAsUser: ptr.To[int64](65532)},
				Containers:      []corev1.Container{{Name: "client", Image: node.GetentImage, ImagePullPolicy: corev1.PullNever, SecurityContext: restrictedContext()}},
			},
		}
		if _, err := cluster.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		p := readyPods(t, ns, "app=client", 1)[0]
		out, stderr, err := cluster.Exec(ctx, ns, "client", "client", "cat", "/etc/resolv.conf")
		if err != nil {
			t.Fatalf("reading %s's resolv.conf: %v %s", ns, err, stderr)
		}
		if got := normalize(out); got != normalize(want[ns]) {
			t.Errorf("%s: the kubelet wrote\n%s\nwant\n%s", ns, out, want[ns])
		}
		before := coreDNSQueries(t, p.Status.PodIP)
		out, stderr, err = cluster.Exec(ctx, ns, "client", "client", "getent", "ahosts", node.ExternalName)
		if err != nil || !strings.Contains(out, "203.0.113.10") {
			t.Fatalf("%s: getent ahosts %s: %v %q %s", ns, node.ExternalName, err, out, stderr)
		}
		// CoreDNS logs each query as it answers it; the log reaches the
		// kubelet's file moments later.
		var n int
		framework.Eventually(t, 20*time.Second, "CoreDNS logs settled", func() (bool, string) {
			prev := n
			n = coreDNSQueries(t, p.Status.PodIP) - before
			return n > 0 && n == prev, fmt.Sprintf("%d queries", n)
		})
		queries[ns] = n
	}
	t.Logf("getent ahosts %s at the CoreDNS pods: %d queries without netguard (N), %d with (M)", node.ExternalName, queries[plain], queries[hardened])
	if queries[hardened] >= queries[plain] || queries[hardened] > 2 {
		t.Errorf("queries with netguard = %d, without = %d; want at most 2 with, fewer than without", queries[hardened], queries[plain])
	}
}

// normalize sorts the words of resolv.conf's options line: the kubelet
// writes them in map order.
func normalize(resolv string) string {
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(resolv), "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[0] == "options" {
			opts := f[1:]
			slices.Sort(opts)
			l = "options " + strings.Join(opts, " ")
		}
		lines = append(lines, strings.Join(strings.Fields(l), " "))
	}
	return strings.Join(lines, "\n")
}

// coreDNSQueries counts the queries from client about the external name in
// both CoreDNS pods' logs.
func coreDNSQueries(t *testing.T, client string) int {
	t.Helper()
	ctx := context.Background()
	pods, err := cluster.Client.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{LabelSelector: "k8s-app=kube-dns"})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range pods.Items {
		b, err := cluster.Client.CoreV1().Pods("kube-system").GetLogs(p.Name, &corev1.PodLogOptions{}).DoRaw(ctx)
		if err != nil {
			t.Fatalf("logs of %s: %v", p.Name, err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, "[INFO] "+client+":") && strings.Contains(line, " IN "+node.ExternalName+".") {
				n++
			}
		}
	}
	return n
}

// testSidecar: an nginx Deployment under Pod Security "restricted" gets the
// native sidecar, which starts before nginx, passes its startup probe, runs
// as non-root on a read-only root, and nginx resolves through it; in port
// mode and, after an upgrade, in resolv mode (the sysctl).
func testSidecar(t *testing.T, mode string) {
	ctx := context.Background()
	ns := newNamespace(t, "sidecar-"+mode, merge(optedIn, restricted))
	backend(t, ns, "backend")
	resolver := "127.0.0.1:8053"
	if mode == "resolv" {
		resolver = "127.0.0.1"
	}
	nginx(t, ns, "gateway", nginxConf(resolver, "backend."+ns+".svc.cluster.local", "5s"), nil)
	pod := readyPods(t, ns, "app=gateway", 1)[0]

	if len(pod.Spec.InitContainers) == 0 || pod.Spec.InitContainers[0].Name != podpolicy.DNSProxyContainerName ||
		ptr.Deref(pod.Spec.InitContainers[0].RestartPolicy, "") != corev1.ContainerRestartPolicyAlways {
		t.Fatalf("no native sidecar first among the init containers: %+v", pod.Spec.InitContainers)
	}
	sidecar := pod.Status.InitContainerStatuses[0]
	main := pod.Status.ContainerStatuses[0]
	if !ptr.Deref(sidecar.Started, false) || !sidecar.Ready || sidecar.State.Running == nil || main.State.Running == nil {
		t.Fatalf("sidecar %+v, nginx %+v", sidecar.State, main.State)
	}
	if !sidecar.State.Running.StartedAt.Before(&main.State.Running.StartedAt) && !sidecar.State.Running.StartedAt.Equal(&main.State.Running.StartedAt) {
		t.Errorf("the sidecar started at %v, after nginx at %v", sidecar.State.Running.StartedAt, main.State.Running.StartedAt)
	}
	// The process runs as 65532, on a read-only root.
	pid, err := cluster.ContainerPID(ctx, ns, pod.Name, podpolicy.DNSProxyContainerName)
	if err != nil {
		t.Fatal(err)
	}
	if uid := procUID(t, pid); uid != "65532" {
		t.Errorf("the sidecar runs as uid %s, want 65532", uid)
	}
	if !ptr.Deref(pod.Spec.InitContainers[0].SecurityContext.ReadOnlyRootFilesystem, false) {
		t.Error("the sidecar's root filesystem is writable")
	}
	if mode == "resolv" && (pod.Spec.DNSConfig == nil || !slices.Equal(pod.Spec.DNSConfig.Nameservers, []string{"127.0.0.1"})) {
		t.Errorf("resolv mode: pod DNS %+v, want nameserver 127.0.0.1", pod.Spec.DNSConfig)
	}
	url := fmt.Sprintf("http://%s:8080/", pod.Status.PodIP)
	framework.Eventually(t, 30*time.Second, "nginx answering through the sidecar", func() (bool, string) { return get(url, 5*time.Second) })
	t.Logf("%s mode: sidecar ready before nginx (%s <= %s), uid 65532, read-only root, nginx resolves through it",
		mode, sidecar.State.Running.StartedAt.Format(time.RFC3339), main.State.Running.StartedAt.Format(time.RFC3339))
}

// checkVersions logs the Kubernetes version the node runs and, when its
// assets are a directory hack/node-assets.sh made, fails unless the API
// server and the kubelet are that version: make e2e-node-matrix runs the
// suite on the oldest Kubernetes netguard supports and the newest.
func checkVersions(t *testing.T) {
	t.Helper()
	v, err := cluster.Client.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	nodes, err := cluster.Client.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
	if err != nil || len(nodes.Items) != 1 {
		t.Fatalf("nodes: %v (%d), want one", err, len(nodes.Items))
	}
	kubelet := nodes.Items[0].Status.NodeInfo.KubeletVersion
	t.Logf("Kubernetes: kube-apiserver %s, kubelet %s", v.GitVersion, kubelet)
	if want := framework.AssetsVersion(os.Getenv("NETGUARD_NODE_ASSETS")); want != "" && (v.GitVersion != want || kubelet != want) {
		t.Fatalf("kube-apiserver %s, kubelet %s; want %s (NETGUARD_NODE_ASSETS)", v.GitVersion, kubelet, want)
	}
}

// procUID is the real UID of a host process.
func procUID(t *testing.T, pid int) string {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^Uid:\s+(\d+)`).FindSubmatch(status)
	if m == nil {
		t.Fatalf("no Uid in /proc/%d/status", pid)
	}
	return string(m[1])
}

// testNginxOutage (the stale conntrack entry): of the two CoreDNS pods
// behind kube-proxy, the one nginx's socket is pinned to stops answering
// UDP while it stays ready, so it stays in the endpoints. nginx resolving
// through the kube-dns address directly keeps failing; nginx with the
// sidecar keeps answering.
func testNginxOutage(t *testing.T) {
	ctx := context.Background()
	direct := newNamespace(t, "outage-direct", nil)
	guarded := newNamespace(t, "outage-sidecar", optedIn)
	backendNS := newNamespace(t, "outage-backend", nil)
	backend(t, backendNS, "backend")
	name := "backend." + backendNS + ".svc.cluster.local"
	// A lookup that gets no answer costs the request resolver_timeout.
	nginx(t, direct, "gateway", nginxConf(node.ClusterDNSIP, name, "2s"), nil)
	nginx(t, guarded, "gateway", nginxConf("127.0.0.1:8053", name, "2s"), nil)
	directPod := readyPods(t, direct, "app=gateway", 1)[0]
	guardedPod := readyPods(t, guarded, "app=gateway", 1)[0]
	directURL := fmt.Sprintf("http://%s:8080/", directPod.Status.PodIP)
	guardedURL := fmt.Sprintf("http://%s:8080/", guardedPod.Status.PodIP)
	for _, u := range []string{directURL, guardedURL} {
		framework.Eventually(t, 30*time.Second, "nginx answering before the fault", func() (bool, string) { return get(u, 5*time.Second) })
	}

	// The CoreDNS pod nginx's resolver socket is pinned to, from conntrack.
	var pinned string
	framework.Eventually(t, 10*time.Second, "nginx's conntrack entry to kube-dns", func() (bool, string) {
		out, err := node.Conntrack(directPod.Status.PodIP, node.ClusterDNSIP, 53)
		if err != nil {
			return false, err.Error()
		}
		m := regexp.MustCompile(`src=(198\.18\.0\.\d+) dst=` + regexp.QuoteMeta(directPod.Status.PodIP)).FindStringSubmatch(out)
		if m == nil {
			return false, out
		}
		pinned = m[1]
		return true, ""
	})
	dns, err := cluster.Client.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{LabelSelector: "k8s-app=kube-dns"})
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(dns.Items, func(p corev1.Pod) bool { return p.Status.PodIP == pinned })
	if i < 0 {
		t.Fatalf("nginx is pinned to %s, which is no CoreDNS pod", pinned)
	}
	dead := dns.Items[i].Name
	silenceCoreDNS(t, dead)

	// nginx re-resolves every second (valid=1s): a request about every
	// second to each gateway, 20 each.
	const n = 20
	results := map[string]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, u := range []string{directURL, guardedURL} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range n {
				began := time.Now()
				if ok, _ := get(u, 8*time.Second); ok {
					mu.Lock()
					results[u]++
					mu.Unlock()
				}
				time.Sleep(time.Until(began.Add(1100 * time.Millisecond)))
			}
		}()
	}
	wg.Wait()
	// The dead pod stayed in the endpoints all along: the fault is silent.
	if err := cluster.WaitEndpoints(ctx, "kube-system", "kube-dns", 2); err != nil {
		t.Errorf("the frozen CoreDNS pod left the endpoints: %v", err)
	}
	t.Logf("CoreDNS pod %s (%s) silent for UDP: nginx through the kube-dns address %d/%d answered; nginx through netguard's sidecar %d/%d",
		dead, pinned, results[directURL], n, results[guardedURL], n)
	if results[directURL] > n/2 {
		t.Errorf("the control did not break: nginx pinned to the silent pod answered %d/%d", results[directURL], n)
	}
	if results[guardedURL] != n {
		t.Errorf("nginx with the sidecar answered %d/%d, want all", results[guardedURL], n)
		t.Logf("the sidecar's metrics:\n%s", sidecarMetrics(guardedPod.Status.PodIP))
	}
}

// testRollout (a selector that matches one revision): a Deployment stuck
// mid-rollout, and its Service's selector narrowed to the new template's
// label: denied, with the counts of the live ReplicaSets.
func testRollout(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, "rollout", optedIn)
	labels := map[string]string{"app": "api"}
	template := map[string]string{"app": "api", "track": "stable"}
	d := apiDeployment(ns, 4, template)
	if _, err := cluster.Client.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Service api selects every revision; api-stable selects the track label
	// the new template drops.
	for name, sel := range map[string]map[string]string{"api": labels, "api-stable": template} {
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec:       corev1.ServiceSpec{Selector: sel, Ports: []corev1.ServicePort{{Port: 80}}},
		}
		if _, err := cluster.Client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	readyPods(t, ns, "app=api", 4)

	// The new revision has tier=gold instead of track=stable and never
	// becomes ready: the Deployment controller surges one pod and waits.
	// netguard admits the change with a warning.
	mark := cluster.Warnings.Mark()
	if err := rollOutGold(ctx, ns); err != nil {
		t.Fatal(err)
	}
	dropped := "the new pod template of Deployment " + ns + "/api drops track=stable, which Service api-stable selects"
	if warnings := cluster.Warnings.Since(mark); !slices.ContainsFunc(warnings, func(w string) bool { return strings.Contains(w, dropped) }) {
		t.Errorf("updating the Deployment gave warnings %q, want one saying %q", warnings, dropped)
	}
	var oldRS, newRS appsv1.ReplicaSet
	framework.Eventually(t, time.Minute, "the rollout stalled with both revisions running", func() (bool, string) {
		list, err := cluster.Client.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=api"})
		if err != nil {
			return false, err.Error()
		}
		var states []string
		for _, rs := range list.Items {
			states = append(states, fmt.Sprintf("%s: %d/%d", rs.Name, rs.Status.Replicas, ptr.Deref(rs.Spec.Replicas, 0)))
			if rs.Spec.Template.Labels["tier"] == "gold" {
				newRS = rs
			} else {
				oldRS = rs
			}
		}
		pods, _ := cluster.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=api"})
		return newRS.Status.Replicas == 1 && oldRS.Status.Replicas == 4 && len(pods.Items) == 5, strings.Join(states, ", ")
	})

	// netguard's view follows the API server's by a moment: the real
	// update comes once a dry run is denied with the stalled counts.
	mustDenyNarrowing(t, ns, 5)
	fresh, err := cluster.Client.CoreV1().Services(ns).Get(ctx, "api", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fresh.Spec.Selector = map[string]string{"app": "api", "tier": "gold"}
	_, err = cluster.Client.CoreV1().Services(ns).Update(ctx, fresh, metav1.UpdateOptions{})
	if !apierrors.IsInvalid(err) {
		t.Fatalf("narrowing the selector mid-rollout: err = %v, want a denial", err)
	}
	msg := err.Error()
	newHash, oldHash := newRS.Labels["pod-template-hash"], oldRS.Labels["pod-template-hash"]
	for _, want := range []string{
		fmt.Sprintf("1 of 5 pods of Deployment %s/api", ns),
		"revision " + newHash,
		fmt.Sprintf("4 pods of revision %s lack tier=gold", oldHash),
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("denial %q does not say %q", msg, want)
		}
	}
	t.Logf("denied: %s", msg)

	// With no Service write, api-stable now routes to the old revision only:
	// the live coverage check reports it once the state has settled.
	var events []string
	framework.Eventually(t, time.Minute, "the live check's Event on Service api-stable", func() (bool, string) {
		list, err := cluster.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=api-stable"})
		if err != nil {
			return false, err.Error()
		}
		events = nil
		for _, e := range list.Items {
			events = append(events, e.Type+" "+e.Reason+": "+e.Message)
		}
		return len(events) > 0, fmt.Sprint(events)
	})
	want := fmt.Sprintf("Warning SelectorMatchesPartialRollout: selector matches 4 of 5 pods of Deployment %s/api (only revision %s; 1 pod of revision %s lacks track=stable)", ns, oldHash, newHash)
	if len(events) != 1 || !strings.HasPrefix(events[0], want) {
		t.Errorf("Events on api-stable = %q, want one starting %q", events, want)
	}
	t.Logf("stalled rollout, no Service write: %s", events[0])
}

// apiDeployment is Deployment api of ns: replicas pause pods labelled
// template, selected by app=api, rolled out one extra pod at a time and
// none unavailable.
func apiDeployment(ns string, replicas int32, template map[string]string) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "api"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "api"}},
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType, RollingUpdate: &appsv1.RollingUpdateDeployment{
				MaxSurge: ptr.To(intstr.FromInt32(1)), MaxUnavailable: ptr.To(intstr.FromInt32(0)),
			}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: template},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "api", Image: node.PauseImage, ImagePullPolicy: corev1.PullNever}}},
			},
		},
	}
}

// rollOutGold starts rolling Deployment api of ns out to pods labelled
// app=api, tier=gold that never become ready: the rollout stalls with its
// first new pod.
func rollOutGold(ctx context.Context, ns string) error {
	return updateDeployment(ctx, ns, "api", func(d *appsv1.Deployment) {
		d.Spec.Template.Labels = map[string]string{"app": "api", "tier": "gold"}
		d.Spec.Template.Spec.Containers[0].ReadinessProbe = &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(9)}},
			PeriodSeconds: 1,
		}
	})
}

func updateDeployment(ctx context.Context, ns, name string, change func(*appsv1.Deployment)) error {
	// The Deployment controller writes the object too (its status).
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		d, err := cluster.Client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		change(d)
		_, err = cluster.Client.AppsV1().Deployments(ns).Update(ctx, d, metav1.UpdateOptions{})
		return err
	})
}

// testFaults: with netguard scaled to zero pods and Services are still
// created (the chart's failure policies are Ignore); a netguard pod killed
// during a burst of pod creations loses no pod and half-patches none.
func testFaults(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, "faults", optedIn)
	// A patch of the scale subresource, as kubectl scale sends: an update
	// would carry the resourceVersion read and fail with a conflict when
	// the Deployment controller wrote the status in between.
	scale := func(n int32) {
		t.Helper()
		patch := fmt.Sprintf(`{"spec":{"replicas":%d}}`, n)
		if err := cluster.Client.AppsV1().RESTClient().Patch(types.MergePatchType).Namespace(node.NetguardNamespace).
			Resource("deployments").Name(node.NetguardRelease).SubResource("scale").Body([]byte(patch)).Do(ctx).Error(); err != nil {
			t.Fatalf("scaling netguard to %d: %v", n, err)
		}
	}
	scale(0)
	t.Cleanup(func() {
		scale(2)
		if err := cluster.WaitNetguard(context.Background()); err != nil {
			t.Error(err)
		}
	})
	// Not one netguard pod left, terminating ones included.
	if err := cluster.WaitRolledOut(ctx, node.NetguardNamespace, node.NetguardRelease); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "while-down"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: node.PauseImage, ImagePullPolicy: corev1.PullNever}}},
	}
	got, err := cluster.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("pod creation with netguard at zero replicas: %v", err)
	}
	if got.Annotations[podpolicy.AnnotationStatus] != "" {
		t.Fatal("a pod was mutated with no netguard running")
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "while-down"},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "x", "pod-template-hash": "abc"}, Ports: []corev1.ServicePort{{Port: 80}}},
	}
	if _, err := cluster.Client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("Service creation with netguard down, failurePolicy Ignore: %v", err)
	}
	t.Log("netguard at zero replicas: pod created unmutated, Service admitted unchecked (failurePolicy Ignore)")

	scale(2)
	if err := cluster.WaitNetguard(ctx); err != nil {
		t.Fatal(err)
	}
	netguards := readyPods(t, node.NetguardNamespace, "app.kubernetes.io/name=netguard", 2)

	// A burst of creations from 6 clients; one netguard pod is killed in the
	// middle of it.
	const total, clients = 60, 6
	var wg sync.WaitGroup
	errs := make(chan error, total)
	next := make(chan int, total)
	for i := range total {
		next <- i
	}
	close(next)
	killed := make(chan struct{})
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if i == total/3 {
					close(killed)
				}
				p := &corev1.Pod{
					ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("burst-%02d", i)},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: node.PauseImage, ImagePullPolicy: corev1.PullNever}}},
				}
				_, err := cluster.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
				errs <- err
			}
		}()
	}
	<-killed
	if err := cluster.KillContainer(ctx, node.NetguardNamespace, netguards[0].Name, "netguard"); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("pod creation failed during the burst: %v", err)
		}
	}
	list, err := cluster.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mutated, untouched := 0, 0
	for _, p := range list.Items {
		if !strings.HasPrefix(p.Name, "burst-") {
			continue
		}
		switch st := p.Annotations[podpolicy.AnnotationStatus]; {
		case st == "" && p.Spec.DNSConfig == nil && p.Spec.DNSPolicy == corev1.DNSClusterFirst:
			untouched++
		case st != "" && wholePatch(p):
			mutated++
		default:
			t.Errorf("pod %s is half-patched: status %q, dnsPolicy %s, dnsConfig %+v", p.Name, st, p.Spec.DNSPolicy, p.Spec.DNSConfig)
		}
	}
	if mutated+untouched != total {
		t.Errorf("%d of %d pods exist after the burst", mutated+untouched, total)
	}
	t.Logf("netguard pod %s killed mid-burst: %d pods created, %d mutated, %d unmutated, 0 lost, none half-patched", netguards[0].Name, total, mutated, untouched)
}

// wholePatch reports whether a pod netguard marked carries all of what its
// status says it applied.
func wholePatch(p corev1.Pod) bool {
	var st struct {
		Applied []string `json:"applied"`
	}
	if json.Unmarshal([]byte(p.Annotations[podpolicy.AnnotationStatus]), &st) != nil || p.Spec.DNSConfig == nil {
		return false
	}
	has := func(name string) bool {
		return slices.ContainsFunc(p.Spec.DNSConfig.Options, func(o corev1.PodDNSConfigOption) bool { return o.Name == name })
	}
	for _, a := range st.Applied {
		switch a {
		case "dns-options":
			if !has("single-request-reopen") {
				return false
			}
		case "ndots":
			if !has("ndots") {
				return false
			}
		case "search-scrub":
			if p.Spec.DNSPolicy != corev1.DNSNone || len(p.Spec.DNSConfig.Nameservers) == 0 {
				return false
			}
		}
	}
	return len(st.Applied) > 0
}

// testUninstall: after helm uninstall no webhook configuration is left,
// nor any of the chart's cert-manager objects; what stays is what
// docs/install.md says stays (the Secrets cert-manager wrote), and pods are
// created as before. It comes last: netguard stays uninstalled.
func testUninstall(t *testing.T) {
	ctx := context.Background()
	if err := cluster.HelmUninstall(ctx); err != nil {
		t.Fatal(err)
	}
	checkUninstalled(t)
	ns := newNamespace(t, "uninstalled", optedIn)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "after-uninstall"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: node.PauseImage, ImagePullPolicy: corev1.PullNever}}},
	}
	if _, err := cluster.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("pod creation after helm uninstall: %v", err)
	}
	readyPods(t, ns, "", 1)
}
