package coverage

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/netguard-io/netguard/clusterview"
	"github.com/netguard-io/netguard/clusterview/viewtest"
	"github.com/netguard-io/netguard/config"
	"github.com/netguard-io/netguard/policies/selectorguard"
)

// The incident's labels: the new revision adds gossip_ring_member.
var (
	appLabels  = map[string]string{"app": "distributor"}
	ringLabels = viewtest.With(appLabels, "gossip_ring_member", "true")
)

// recorded collects the Events a test recorder was given.
type recorded struct {
	mu     sync.Mutex
	events []string // "Type Reason: note"
}

func (r *recorded) Eventf(_, _ runtime.Object, eventtype, reason, _, note string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, eventtype+" "+reason+": "+fmt.Sprintf(note, args...))
}

func (r *recorded) AnnotatedEventf(regarding, related runtime.Object, _ map[string]string, eventtype, reason, action, note string, args ...any) {
	r.Eventf(regarding, related, eventtype, reason, action, note, args...)
}

func (r *recorded) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.events
	r.events = nil
	return out
}

// coverageFixture is the incident's namespace: Deployment loki/distributor
// with 124 pods of revision 5b6c4d and 16 of 7d9f8c that carry the new
// label, and Service distributor.
type coverageFixture struct {
	c     *viewtest.Cluster
	cov   *coverage
	clock *clocktesting.FakeClock
	rec   *recorded
	key   types.NamespacedName
}

func newCoverageFixture(t *testing.T, yaml string) *coverageFixture {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	c := viewtest.New(t)
	c.Namespace("loki", map[string]string{selectorguard.InjectLabel: "enabled"}, nil)
	f := &coverageFixture{c: c, clock: clocktesting.NewFakeClock(time.Unix(1_000_000, 0)), rec: &recorded{}, key: types.NamespacedName{Namespace: "loki", Name: "distributor"}}
	f.cov = newCoverage(c.View(), c.Stores.Services, cfg, f.rec, logr.Discard(), f.clock)
	t.Cleanup(f.cov.queue.ShutDown)
	return f
}

func (f *coverageFixture) judge() { f.cov.judge(f.key) }

func (f *coverageFixture) partialGauge(t *testing.T) int {
	t.Helper()
	n := 0
	for _, st := range f.cov.states {
		if st.reported {
			n++
		}
	}
	return n
}

// TestCoverageReportsAStateThatHolds walks one rollout that goes wrong and
// is mended: one Warning when the Service has routed to part of it for the
// settle time, none for the judgements in between, one Normal when it
// routes to every revision again.
func TestCoverageReportsAStateThatHolds(t *testing.T) {
	f := newCoverageFixture(t, "serviceGuard: {coverage: {settle: 10s}}")
	c := f.c
	d := c.Deployment("loki", "distributor", ringLabels)
	old := c.ReplicaSet(d, 1, "5b6c4d", 124, appLabels)
	next := c.ReplicaSet(d, 2, "7d9f8c", 16, ringLabels)
	c.Service("loki", "distributor", ringLabels)

	for range 5 { // pod events of the rollout, each judged
		f.judge()
		f.clock.Step(time.Second)
	}
	if ev := f.rec.take(); len(ev) != 0 {
		t.Fatalf("Events before the state settled: %q", ev)
	}
	f.clock.Step(5 * time.Second)
	f.judge()
	f.judge()
	ev := f.rec.take()
	if len(ev) != 1 || !strings.HasPrefix(ev[0], "Warning "+PartialRolloutReason+": selector matches 16 of 140 pods of Deployment loki/distributor (only revision 7d9f8c") {
		t.Fatalf("Events once settled = %q, want one Warning with the counts", ev)
	}
	if n := f.partialGauge(t); n != 1 {
		t.Errorf("Services reported partial = %d", n)
	}

	// The old pods get the label (relabelled in place): covered again, but
	// not reported until that has held too.
	c.Stores.Pods.Replace(nil, "")
	c.Pods("loki", old.Name, 124, viewtest.With(ringLabels, "pod-template-hash", "5b6c4d"), viewtest.OwnedBy("apps/v1", "ReplicaSet", old.Name, old.UID))
	c.Pods("loki", next.Name, 16, viewtest.With(ringLabels, "pod-template-hash", "7d9f8c"), viewtest.OwnedBy("apps/v1", "ReplicaSet", next.Name, next.UID))
	f.judge()
	if ev := f.rec.take(); len(ev) != 0 {
		t.Fatalf("Events before the covered state settled: %q", ev)
	}
	f.clock.Step(10 * time.Second)
	f.judge()
	if ev := f.rec.take(); len(ev) != 1 || !strings.HasPrefix(ev[0], "Normal "+EndedReason) {
		t.Fatalf("Events once covered = %q, want one Normal", ev)
	}
	if n := f.partialGauge(t); n != 0 {
		t.Errorf("Services reported partial = %d after it was covered", n)
	}
}

