package scale

import (
	"context"
	"runtime"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/netguard-io/netguard/audit"
	"github.com/netguard-io/netguard/config"
	"github.com/netguard-io/netguard/test/framework"
)

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
		stores := framework.LeanView(ctx, t, h.cs)
		cfg, requests := framework.RecordRequests(h.cp.Config)
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
		held, err := stores.Pods.ByIndex(toolscache.NamespaceIndex, optedIn)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Scanned.PodsJudged != len(held) {
			t.Fatalf("pods=%d: judged %d pods, want the %d of %s", n, rep.Scanned.PodsJudged, len(held), optedIn)
		}
		t.Logf("pods=%d: one Reports scan: %s; %d list requests; %d pods judged; %s; %.1f MiB allocated",
			n, requests, rep.Scanned.ListRequests, rep.Scanned.PodsJudged, took.Round(time.Millisecond),
			float64(after.TotalAlloc-before.TotalAlloc)/(1<<20))
	}
}
