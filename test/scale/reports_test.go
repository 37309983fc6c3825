package scale

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/netguard-io/netguard/audit"
	"github.com/netguard-io/netguard/clusterview"
	"github.com/netguard-io/netguard/config"
)

// requestCounter counts a client's requests by method and path, the query
// left out.
type requestCounter struct {
	mu   sync.Mutex
	byOp map[string]int
	next http.RoundTripper
}

func (c *requestCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.byOp[r.Method+" "+r.URL.Path]++
	c.mu.Unlock()
	return c.next.RoundTrip(r)
}

func (c *requestCounter) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var parts []string
	total := 0
	for op, n := range c.byOp {
		parts = append(parts, fmt.Sprintf("%d× %s", n, op))
		total += n
	}
	return fmt.Sprintf("%d requests (%s)", total, strings.Join(parts, ", "))
}

// TestReportsScanAtScale measures the scan behind the Reports (the audit
// over the view netguard serve keeps, run by the leader every
// reports.interval) against a real kube-apiserver holding N pods: the
// cluster of TestServeMemoryAtScale, 100 namespaces of 50 Deployments, one
// namespace opted in. It reports the API requests of one scan, its time,
// and the bytes it allocated; the view is filled beforehand, lean, as
// serve's informers fill it. Nothing is asserted on the figures.
//
//	REPORTS_PODS=100000 make bench-reports
func TestReportsScanAtScale(t *testing.T) {
	h := newHarness(t, "make bench-reports")
	ctx := context.Background()
	if err := h.cp.CreateClusterDNS(ctx); err != nil {
		t.Fatal(err)
	}
	c := newCluster(h.cs)
	if err := c.createWorkloads(ctx); err != nil {
		t.Fatal(err)
	}
	optedIn := "team-000"
	ns, err := h.cs.CoreV1().Namespaces().Get(ctx, optedIn, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ns.Labels = map[string]string{"netguard.io/inject": "enabled"}
	if _, err := h.cs.CoreV1().Namespaces().Update(ctx, ns, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, n := range h.sizes {
		c.grow(ctx, t, n)
		stores := leanView(ctx, t, h.cs)
		counter := &requestCounter{byOp: map[string]int{}}
		cfg := rest.CopyConfig(h.cp.Config)
		cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { counter.next = rt; return counter })
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		began := time.Now()
		rep, err := audit.Run(ctx, cfg, config.Default(), audit.Options{Live: &stores, Passes: true, Version: "bench"})
		took := time.Since(began)
		runtime.ReadMemStats(&after)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Scanned.PodsJudged != n/namespaces {
			t.Fatalf("pods=%d: judged %d pods, want the %d of %s", n, rep.Scanned.PodsJudged, n/namespaces, optedIn)
		}
		t.Logf("pods=%d: one Reports scan: %s; %d list requests; %d pods judged; %s; %.1f MiB allocated",
			n, counter, rep.Scanned.ListRequests, rep.Scanned.PodsJudged, took.Round(time.Millisecond),
			float64(after.TotalAlloc-before.TotalAlloc)/(1<<20))
	}
}

// leanView fills the stores of the view as serve's informers do, page by
// page, keeping the lean objects only.
func leanView(ctx context.Context, t *testing.T, cs kubernetes.Interface) clusterview.Stores {
	t.Helper()
	stores := clusterview.NewStores(false)
	keep := func(store toolscache.Indexer, transform toolscache.TransformFunc, obj any) {
		lean, err := transform(obj)
		if err != nil {
			t.Fatal(err)
		}
		if err := store.Add(lean); err != nil {
			t.Fatal(err)
		}
	}
	nss, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range nss.Items {
		keep(stores.Namespaces, clusterview.TransformNamespace, &nss.Items[i])
	}
	opts := metav1.ListOptions{Limit: 500}
	for {
		pods, err := cs.CoreV1().Pods("").List(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		for i := range pods.Items {
			keep(stores.Pods, clusterview.TransformPod, &pods.Items[i])
		}
		if opts.Continue = pods.Continue; opts.Continue == "" {
			break
		}
	}
	rss, err := cs.AppsV1().ReplicaSets("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range rss.Items {
		keep(stores.ReplicaSets, clusterview.TransformReplicaSet, &rss.Items[i])
	}
	deps, err := cs.AppsV1().Deployments("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range deps.Items {
		keep(stores.Deployments, clusterview.TransformDeployment, &deps.Items[i])
	}
	return stores
}