// TestCoverageIgnoresWhatDoesNotSettle: a partial state shorter than the
// settle time, a Service in a namespace netguard does not act on, and one
// whose owner accepted a subset make no Event.
func TestCoverageIgnoresWhatDoesNotSettle(t *testing.T) {
	f := newCoverageFixture(t, "serviceGuard: {coverage: {settle: 10s}}")
	c := f.c
	c.Incident()
	c.Service("loki", "distributor", ringLabels)
	f.judge()
	f.clock.Step(5 * time.Second)
	// Back to covering every pod before the settle time.
	c.Stores.Services.Replace(nil, "")
	c.Service("loki", "distributor", appLabels)
	f.judge()
	f.clock.Step(time.Minute)
	f.judge()
	if ev := f.rec.take(); len(ev) != 0 {
		t.Fatalf("Events for a passing state: %q", ev)
	}

	c.Namespace("legacy", nil, nil) // not opted in
	d2 := c.Deployment("legacy", "api", ringLabels)
	c.ReplicaSet(d2, 1, "aaaa", 4, appLabels)
	c.ReplicaSet(d2, 2, "bbbb", 1, ringLabels)
	c.Service("legacy", "api", ringLabels)
	key := types.NamespacedName{Namespace: "legacy", Name: "api"}
	f.cov.judge(key)
	f.clock.Step(time.Minute)
	f.cov.judge(key)
	if ev := f.rec.take(); len(ev) != 0 {
		t.Fatalf("Events in a namespace netguard does not act on: %q", ev)
	}
}

// TestCoverageForgetsDeletedServices: a Service reported partial that is
// deleted leaves the count without an Event.
func TestCoverageForgetsDeletedServices(t *testing.T) {
	f := newCoverageFixture(t, "serviceGuard: {coverage: {settle: 0s}}")
	c := f.c
	c.Incident()
	c.Service("loki", "distributor", ringLabels)
	f.judge()
	if len(f.rec.take()) != 1 || f.partialGauge(t) != 1 {
		t.Fatal("not reported with settle 0s")
	}
	c.Stores.Services.Replace(nil, "")
	f.judge()
	if ev := f.rec.take(); len(ev) != 0 || len(f.cov.states) != 0 {
		t.Fatalf("after deletion: Events %q, %d states", ev, len(f.cov.states))
	}
}

