// Benchmarks of the Service selector guard: the latency of one check
// against a cache of 10k and 100k pods, and the heap each cached pod costs
// in the lean store against a plain store of full Pods.
//
//	go test ./test/bench -run '^$' -bench 'Selector' -benchtime 3000x
//
// Figures are reported as custom metrics (p50-ns, p99-ns, B/pod, ratios);
// each ratio compares against a baseline measured in the same run.
package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/netguard-io/netguard/clusterview"
	"github.com/netguard-io/netguard/config"
	"github.com/netguard-io/netguard/policies/selectorguard"
	"github.com/netguard-io/netguard/webhook/services"
)

// The incident's Service update, as selectors.
var (
	oldSelector = map[string]string{"app.kubernetes.io/name": "loki", "app.kubernetes.io/component": "distributor"}
	newSelector = map[string]string{"app.kubernetes.io/name": "loki", "app.kubernetes.io/component": "distributor", "gossip_ring_member": "true"}
)

// world is a synthetic cluster in the production stores: every object went
// through the production transform and indexes.
type world struct {
	stores clusterview.Stores
	view   *clusterview.View
	pods   int
}

type worldBuilder struct {
	s   clusterview.Stores
	uid int
	n   int
}

func (w *worldBuilder) nextUID() types.UID {
	w.uid++
	return types.UID(fmt.Sprintf("00000000-0000-4000-8000-%012d", w.uid))
}

func add(store toolscache.Indexer, transform toolscache.TransformFunc, obj any) {
	lean, err := transform(obj)
	if err != nil {
		panic(err)
	}
	if err := store.Add(lean); err != nil {
		panic(err)
	}
}

func ownedBy(apiVersion, kind, name string, uid types.UID) []metav1.OwnerReference {
	return []metav1.OwnerReference{{APIVersion: apiVersion, Kind: kind, Name: name, UID: uid, Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}
}

func podLabels(ns, name, component string, extra ...string) map[string]string {
	l := map[string]string{
		"app.kubernetes.io/name":      name,
		"app.kubernetes.io/instance":  ns,
		"app.kubernetes.io/component": component,
		"app.kubernetes.io/part-of":   "memberlist",
		"app.kubernetes.io/version":   "3.2.1",
	}
	for i := 0; i+1 < len(extra); i += 2 {
		l[extra[i]] = extra[i+1]
	}
	return l
}

// deployment adds a Deployment and, per revision, a ReplicaSet with its
// pods. revisions maps hash to pod count; labels are the pods' labels
// without the hash; the last revision's labels are the template's.
func (w *worldBuilder) deployment(ns, name string, labels []map[string]string, hashes []string, counts []int) {
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: w.nextUID(), Generation: int64(len(hashes))},
		Spec:       appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels[len(labels)-1]}}},
		Status:     appsv1.DeploymentStatus{ObservedGeneration: int64(len(hashes))},
	}
	add(w.s.Deployments, clusterview.TransformDeployment, d)
	for i, hash := range hashes {
		l := with(labels[i], "pod-template-hash", hash)
		rs := &appsv1.ReplicaSet{
			ObjectMeta: metav1.ObjectMeta{
				Namespace: ns, Name: name + "-" + hash, UID: w.nextUID(), Labels: l,
				Annotations:     map[string]string{"deployment.kubernetes.io/revision": strconv.Itoa(i + 1)},
				OwnerReferences: ownedBy("apps/v1", "Deployment", name, d.UID),
			},
			Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To(int32(counts[i])), Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: l}}},
		}
		add(w.s.ReplicaSets, clusterview.TransformReplicaSet, rs)
		for p := range counts[i] {
			add(w.s.Pods, clusterview.TransformPod, &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{
					Namespace: ns, Name: fmt.Sprintf("%s-%05d", rs.Name, p), UID: w.nextUID(), ResourceVersion: "1",
					Labels: l, OwnerReferences: ownedBy("apps/v1", "ReplicaSet", rs.Name, rs.UID),
				},
				Spec:   corev1.PodSpec{NodeName: "node", Containers: []corev1.Container{{Name: "app", Image: "img"}}},
				Status: corev1.PodStatus{Phase: corev1.PodRunning},
			})
			w.n++
		}
	}
}

