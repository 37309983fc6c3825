package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/netguard-io/netguard/policies/podpolicy"
	"github.com/netguard-io/netguard/test/framework"
	"github.com/netguard-io/netguard/test/node"
)

// Rates of the admission load kept up while netguard's pods are replaced.
const (
	podsPerSecond           = 20
	serviceUpdatesPerSecond = 5
)

// testRollingNetguard: netguard's own pods are replaced three ways while
// pods are created at 20/s in an opted-in namespace and Service updates
// that netguard must deny are tried at 5/s (with as many that it must
// admit): helm upgrade to another image and other settings, a drain of
// netguard's pods (evictions under its PodDisruptionBudget) and helm
// rollback. With failurePolicy Ignore a request no replica answers is
// admitted unchecked, so every pod must carry netguard.io/status, every
// narrowing update must be denied, and the API server must count no
// fail-open call to netguard's webhooks.
func testRollingNetguard(t *testing.T) {
	ctx := context.Background()
	svcNS := newNamespace(t, "rolling-services", optedIn)
	stalledRollout(t, svcNS)
	// runs checks that both netguard pods run image.
	runs := func(t *testing.T, image string) {
		t.Helper()
		for _, p := range readyPods(t, node.NetguardNamespace, "app.kubernetes.io/name=netguard", 2) {
			if got := p.Spec.Containers[0].Image; got != image {
				t.Errorf("netguard pod %s runs %s, want %s", p.Name, got, image)
			}
		}
	}

	t.Run("helm upgrade", func(t *testing.T) {
		next := cluster.NetguardNextImage[strings.LastIndex(cluster.NetguardNextImage, ":")+1:]
		underLoad(t, "rolling-upgrade", svcNS, func() error {
			return cluster.Helm(ctx, "upgrade", "--set-string", "image.tag="+next, "--set", "dns.ndots=3", "--wait", "--timeout", "180s")
		})
		ns := newNamespace(t, "rolled-upgrade", optedIn)
		if ndots := podNdots(t, ns, "app", "glibc"); ndots != "3" {
			t.Errorf("ndots after the upgrade = %q, want 3", ndots)
		}
		runs(t, cluster.NetguardNextImage)
	})
	t.Run("drain", func(t *testing.T) {
		underLoad(t, "rolling-drain", svcNS, drainNetguard(t))
	})
	t.Run("helm rollback", func(t *testing.T) {
		underLoad(t, "rolling-rollback", svcNS, func() error { return cluster.HelmRollback(ctx) })
		ns := newNamespace(t, "rolled-back", optedIn)
		if ndots := podNdots(t, ns, "app", "glibc"); ndots != "2" {
			t.Errorf("ndots after the rollback = %q, want 2", ndots)
		}
		runs(t, cluster.NetguardImage)
	})
}

// stalledRollout makes Deployment api in ns stall mid-rollout (2 pods of the
// first revision, 1 never-ready pod of the second, tier=gold) behind
// Service api, which selects both: narrowing its selector to tier=gold is
// what netguard denies.
func stalledRollout(t *testing.T, ns string) {
	t.Helper()
	ctx := context.Background()
	labels := map[string]string{"app": "api"}
	d := apiDeployment(ns, 2, labels)
	if _, err := cluster.Client.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "api"},
		Spec:       corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Port: 80}}},
	}
	if _, err := cluster.Client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	readyPods(t, ns, "app=api", 2)
	if err := rollOutGold(ctx, ns); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, time.Minute, "the rollout stalled with both revisions running", func() (bool, string) {
		pods, err := cluster.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=api"})
		if err != nil {
			return false, err.Error()
		}
		gold := 0
		for _, p := range pods.Items {
			if p.Labels["tier"] == "gold" {
				gold++
			}
		}
		return len(pods.Items) == 3 && gold == 1, fmt.Sprintf("%d pods, %d of the new revision", len(pods.Items), gold)
	})
	mustDenyNarrowing(t, ns, 3)
}