// TestCoverageHandlersQueueTheServicesConcerned: a pod event queues the
// Services of its namespace whose selector matches it, once however many
// pods change in a burst.
func TestCoverageHandlersQueueTheServicesConcerned(t *testing.T) {
	f := newCoverageFixture(t, "")
	c := f.c
	c.Service("loki", "distributor", appLabels)
	c.Service("loki", "other", map[string]string{"app": "other"})
	c.Service("tempo", "distributor", appLabels)
	h := f.cov.podHandler()
	for i := range 50 {
		p, err := clusterview.TransformPod(viewtest.FullPod("loki", fmt.Sprintf("p-%d", i), c.NextUID(), viewtest.With(appLabels, "pod-template-hash", "x"), nil))
		if err != nil {
			t.Fatal(err)
		}
		h.OnAdd(p, false)
	}
	f.clock.Step(coalesce)
	deadline := time.Now().Add(5 * time.Second)
	for f.cov.queue.Len() < 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := f.cov.queue.Len(); n != 1 {
		t.Fatalf("%d Services queued, want 1 (loki/distributor, once)", n)
	}
	if key, _ := f.cov.queue.Get(); key != f.key {
		t.Errorf("queued %v", key)
	}
}

// TestCoverageIgnoresStatusUpdates: status updates of StatefulSet pods,
// whose pod-name and pod-index labels give each transform a label set of
// its own, queue no check; a changed label, a pod that starts terminating
// or a new pod after the initial list do. The initial list queues nothing:
// start queues every Service once the view has synced.
func TestCoverageIgnoresStatusUpdates(t *testing.T) {
	f := newCoverageFixture(t, "")
	c := f.c
	db := map[string]string{"app": "db"}
	c.Service("loki", "db", db)
	h := afterInitialList(f.cov.podHandler())
	// queued counts the checks queued since the last call: a marker
	// queued after them, due at the same time, says when the delaying
	// queue has moved them all.
	marker := types.NamespacedName{Namespace: "marker", Name: "marker"}
	queued := func() int {
		t.Helper()
		f.cov.enqueue(marker)
		f.clock.Step(coalesce)
		n := 0
		for seen := false; !seen || f.cov.queue.Len() > 0; {
			key, _ := f.cov.queue.Get()
			f.cov.queue.Done(key)
			if key == marker {
				seen = true
			} else {
				n++
			}
		}
		return n
	}
	pod := func(ordinal int, phase corev1.PodPhase, labels map[string]string) *clusterview.Pod {
		t.Helper()
		name := fmt.Sprintf("db-%d", ordinal)
		full := viewtest.FullPod("loki", name, types.UID(name), viewtest.With(labels,
			"statefulset.kubernetes.io/pod-name", name, "apps.kubernetes.io/pod-index", fmt.Sprint(ordinal),
			"controller-revision-hash", "db-7f9c"), viewtest.OwnedBy("apps/v1", "StatefulSet", "db", "sts-uid"))
		full.Status.Phase = phase
		lean, err := clusterview.TransformPod(full)
		if err != nil {
			t.Fatal(err)
		}
		return lean.(*clusterview.Pod)
	}
	const replicas, updates = 3, 20
	for i := range replicas {
		h.OnAdd(pod(i, corev1.PodPending, db), true)
	}
	if n := queued(); n != 0 {
		t.Fatalf("the initial list of %d pods queued %d checks, want none", replicas, n)
	}
	for range updates {
		for i := range replicas {
			h.OnUpdate(pod(i, corev1.PodPending, db), pod(i, corev1.PodRunning, db))
		}
	}
	if n := queued(); n != 0 {
		t.Fatalf("%d status updates of StatefulSet pods queued %d checks, want none", updates*replicas, n)
	}
	h.OnUpdate(pod(0, corev1.PodRunning, db), pod(0, corev1.PodRunning, viewtest.With(db, "tier", "cache")))
	if n := queued(); n != 1 {
		t.Fatalf("a relabelled pod queued %d checks, want 1", n)
	}
	h.OnUpdate(pod(1, corev1.PodRunning, db), pod(1, corev1.PodSucceeded, db))
	if n := queued(); n != 1 {
		t.Fatalf("a pod that finished queued %d checks, want 1", n)
	}
	h.OnAdd(pod(replicas, corev1.PodPending, db), false)
	if n := queued(); n != 1 {
		t.Fatalf("a new pod after the initial list queued %d checks, want 1", n)
	}
}