func with(base map[string]string, kv ...string) map[string]string {
	m := make(map[string]string, len(base)+len(kv)/2)
	for k, v := range base {
		m[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// buildWorld makes a cluster of about pods pods: namespace loki holds the
// incident (Deployment distributor rolling 124 pods of 5b6c4d over to 16
// of 7d9f8c) and a few other workloads; the rest are 50-pod Deployments,
// a fifth of them mid-rollout. Spread puts them in namespaces of 500 pods;
// dense puts them all in loki, so the Service's own namespace is as big as
// the cluster.
func buildWorld(pods int, dense bool) *world {
	w := &worldBuilder{s: clusterview.NewStores(false)}
	old := podLabels("loki", "loki", "distributor")
	w.deployment("loki", "distributor", []map[string]string{old, with(old, "gossip_ring_member", "true")}, []string{"5b6c4d", "7d9f8c"}, []int{124, 16})
	w.deployment("loki", "querier", []map[string]string{podLabels("loki", "loki", "querier")}, []string{"6c7d8e"}, []int{50})
	w.deployment("loki", "query-frontend", []map[string]string{podLabels("loki", "loki", "query-frontend")}, []string{"4a5b6c"}, []int{10})
	for i := 0; w.n < pods; i++ {
		ns := fmt.Sprintf("team-%04d", i/10)
		if dense {
			ns = "loki"
		}
		app := fmt.Sprintf("app-%04d", i)
		l := podLabels(ns, app, "web")
		if i%5 == 0 {
			w.deployment(ns, app, []map[string]string{l, with(l, "tier", "canary")}, []string{"aaaaaa", "bbbbbb"}, []int{40, 10})
		} else {
			w.deployment(ns, app, []map[string]string{l}, []string{"cccccc"}, []int{50})
		}
	}
	return &world{stores: w.s, view: clusterview.NewView(w.s), pods: w.n}
}

var (
	worldsMu sync.Mutex
	worlds   = map[string]*world{}
)

func cachedWorld(pods int, dense bool) *world {
	worldsMu.Lock()
	defer worldsMu.Unlock()
	key := fmt.Sprintf("%d/%v", pods, dense)
	if w, ok := worlds[key]; ok {
		return w
	}
	w := buildWorld(pods, dense)
	worlds[key] = w
	return w
}

func service(sel map[string]string) *corev1.Service {
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "loki", Name: "distributor"},
		Spec:       corev1.ServiceSpec{Selector: sel},
	}
}

// scanView is the baseline: the same rules over a view without indexes,
// which reads every pod of the cluster on each check.
type scanView struct{ s clusterview.Stores }

func (v scanView) Workloads(namespace string, selectors ...map[string]string) []selectorguard.Workload {
	type key struct{ kind, name string }
	byOwner := map[key]*selectorguard.Workload{}
	involved := map[key]bool{}
	var order []key
	for _, obj := range v.s.Pods.List() {
		p := obj.(*clusterview.Pod)
		if p.Namespace != namespace {
			continue
		}
		ref := p.Controller()
		if ref == nil {
			continue
		}
		k, rev := key{ref.Kind, ref.Name}, ""
		if ref.Kind == "ReplicaSet" {
			if o, ok, _ := v.s.ReplicaSets.GetByKey(namespace + "/" + ref.Name); ok {
				if top := metav1.GetControllerOfNoCopy(o.(*appsv1.ReplicaSet)); top != nil {
					k = key{top.Kind, top.Name}
				}
			}
			rev = p.Labels()["pod-template-hash"]
		}
		w := byOwner[k]
		if w == nil {
			w = &selectorguard.Workload{Kind: selectorguard.Kind(k.kind), Namespace: namespace, Name: k.name}
			if d, ok, _ := v.s.Deployments.GetByKey(namespace + "/" + k.name); ok && k.kind == "Deployment" {
				w.TemplateLabels = d.(*appsv1.Deployment).Spec.Template.Labels
			}
			byOwner[k] = w
			order = append(order, k)
		}
		w.Pods = append(w.Pods, selectorguard.PodInfo{Name: p.Name, Labels: p.Labels(), Revision: rev})
		for _, sel := range selectors {
			if selectorguard.Matches(sel, p.Labels()) {
				involved[k] = true
			}
		}
	}
	var out []selectorguard.Workload
	for _, k := range order {
		w := byOwner[k]
		for _, sel := range selectors {
			if involved[k] || (w.TemplateLabels != nil && selectorguard.Matches(sel, w.TemplateLabels)) {
				out = append(out, *w)
				break
			}
		}
	}
	return out
}

// samples are per-call timings: wall clock, and the CPU time of the
// calling thread, which leaves out the time the thread waited for a CPU
// (the benchmark machine is shared, so the wall-clock tail mostly measures
// the neighbours).
type samples struct{ wall, cpu []time.Duration }

// time runs f once and records it. The caller must have locked its OS
// thread.
func (s *samples) time(f func()) {
	c0, t0 := threadCPU(), time.Now()
	f()
	s.wall = append(s.wall, time.Since(t0))
	s.cpu = append(s.cpu, threadCPU()-c0)
}

func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		panic(err)
	}
	return time.Duration(ts.Nano())
}

