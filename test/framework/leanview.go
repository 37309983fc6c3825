package framework

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/netguard-io/netguard/clusterview"
)

// LeanView fills the stores of a cluster view from the cluster cs points
// at, lean, as netguard serve's informers hold them: what the live audit
// behind the Reports reads. Pods are listed page by page, so that a
// cluster of many pods is never in memory in full.
func LeanView(ctx context.Context, t testing.TB, cs kubernetes.Interface) clusterview.Stores {
	t.Helper()
	stores := clusterview.NewStores(false)
	keep := func(store toolscache.Indexer, transform toolscache.TransformFunc, list runtime.Object, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		items, err := meta.ExtractList(list)
		if err != nil {
			t.Fatal(err)
		}
		for _, obj := range items {
			lean, err := transform(obj)
			if err != nil {
				t.Fatal(err)
			}
			if err := store.Add(lean); err != nil {
				t.Fatal(err)
			}
		}
	}
	all := metav1.ListOptions{}
	nss, err := cs.CoreV1().Namespaces().List(ctx, all)
	keep(stores.Namespaces, clusterview.TransformNamespace, nss, err)
	for page := (metav1.ListOptions{Limit: 500}); ; {
		pods, err := cs.CoreV1().Pods("").List(ctx, page)
		keep(stores.Pods, clusterview.TransformPod, pods, err)
		if page.Continue = pods.Continue; page.Continue == "" {
			break
		}
	}
	svcs, err := cs.CoreV1().Services("").List(ctx, all)
	keep(stores.Services, clusterview.TransformService, svcs, err)
	rss, err := cs.AppsV1().ReplicaSets("").List(ctx, all)
	keep(stores.ReplicaSets, clusterview.TransformReplicaSet, rss, err)
	deps, err := cs.AppsV1().Deployments("").List(ctx, all)
	keep(stores.Deployments, clusterview.TransformDeployment, deps, err)
	sts, err := cs.AppsV1().StatefulSets("").List(ctx, all)
	keep(stores.StatefulSets, clusterview.TransformStatefulSet, sts, err)
	dss, err := cs.AppsV1().DaemonSets("").List(ctx, all)
	keep(stores.DaemonSets, clusterview.TransformDaemonSet, dss, err)
	return stores
}

// RequestLog records the requests of the clients made from a rest.Config
// it wraps, as "METHOD path?query".
type RequestLog struct {
	mu   sync.Mutex
	seen []string
	next http.RoundTripper
}

// RecordRequests returns a copy of cfg whose clients' requests log records.
func RecordRequests(cfg *rest.Config) (*rest.Config, *RequestLog) {
	log := &RequestLog{}
	out := rest.CopyConfig(cfg)
	out.Wrap(func(rt http.RoundTripper) http.RoundTripper { log.next = rt; return log })
	return out, log
}

// RoundTrip implements http.RoundTripper.
func (l *RequestLog) RoundTrip(r *http.Request) (*http.Response, error) {
	l.mu.Lock()
	l.seen = append(l.seen, r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery)
	l.mu.Unlock()
	return l.next.RoundTrip(r)
}

// Seen returns the requests recorded so far.
func (l *RequestLog) Seen() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.seen...)
}

// String counts the requests by method and path, the query left out.
func (l *RequestLog) String() string {
	seen := l.Seen()
	byOp := map[string]int{}
	for _, r := range seen {
		op, _, _ := strings.Cut(r, "?")
		byOp[op]++
	}
	var parts []string
	for op, n := range byOp {
		parts = append(parts, fmt.Sprintf("%d× %s", n, op))
	}
	sort.Strings(parts)
	return fmt.Sprintf("%d requests (%s)", len(seen), strings.Join(parts, ", "))
}
