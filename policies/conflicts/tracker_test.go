package conflicts

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
)

var svcKey = types.NamespacedName{Namespace: "web", Name: "gateway"}

func takeover(by, from string) []Takeover {
	return []Takeover{{Manager: by, From: []string{from}, Fields: []string{"status.loadBalancer.ingress"}}}
}

func TestTrackerThreshold(t *testing.T) {
	tests := map[string]struct {
		settings Settings
		every    time.Duration // between takeovers
		count    int           // takeovers, alternating lb-a and lb-b
		// wantStart is the 1-based takeover that starts the conflict; 0
		// means none does.
		wantStart int
	}{
		"fast fight starts at the threshold":         {settings: Settings{Flips: 6, Window: 5 * time.Minute, MaxTracked: 10}, every: 10 * time.Second, count: 12, wantStart: 6},
		"threshold spanning exactly the window":      {settings: Settings{Flips: 6, Window: 5 * time.Minute, MaxTracked: 10}, every: time.Minute, count: 12, wantStart: 6},
		"takeovers slower than the window allows":    {settings: Settings{Flips: 6, Window: 5 * time.Minute, MaxTracked: 10}, every: 61 * time.Second, count: 30},
		"takeovers slower than the window, each one": {settings: Settings{Flips: 2, Window: time.Minute, MaxTracked: 10}, every: time.Minute, count: 10},
		"two takeovers can be enough":                {settings: Settings{Flips: 2, Window: time.Minute, MaxTracked: 10}, every: time.Second, count: 2, wantStart: 2},
		"fewer takeovers than the threshold":         {settings: Settings{Flips: 6, Window: 5 * time.Minute, MaxTracked: 10}, every: time.Second, count: 5},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			clk := clocktesting.NewFakeClock(t0)
			tr := NewTracker(tc.settings, clk)
			started := 0
			for i := 1; i <= tc.count; i++ {
				by, from := "lb-a", "lb-b"
				if i%2 == 0 {
					by, from = from, by
				}
				out := tr.Observe(svcKey, takeover(by, from))
				if out.Started {
					if started != 0 {
						t.Fatalf("conflict started twice, at takeovers %d and %d", started, i)
					}
					started = i
				}
				if _, in := tr.Conflict(svcKey); in != (started != 0) || out.InConflict != in {
					t.Fatalf("after takeover %d: Conflict() = %v, Outcome.InConflict = %v, started at %d", i, in, out.InConflict, started)
				}
				clk.Step(tc.every)
			}
			if started != tc.wantStart {
				t.Errorf("conflict started at takeover %d, want %d", started, tc.wantStart)
			}
		})
	}
}

// TestSingleManagerNeverConflicts runs the managedFields of a Service that
// one controller rewrites again and again through Takeovers and a Tracker.
func TestSingleManagerNeverConflicts(t *testing.T) {
	clk := clocktesting.NewFakeClock(t0)
	tr := NewTracker(Settings{Flips: 2, Window: time.Hour, MaxTracked: 10}, clk)
	writes := make([]string, 500)
	for i := range writes {
		writes[i] = "lb-a"
	}
	h := history(writes)
	for i := 1; i < len(h); i++ {
		if to := Takeovers(h[i-1], h[i]); len(to) > 0 {
			t.Fatalf("write %d: takeovers %+v", i, to)
		}
		tr.Observe(svcKey, Takeovers(h[i-1], h[i]))
		clk.Step(time.Second)
	}
	if tr.Len() != 0 || tr.InConflict() != 0 {
		t.Errorf("one manager left %d tracked, %d in conflict", tr.Len(), tr.InConflict())
	}
}