// report reports the p50 and p99 of the samples and returns the CPU p50.
func (s *samples) report(b *testing.B, prefix string) time.Duration {
	pct := func(ds []time.Duration) (time.Duration, time.Duration) {
		slices.Sort(ds)
		return ds[len(ds)/2], ds[min(len(ds)-1, len(ds)*99/100)]
	}
	p50, p99 := pct(s.wall)
	c50, c99 := pct(s.cpu)
	b.ReportMetric(float64(p50.Nanoseconds()), prefix+"p50-ns")
	b.ReportMetric(float64(p99.Nanoseconds()), prefix+"p99-ns")
	b.ReportMetric(float64(c50.Nanoseconds()), prefix+"cpu-p50-ns")
	b.ReportMetric(float64(c99.Nanoseconds()), prefix+"cpu-p99-ns")
	return c50
}

// BenchmarkSelectorCheck times the guard's lookup and rules for the
// incident's Service update (view.Workloads plus Check, which is what a
// review costs beyond decoding) against the indexed view, and against the
// scanning baseline for a fixed number of rounds in the same run.
func BenchmarkSelectorCheck(b *testing.B) {
	for _, tc := range []struct {
		pods  int
		dense bool
	}{{10_000, false}, {100_000, false}, {100_000, true}} {
		layout := "spread"
		if tc.dense {
			layout = "one-namespace"
		}
		b.Run(fmt.Sprintf("pods=%d/%s", tc.pods, layout), func(b *testing.B) {
			w := cachedWorld(tc.pods, tc.dense)
			newSvc, oldSvc := service(newSelector), service(oldSelector)
			check := func(v selectorguard.View) []selectorguard.Finding { return selectorguard.Check(newSvc, oldSvc, v) }
			if f := check(w.view); len(f) != 1 || f[0].Rule != selectorguard.RuleDropsRevision || f[0].Matched != 16 || f[0].Total != 140 {
				b.Fatalf("indexed view: unexpected findings %+v", f)
			}
			if f := check(scanView{w.stores}); len(f) != 1 || f[0].Matched != 16 || f[0].Total != 140 {
				b.Fatalf("baseline view: unexpected findings %+v", f)
			}
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			var indexed samples
			for b.Loop() {
				indexed.time(func() { check(w.view) })
			}
			b.StopTimer()
			cpu := indexed.report(b, "")

			var scan samples
			for range 30 {
				scan.time(func() { check(scanView{w.stores}) })
			}
			scanCPU := scan.report(b, "scan-")
			b.ReportMetric(float64(scanCPU)/float64(cpu), "scan/indexed-cpu-p50-x")
			b.ReportMetric(float64(w.pods), "cached-pods")
		})
	}
}

// BenchmarkCoverageCheck times the live coverage check's judgement of the
// incident's Service (selectorguard.PartialRollout on the view) against the
// guard's admission check of the same Service (Check), interleaved in the
// same run: the live check's cost per re-judged Service relative to a
// review's. With the check bounded to maxChecksPerSecond judgements a
// second, its CPU share at that size is about p50 × rate.
func BenchmarkCoverageCheck(b *testing.B) {
	const maxChecksPerSecond = 100 // the default of serviceGuard.coverage
	for _, pods := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("pods=%d", pods), func(b *testing.B) {
			w := cachedWorld(pods, false)
			svc := service(newSelector)
			if f, ok := selectorguard.PartialRollout(svc, w.view); !ok || f.Matched != 16 || f.Total != 140 {
				b.Fatalf("live check: unexpected finding %+v (partial %v)", f, ok)
			}
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			var live, admission samples
			for b.Loop() {
				live.time(func() { selectorguard.PartialRollout(svc, w.view) })
				admission.time(func() { selectorguard.Check(svc, nil, w.view) })
			}
			b.StopTimer()
			liveCPU := live.report(b, "live-")
			admissionCPU := admission.report(b, "admission-")
			b.ReportMetric(float64(liveCPU)/float64(admissionCPU), "live/admission-cpu-p50-x")
			b.ReportMetric(float64(liveCPU)*maxChecksPerSecond/1e9*100, "cpu-%-at-max-rate")
		})
	}
}