// mustDenyNarrowing waits until narrowing Service api's selector to the
// stalled revision (a dry run) is denied by netguard with the counts of
// the stalled rollout, its new pod among pods in all (netguard's view of
// the cluster follows the API server's by a moment).
func mustDenyNarrowing(t *testing.T, ns string, pods int) {
	t.Helper()
	ctx := context.Background()
	counts := fmt.Sprintf("1 of %d pods of Deployment %s/api", pods, ns)
	framework.Eventually(t, 30*time.Second, "netguard's denial of narrowing Service api to one revision", func() (bool, string) {
		svc, err := cluster.Client.CoreV1().Services(ns).Get(ctx, "api", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		svc.Spec.Selector = map[string]string{"app": "api", "tier": "gold"}
		_, err = cluster.Client.CoreV1().Services(ns).Update(ctx, svc, metav1.UpdateOptions{DryRun: []string{metav1.DryRunAll}})
		return deniedNarrowing(err, ns) && strings.Contains(err.Error(), counts), fmt.Sprintf("err = %v, want a denial saying %q", err, counts)
	})
}

// deniedNarrowing reports whether err is netguard's denial of narrowing
// Service api in ns to one revision of Deployment api.
func deniedNarrowing(err error, ns string) bool {
	return apierrors.IsInvalid(err) && strings.Contains(err.Error(), "of Deployment "+ns+"/api")
}

// load is what the API server answered while underLoad ran.
type load struct {
	mu             sync.Mutex
	created        int
	podErrors      []string
	denied         int
	admitted       int // narrowing updates the API server let through
	serviceUpdates int // updates netguard must admit, admitted
	serviceErrors  []string
}

func (l *load) note(errs *[]string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	*errs = append(*errs, err.Error())
}

// underLoad runs replace (which replaces netguard's pods) while creating
// pods at podsPerSecond in a new opted-in namespace podNS and updating
// Service api of svcNS at serviceUpdatesPerSecond, and keeps the load up
// until no pod of netguard's previous revision is left. Then it checks and
// logs what the API server answered.
func underLoad(t *testing.T, podNS, svcNS string, replace func() error) {
	t.Helper()
	ctx := context.Background()
	podNS = newNamespace(t, podNS, optedIn)
	failOpenBefore := webhookFailOpens(t)
	client := loadClient(t)
	var l load
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); createPods(ctx, client, podNS, stop, &l) }()
	go func() { defer wg.Done(); updateService(ctx, client, svcNS, stop, &l) }()

	began := time.Now()
	err := replace()
	replaced := time.Since(began)
	if err == nil {
		err = cluster.WaitRolledOut(ctx, node.NetguardNamespace, node.NetguardRelease)
	}
	// The old pods are gone; a little more load on the new ones alone.
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}

	pods, err := cluster.Client.CoreV1().Pods(podNS).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mutated := 0
	var unprotected []string
	for _, p := range pods.Items {
		if p.Annotations[podpolicy.AnnotationStatus] != "" && wholePatch(p) {
			mutated++
		} else {
			unprotected = append(unprotected, p.Name)
		}
	}
	failOpens := webhookFailOpens(t) - failOpenBefore
	t.Logf("%s in %s, load for %s: %d pods created, %d mutated, %d without netguard %v, %d pod create errors; "+
		"Service: %d narrowing updates denied, %d admitted, %d other updates admitted, %d errors; API server fail-open calls to netguard: %d",
		t.Name(), replaced.Round(100*time.Millisecond), time.Since(began).Round(100*time.Millisecond),
		l.created, mutated, len(unprotected), unprotected, len(l.podErrors), l.denied, l.admitted, l.serviceUpdates, len(l.serviceErrors), failOpens)
	if len(pods.Items) != l.created {
		t.Errorf("%d pods exist, %d were created", len(pods.Items), l.created)
	}
	if len(unprotected) > 0 {
		t.Errorf("%d of %d pods created while netguard's pods were replaced carry no (or a partial) netguard patch: %v", len(unprotected), len(pods.Items), unprotected)
	}
	if l.admitted > 0 {
		t.Errorf("%d Service updates netguard must deny were admitted", l.admitted)
	}
	for _, errs := range [][]string{l.podErrors, l.serviceErrors} {
		if len(errs) > 0 {
			t.Errorf("%d requests failed, the first: %s", len(errs), errs[0])
		}
	}
	if failOpens > 0 {
		t.Errorf("the API server failed open %d times calling netguard's webhooks: %q", failOpens, node.LogLines("kube-apiserver", "failing open"))
	}
	if l.created < podsPerSecond*5 || l.denied < serviceUpdatesPerSecond*5 {
		t.Errorf("the load was too thin to tell: %d pods, %d denials", l.created, l.denied)
	}
}