// TestTwoManagersConflict is the same with two controllers alternating.
func TestTwoManagersConflict(t *testing.T) {
	clk := clocktesting.NewFakeClock(t0)
	tr := NewTracker(Settings{Flips: 6, Window: 5 * time.Minute, MaxTracked: 10}, clk)
	h := history([]string{"lb-a", "lb-b", "lb-a", "lb-b", "lb-a", "lb-b", "lb-a", "lb-b"})
	var started []int
	var c Conflict
	for i := 1; i < len(h); i++ {
		clk.Step(10 * time.Second)
		out := tr.Observe(svcKey, Takeovers(h[i-1], h[i]))
		if out.Started {
			started = append(started, i)
			c = out.Conflict
		}
	}
	// Each write takes the annotation and the status back: one takeover.
	if !reflect.DeepEqual(started, []int{6}) {
		t.Fatalf("conflict started at writes %v, want [6]", started)
	}
	want := Conflict{
		Service:   svcKey,
		Managers:  []string{"lb-a", "lb-b"},
		Fields:    []string{"metadata.annotations", "metadata.annotations[example.com/owner]", "status.loadBalancer.ingress"},
		Takeovers: 6,
		Since:     t0.Add(10 * time.Second),
		Window:    5 * time.Minute,
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("conflict = %+v\nwant %+v", c, want)
	}
	msg := c.Message()
	for _, s := range []string{"lb-a and lb-b", "web/gateway", "status.loadBalancer.ingress", "metadata.annotations[example.com/owner]", "6 takeovers"} {
		if !strings.Contains(msg, s) {
			t.Errorf("message %q lacks %q", msg, s)
		}
	}
}

func TestTrackerConflictEnds(t *testing.T) {
	clk := clocktesting.NewFakeClock(t0)
	window := 5 * time.Minute
	tr := NewTracker(Settings{Flips: 2, Window: window, MaxTracked: 10}, clk)
	tr.Observe(svcKey, takeover("lb-a", "lb-b"))
	if out := tr.Observe(svcKey, takeover("lb-b", "lb-a")); !out.Started || !out.Report {
		t.Fatalf("second takeover: %+v, want a started, reported conflict", out)
	}

	// The fight goes on, slower: reported again once per window.
	var reports int
	for range 10 {
		clk.Step(time.Minute)
		out := tr.Observe(svcKey, takeover("lb-a", "lb-b"))
		if !out.InConflict || out.Started {
			t.Fatalf("ongoing fight: %+v", out)
		}
		if out.Report {
			reports++
		}
	}
	if reports != 2 {
		t.Errorf("10 minutes of fighting with a 5m window reported %d times, want 2", reports)
	}

	// It stops: still in conflict until a whole window has passed.
	clk.Step(window - time.Second)
	if _, in := tr.Conflict(svcKey); !in {
		t.Fatal("conflict over before a window without takeovers")
	}
	if ended := tr.Expire(); len(ended) != 0 {
		t.Fatalf("expired early: %+v", ended)
	}
	clk.Step(time.Second)
	if _, in := tr.Conflict(svcKey); in {
		t.Fatal("still in conflict after a window without takeovers")
	}
	if tr.InConflict() != 1 {
		t.Fatalf("InConflict before Expire = %d, want 1", tr.InConflict())
	}
	ended := tr.Expire()
	if len(ended) != 1 || ended[0].Service != svcKey || ended[0].Evicted {
		t.Fatalf("Expire = %+v, want the conflict of %s", ended, svcKey)
	}
	if tr.Len() != 0 || tr.InConflict() != 0 {
		t.Errorf("after Expire: %d tracked, %d in conflict", tr.Len(), tr.InConflict())
	}

	// A new fight starts from zero.
	if out := tr.Observe(svcKey, takeover("lb-a", "lb-b")); out.InConflict {
		t.Errorf("one takeover after the conflict ended: %+v", out)
	}
}

func TestTrackerStaleEntryEndsOnObserve(t *testing.T) {
	clk := clocktesting.NewFakeClock(t0)
	tr := NewTracker(Settings{Flips: 2, Window: time.Minute, MaxTracked: 10}, clk)
	tr.Observe(svcKey, takeover("lb-a", "lb-b"))
	tr.Observe(svcKey, takeover("lb-b", "lb-a"))
	clk.Step(2 * time.Minute)
	out := tr.Observe(svcKey, takeover("lb-a", "lb-b"))
	if out.InConflict || len(out.Ended) != 1 || out.Ended[0].Evicted {
		t.Fatalf("takeover after a quiet window: %+v, want the old conflict ended and no new one", out)
	}
	if tr.InConflict() != 0 || tr.Len() != 1 {
		t.Errorf("%d in conflict, %d tracked; want 0, 1", tr.InConflict(), tr.Len())
	}
}