// BenchmarkSelectorReview times a whole admission review of the incident's
// Service update through controller-runtime's webhook HTTP handler: decode,
// lookup, rules, denial, encode.
func BenchmarkSelectorReview(b *testing.B) {
	for _, pods := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("pods=%d", pods), func(b *testing.B) {
			w := cachedWorld(pods, false)
			nsStore := w.stores.Namespaces
			add(nsStore, clusterview.TransformNamespace, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "loki", Labels: map[string]string{"netguard.io/inject": "enabled"}}})
			cfg, err := config.Parse(nil)
			if err != nil {
				b.Fatal(err)
			}
			h := &webhook.Admission{Handler: services.NewServiceHandler(w.view, cfg)}
			raw := func(o any) k8sruntime.RawExtension {
				j, _ := json.Marshal(o)
				return k8sruntime.RawExtension{Raw: j}
			}
			body, _ := json.Marshal(admissionv1.AdmissionReview{
				TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
				Request: &admissionv1.AdmissionRequest{
					UID: "1", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Service"}, Operation: admissionv1.Update,
					Namespace: "loki", Name: "distributor", Object: raw(service(newSelector)), OldObject: raw(service(oldSelector)),
				},
			})
			serve := func() *admissionv1.AdmissionResponse {
				rec := httptest.NewRecorder()
				req := httptest.NewRequest(http.MethodPost, services.ServicePath, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				h.ServeHTTP(rec, req)
				var review admissionv1.AdmissionReview
				_ = json.Unmarshal(rec.Body.Bytes(), &review)
				return review.Response
			}
			if resp := serve(); resp == nil || resp.Allowed || resp.Result.Code != http.StatusUnprocessableEntity {
				b.Fatalf("review was not denied: %+v", resp)
			}
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			var reviews samples
			for b.Loop() {
				reviews.time(func() { serve() })
			}
			b.StopTimer()
			reviews.report(b, "")
		})
	}
}

// BenchmarkSelectorCacheMemory measures the live heap that n cached pods
// hold: the lean store (TransformPod, namespace + controller + label
// indexes, as Setup builds it) against a plain informer store of the same
// pods, unmodified, with only the namespace index (what a default informer
// keeps). Pods are decoded from testdata/selector-pod.json one by one, as
// an informer decodes them, with their names, pod-template-hash and owner
// varied per workload.
func BenchmarkSelectorCacheMemory(b *testing.B) {
	const n = 10_000
	tmpl, err := os.ReadFile("testdata/selector-pod.json")
	if err != nil {
		b.Fatal(err)
	}
	// decode returns pod i: 50 pods per ReplicaSet, 10 ReplicaSets per
	// namespace.
	decode := func(i int) *corev1.Pod {
		data := bytes.ReplaceAll(tmpl, []byte("x7k2p"), []byte(fmt.Sprintf("%05d", i)))
		data = bytes.ReplaceAll(data, []byte("5b6c4d8f7c"), []byte(fmt.Sprintf("%010d", i/50)))
		data = bytes.ReplaceAll(data, []byte(`"namespace": "loki"`), []byte(fmt.Sprintf(`"namespace": "ns-%d"`, i/500)))
		var p corev1.Pod
		if err := json.Unmarshal(data, &p); err != nil {
			b.Fatal(err)
		}
		return &p
	}
	measure := func(newStore func() toolscache.Indexer, transform toolscache.TransformFunc) float64 {
		runtime.GC()
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		store := newStore()
		for i := range n {
			add(store, transform, decode(i))
		}
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(store)
		return float64(after.HeapAlloc-before.HeapAlloc) / n
	}
	lean := func() toolscache.Indexer { return clusterview.NewStores(false).Pods }
	full := func() toolscache.Indexer {
		return toolscache.NewIndexer(toolscache.DeletionHandlingMetaNamespaceKeyFunc, toolscache.Indexers{toolscache.NamespaceIndex: toolscache.MetaNamespaceIndexFunc})
	}
	identity := func(obj any) (any, error) { return obj, nil }
	// One measurement per run, whatever -benchtime says: the loop only
	// satisfies the benchmark harness.
	leanPer := measure(lean, clusterview.TransformPod)
	fullPer := measure(full, identity)
	for b.Loop() {
	}
	b.ReportMetric(leanPer, "lean-B/pod")
	b.ReportMetric(fullPer, "full-B/pod")
	b.ReportMetric(fullPer/leanPer, "full/lean-x")
}
