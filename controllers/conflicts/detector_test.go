package conflicts

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	"github.com/netguard-io/netguard/config"
	"github.com/netguard-io/netguard/controllers/conflicts/conflictstest"
)

func parseConfig(t *testing.T, yaml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// testDetector is a detector on a fake clock whose Events land in rec,
// acting on every namespace but "ignored".
func testDetector(t *testing.T, yaml string) (*Detector, *clocktesting.FakeClock, *events.FakeRecorder) {
	t.Helper()
	clk := clocktesting.NewFakeClock(conflictstest.T0)
	rec := events.NewFakeRecorder(100)
	d := New(parseConfig(t, yaml), clk, rec, logr.Discard())
	d.selected = func(ns string) bool { return ns != "ignored" }
	return d, clk, rec
}

// value reads a counter or gauge.
func value(m prometheus.Metric) float64 {
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		panic(err)
	}
	if c := out.GetCounter(); c != nil {
		return c.GetValue()
	}
	return out.GetGauge().GetValue()
}

func drain(rec *events.FakeRecorder) []string {
	var out []string
	for {
		select {
		case e := <-rec.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func TestDetectorReportsConflict(t *testing.T) {
	d, clk, rec := testDetector(t, "conflicts:\n  flips: 4\n  window: 1m\n")
	conflictsBefore := value(conflictsTotal)
	takeoversBefore := value(takeoversTotal)

	last := conflictstest.Fight(d.EventHandler(), clk, "web", "gateway", 1, 3)
	if evs := drain(rec); len(evs) != 0 || d.Warnings("web", "gateway") != nil {
		t.Fatalf("reported after 3 takeovers, threshold 4: %q", evs)
	}
	if got := value(servicesInConflict); got != 0 {
		t.Fatalf("netguard_services_in_conflict = %v after 3 takeovers", got)
	}

	last = conflictstest.Fight(d.EventHandler(), clk, "web", "gateway", 4, 1)
	evs := drain(rec)
	if len(evs) != 1 || !strings.HasPrefix(evs[0], "Warning ControllersConflict field managers lb-a and lb-b") {
		t.Fatalf("Events at the threshold = %q, want one ControllersConflict", evs)
	}
	if got := value(conflictsTotal) - conflictsBefore; got != 1 {
		t.Errorf("netguard_service_conflicts_total grew by %v, want 1", got)
	}
	if got := value(takeoversTotal) - takeoversBefore; got != 4 {
		t.Errorf("netguard_service_field_takeovers_total grew by %v, want 4", got)
	}
	if got := value(servicesInConflict); got != 1 {
		t.Errorf("netguard_services_in_conflict = %v, want 1", got)
	}
	w := d.Warnings("web", "gateway")
	if len(w) != 1 || !strings.Contains(w[0], "lb-a and lb-b") || !strings.Contains(w[0], "status.loadBalancer.ingress") {
		t.Errorf("Warnings = %q", w)
	}
	if d.Warnings("web", "other") != nil {
		t.Error("warning for a Service not in conflict")
	}

	// The fight goes on within the window: no Event per write.
	conflictstest.Fight(d.EventHandler(), clk, "web", "gateway", 5, 10)
	if evs := drain(rec); len(evs) != 0 {
		t.Errorf("Events while the conflict goes on = %q, want none within the window", evs)
	}
	_ = last

	// A quiet window later the conflict is over.
	clk.Step(time.Minute)
	d.expire()
	if d.Warnings("web", "gateway") != nil {
		t.Error("warning after the conflict ended")
	}
	if got := value(servicesInConflict); got != 0 {
		t.Errorf("netguard_services_in_conflict = %v after the conflict ended", got)
	}
	if got := value(servicesTracked); got != 0 {
		t.Errorf("netguard_service_conflict_tracked_services = %v after a quiet window", got)
	}
}

func TestDetectorIgnoresUnselectedNamespaces(t *testing.T) {
	d, clk, rec := testDetector(t, "conflicts:\n  flips: 2\n")
	conflictstest.Fight(d.EventHandler(), clk, "ignored", "gateway", 1, 10)
	if evs := drain(rec); len(evs) != 0 || d.tracker.Len() != 0 {
		t.Errorf("Events %q, %d tracked for a namespace netguard does not act on", evs, d.tracker.Len())
	}
}

func TestDetectorForgetsDeletedService(t *testing.T) {
	d, clk, _ := testDetector(t, "conflicts:\n  flips: 2\n")
	last := conflictstest.Fight(d.EventHandler(), clk, "web", "gateway", 1, 2)
	if d.Warnings("web", "gateway") == nil {
		t.Fatal("no conflict after 2 takeovers, threshold 2")
	}
	d.onDelete(last)
	if d.Warnings("web", "gateway") != nil || d.tracker.Len() != 0 {
		t.Error("deleted Service still tracked")
	}
}

func TestReview(t *testing.T) {
	tests := map[string]struct {
		mode config.ConflictMode
		// lbControllers write the status of default-class LoadBalancer
		// Services elsewhere in the cluster.
		lbControllers []string
		// inConflict: lb-a and lb-b fight over web/gateway first.
		inConflict bool
		old, svc   *corev1.Service
		wantDenied bool
		want       []string // substrings, one per warning
	}{
		"create, two load-balancer controllers": {
			lbControllers: []string{"cloud", "metallb"},
			svc:           conflictstest.Version("web", "new", 1, "", ""),
			want:          []string{"spec.loadBalancerClass"},
		},
		"create with a class": {
			lbControllers: []string{"cloud", "metallb"},
			svc: func() *corev1.Service {
				s := conflictstest.Version("web", "new", 1, "", "")
				s.Spec.LoadBalancerClass = ptr.To("metallb.io/metallb")
				return s
			}(),
		},
		"create in a namespace netguard does not act on": {
			lbControllers: []string{"cloud", "metallb"},
			svc:           conflictstest.Version("ignored", "new", 1, "", ""),
		},
		"create, one load-balancer controller": {
			lbControllers: []string{"cloud"},
			svc:           conflictstest.Version("web", "new", 1, "", ""),
		},
		"update of an existing LoadBalancer Service gets no hint": {
			lbControllers: []string{"cloud", "metallb"},
			old:           conflictstest.Version("web", "new", 1, "", ""),
			svc:           conflictstest.Version("web", "new", 2, "lb-a", ""),
		},
		"update of a Service in conflict, warn mode": {
			mode: config.ConflictModeWarn, inConflict: true,
			old:  conflictstest.Version("web", "gateway", 100, "lb-a", "lb-a"),
			svc:  conflictstest.Version("web", "gateway", 101, "lb-b", "lb-a"),
			want: []string{"lb-a and lb-b keep taking fields"},
		},
		"deny mode denies a takeover": {
			mode: config.ConflictModeDeny, inConflict: true,
			old:        conflictstest.Version("web", "gateway", 100, "lb-a", "lb-a"),
			svc:        conflictstest.Version("web", "gateway", 101, "lb-b", "lb-a"),
			wantDenied: true,
			want:       []string{"lb-a and lb-b keep taking fields"},
		},
		"deny mode admits a write that takes nothing": {
			mode: config.ConflictModeDeny, inConflict: true,
			old:  conflictstest.Version("web", "gateway", 100, "lb-a", "lb-a"),
			svc:  conflictstest.Version("web", "gateway", 101, "lb-a", "lb-a"),
			want: []string{"lb-a and lb-b keep taking fields"},
		},
		"deny mode admits writes to a Service not in conflict": {
			mode: config.ConflictModeDeny,
			old:  conflictstest.Version("web", "gateway", 100, "lb-a", "lb-a"),
			svc:  conflictstest.Version("web", "gateway", 101, "lb-b", "lb-a"),
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			mode := tc.mode
			if mode == "" {
				mode = config.ConflictModeWarn
			}
			d, clk, _ := testDetector(t, "conflicts:\n  flips: 2\n  mode: "+string(mode)+"\n")
			for i, m := range tc.lbControllers {
				s := conflictstest.Version("elsewhere", "lb-"+strconv.Itoa(i), 1, "", m)
				d.onAdd(s)
			}
			if tc.inConflict {
				conflictstest.Fight(d.EventHandler(), clk, "web", "gateway", 1, 3)
			}
			warnings, err := d.Review(tc.old, tc.svc)
			if (err != nil) != tc.wantDenied {
				t.Fatalf("denied = %v (%v), want %v", err != nil, err, tc.wantDenied)
			}
			if err != nil {
				if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), `"lb-b" may not take fields from "lb-a"`) ||
					!strings.Contains(err.Error(), "metadata.annotations[example.com/owner]") {
					t.Errorf("denial = %v", err)
				}
			}
			if len(warnings) != len(tc.want) {
				t.Fatalf("warnings = %q, want %d", warnings, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.Contains(warnings[i], w) {
					t.Errorf("warning %q lacks %q", warnings[i], w)
				}
			}
		})
	}
}

func TestDisabledDetector(t *testing.T) {
	for name, d := range map[string]*Detector{"nil": nil, "zero": {}} {
		t.Run(name, func(t *testing.T) {
			if w := d.Warnings("web", "gateway"); w != nil {
				t.Errorf("Warnings = %q", w)
			}
			if w, err := d.Review(nil, conflictstest.Version("web", "gateway", 1, "", "")); w != nil || err != nil {
				t.Errorf("Review = %q, %v", w, err)
			}
			if d.LoadBalancerControllers() != nil || d.Ready(nil) != nil {
				t.Error("a disabled detector reports something")
			}
		})
	}
}

func TestNamespaceSelected(t *testing.T) {
	optIn := config.NamespacesConfig{Mode: config.NamespaceModeOptIn, Self: "netguard"}
	wide := config.NamespacesConfig{Mode: config.NamespaceModeClusterWide, Self: "netguard", Exclude: []string{"legacy"}}
	tests := map[string]struct {
		ns    config.NamespacesConfig
		name  string
		label string
		want  bool
	}{
		"opt-in, labelled":           {ns: optIn, name: "web", label: "enabled", want: true},
		"opt-in, unlabelled":         {ns: optIn, name: "web"},
		"cluster-wide, unlabelled":   {ns: wide, name: "web", want: true},
		"cluster-wide, opted out":    {ns: wide, name: "web", label: "disabled"},
		"cluster-wide, excluded":     {ns: wide, name: "legacy"},
		"kube-system, even labelled": {ns: optIn, name: "kube-system", label: "enabled"},
		"netguard's own":             {ns: wide, name: "netguard"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := tc.ns.Selects(tc.name, tc.label); got != tc.want {
				t.Errorf("Selects = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestTransformServiceKeepsWhatTheDetectorReads(t *testing.T) {
	in := conflictstest.Version("web", "gateway", 7, "lb-a", "lb-a")
	in.Spec.LoadBalancerClass = ptr.To("x")
	in.Spec.Selector = map[string]string{"app": "gateway"}
	in.Annotations = map[string]string{"big": strings.Repeat("x", 1000)}
	out, err := TransformService(in)
	if err != nil {
		t.Fatal(err)
	}
	s := out.(*corev1.Service)
	if s.Name != "gateway" || s.Namespace != "web" || s.UID != in.UID || s.ResourceVersion != "7" ||
		len(s.ManagedFields) != 3 || *s.Spec.LoadBalancerClass != "x" || s.Spec.Type != corev1.ServiceTypeLoadBalancer {
		t.Errorf("transform lost something: %+v", s)
	}
	if s.Annotations != nil || s.Spec.Selector != nil {
		t.Errorf("transform kept what the detector does not read: %+v", s)
	}
}

func TestConflictsSettings(t *testing.T) {
	tests := map[string]struct {
		yaml    string
		wantErr string
	}{
		"defaults":          {yaml: ""},
		"all set":           {yaml: "conflicts:\n  enabled: false\n  flips: 3\n  window: 90s\n  maxTracked: 5\n  mode: deny\n"},
		"unparsable window": {yaml: "conflicts:\n  window: five minutes\n", wantErr: "conflicts.window"},
		"zero window":       {yaml: "conflicts:\n  window: 0s\n", wantErr: "conflicts.window"},
		"window too long":   {yaml: "conflicts:\n  window: 48h\n", wantErr: "conflicts.window"},
		"one flip":          {yaml: "conflicts:\n  flips: 1\n", wantErr: "conflicts.flips"},
		"no tracking":       {yaml: "conflicts:\n  maxTracked: 0\n", wantErr: "conflicts.maxTracked"},
		"unknown mode":      {yaml: "conflicts:\n  mode: block\n", wantErr: "conflicts.mode"},
		"unknown field":     {yaml: "conflicts:\n  flip: 3\n", wantErr: "conflicts.flip"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cfg, err := config.Parse([]byte(tc.yaml))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if tc.yaml == "" {
					c := cfg.Conflicts
					if !c.Enabled || c.Flips != 6 || c.WindowDuration() != 5*time.Minute || c.MaxTracked != 10000 || c.Mode != config.ConflictModeWarn {
						t.Errorf("defaults = %+v", c)
					}
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error = %v, want one naming %s", err, tc.wantErr)
			}
		})
	}
}