// TestTrackerMemoryBounded: entries expire after the window, and never
// more than MaxTracked are kept.
func TestTrackerMemoryBounded(t *testing.T) {
	clk := clocktesting.NewFakeClock(t0)
	tr := NewTracker(Settings{Flips: 2, Window: time.Minute, MaxTracked: 100}, clk)
	key := func(i int) types.NamespacedName {
		return types.NamespacedName{Namespace: "ns", Name: fmt.Sprintf("svc-%d", i)}
	}

	// Two in conflict, touched first: the oldest, so the first evicted.
	for i := range 2 {
		tr.Observe(key(i), takeover("lb-a", "lb-b"))
		tr.Observe(key(i), takeover("lb-b", "lb-a"))
	}
	var evicted []Ended
	for i := 2; i < 1000; i++ {
		clk.Step(time.Millisecond)
		out := tr.Observe(key(i), takeover("lb-a", "lb-b"))
		evicted = append(evicted, out.Ended...)
		if tr.Len() > 100 {
			t.Fatalf("%d tracked, MaxTracked 100", tr.Len())
		}
	}
	if tr.Len() != 100 {
		t.Errorf("%d tracked, want 100", tr.Len())
	}
	if len(evicted) != 2 || !evicted[0].Evicted || evicted[0].Service != key(0) || evicted[1].Service != key(1) {
		t.Errorf("evicted conflicts = %+v, want svc-0 and svc-1", evicted)
	}
	if tr.InConflict() != 0 {
		t.Errorf("InConflict = %d after evicting both conflicts", tr.InConflict())
	}
	if _, ok := tr.Conflict(key(999)); ok {
		t.Error("one takeover made a conflict")
	}

	// Recently touched ones survive; after a window, all are gone.
	clk.Step(30 * time.Second)
	tr.Observe(key(500), takeover("lb-b", "lb-a"))
	clk.Step(45 * time.Second)
	tr.Expire()
	if tr.Len() != 1 {
		t.Errorf("%d tracked 75s later, want 1 (svc-500, touched 45s ago)", tr.Len())
	}
	clk.Step(15 * time.Second)
	tr.Expire()
	if tr.Len() != 0 {
		t.Errorf("%d tracked after a quiet window, want 0", tr.Len())
	}
}

func TestTrackerBoundsNamesPerService(t *testing.T) {
	clk := clocktesting.NewFakeClock(t0)
	tr := NewTracker(Settings{Flips: 2, Window: time.Minute, MaxTracked: 10}, clk)
	var out Outcome
	for i := range 50 {
		clk.Step(time.Millisecond)
		out = tr.Observe(svcKey, []Takeover{{Manager: fmt.Sprintf("m-%02d", i), From: []string{fmt.Sprintf("m-%02d", i+1)}, Fields: []string{fmt.Sprintf("f-%02d", i)}}})
	}
	if len(out.Conflict.Managers) != maxNames || len(out.Conflict.Fields) != maxNames {
		t.Fatalf("kept %d managers, %d fields; want %d of each", len(out.Conflict.Managers), len(out.Conflict.Fields), maxNames)
	}
	if out.Conflict.Fields[maxNames-1] != "f-49" || out.Conflict.Managers[maxNames-1] != "m-50" {
		t.Errorf("did not keep the most recent names: %v %v", out.Conflict.Managers, out.Conflict.Fields)
	}
	if msg := out.Conflict.Message(); !strings.Contains(msg, "and 3 more") {
		t.Errorf("message does not shorten the lists: %q", msg)
	}
}

func TestTrackerForget(t *testing.T) {
	clk := clocktesting.NewFakeClock(t0)
	tr := NewTracker(Settings{Flips: 2, Window: time.Minute, MaxTracked: 10}, clk)
	tr.Observe(svcKey, takeover("lb-a", "lb-b"))
	tr.Observe(svcKey, takeover("lb-b", "lb-a"))
	if _, was := tr.Forget(svcKey); !was {
		t.Fatal("Forget: the Service was in conflict")
	}
	if _, was := tr.Forget(svcKey); was || tr.Len() != 0 || tr.InConflict() != 0 {
		t.Errorf("after Forget: %d tracked, %d in conflict", tr.Len(), tr.InConflict())
	}
}