// loadClient is a client of its own for the load, not throttled below the
// rates it keeps.
func loadClient(t *testing.T) kubernetes.Interface {
	cfg := rest.CopyConfig(cluster.Config)
	cfg.QPS, cfg.Burst = 200, 400
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// createPods creates a pod every 1/podsPerSecond until stop, each in its
// own request so that a slow one does not slow the rate. The pods select a
// node that does not exist: they stay Pending and cost the node nothing.
func createPods(ctx context.Context, client kubernetes.Interface, ns string, stop <-chan struct{}, l *load) {
	tick := time.NewTicker(time.Second / podsPerSecond)
	defer tick.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("p%04d", i)},
				Spec: corev1.PodSpec{
					NodeSelector: map[string]string{"netguard.io/e2e": "nowhere"},
					Containers:   []corev1.Container{{Name: "app", Image: node.PauseImage, ImagePullPolicy: corev1.PullNever}},
				},
			}
			if _, err := client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
				l.note(&l.podErrors, fmt.Errorf("pod %s: %w", pod.Name, err))
				return
			}
			l.mu.Lock()
			l.created++
			l.mu.Unlock()
		}()
	}
}

// updateService, every 1/serviceUpdatesPerSecond until stop, tries to narrow
// Service api's selector to one revision (a dry run netguard must deny)
// and changes an annotation of it (an update netguard must admit).
func updateService(ctx context.Context, client kubernetes.Interface, ns string, stop <-chan struct{}, l *load) {
	tick := time.NewTicker(time.Second / serviceUpdatesPerSecond)
	defer tick.Stop()
	services := client.CoreV1().Services(ns)
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		svc, err := services.Get(ctx, "api", metav1.GetOptions{})
		if err != nil {
			l.note(&l.serviceErrors, err)
			continue
		}
		narrowed := svc.DeepCopy()
		narrowed.Spec.Selector = map[string]string{"app": "api", "tier": "gold"}
		_, err = services.Update(ctx, narrowed, metav1.UpdateOptions{DryRun: []string{metav1.DryRunAll}})
		l.mu.Lock()
		switch {
		case err == nil:
			l.admitted++
		case deniedNarrowing(err, ns):
			l.denied++
		default:
			l.serviceErrors = append(l.serviceErrors, "narrowing: "+err.Error())
		}
		l.mu.Unlock()

		metav1.SetMetaDataAnnotation(&svc.ObjectMeta, "netguard.io/e2e-update", strconv.Itoa(i))
		if _, err := services.Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
			l.note(&l.serviceErrors, fmt.Errorf("annotation: %w", err))
			continue
		}
		l.mu.Lock()
		l.serviceUpdates++
		l.mu.Unlock()
	}
}

// drainNetguard returns what `kubectl drain` does to netguard's pods on
// the node (the only one, so it is not cordoned: the replacements land on
// it): it evicts them all at once, retrying each while the
// PodDisruptionBudget refuses (429), and waits until the evicted pods are
// gone. It logs how often the budget refused.
func drainNetguard(t *testing.T) func() error {
	return func() error {
		ctx := context.Background()
		pods := readyPods(t, node.NetguardNamespace, "app.kubernetes.io/name=netguard", 2)
		var refused atomic.Int32
		errs := make(chan error, len(pods))
		for _, p := range pods {
			go func() {
				ev := &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name}}
				deadline := time.Now().Add(2 * time.Minute)
				for {
					err := cluster.Client.CoreV1().Pods(p.Namespace).EvictV1(ctx, ev)
					if err == nil {
						break
					}
					if !apierrors.IsTooManyRequests(err) || time.Now().After(deadline) {
						errs <- fmt.Errorf("evicting %s: %w", p.Name, err)
						return
					}
					refused.Add(1)
					time.Sleep(time.Second)
				}
				errs <- cluster.WaitPodsGone(ctx, p.Namespace, metav1.ListOptions{FieldSelector: "metadata.name=" + p.Name})
			}()
		}
		var err error
		for range pods {
			err = errors.Join(err, <-errs)
		}
		t.Logf("drained %d netguard pods; the PodDisruptionBudget refused %d evictions meanwhile", len(pods), refused.Load())
		return err
	}
}

// webhookFailOpens is the API server's count of calls to netguard's
// webhooks that failed and were let through (failurePolicy Ignore).
func webhookFailOpens(t *testing.T) int {
	t.Helper()
	raw, err := cluster.Client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(context.Background())
	if err != nil {
		t.Fatalf("the API server's metrics: %v", err)
	}
	total := 0
	s := bufio.NewScanner(strings.NewReader(string(raw)))
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() {
		line := s.Text()
		if !strings.HasPrefix(line, "apiserver_admission_webhook_fail_open_count{") || !strings.Contains(line, `.netguard.io"`) {
			continue
		}
		n, err := strconv.ParseFloat(line[strings.LastIndex(line, " ")+1:], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		total += int(n)
	}
	return total
}
