package conflicts

import (
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
)

func lbService(name string, class *string, managed ...metav1.ManagedFieldsEntry) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: name, ManagedFields: managed},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: class},
	}
}

func clusterIPService(name string) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: name}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP}}
}

func TestStaticHints(t *testing.T) {
	two := []string{"cloud-controller-manager", "metallb-controller"}
	tests := map[string]struct {
		svc         *corev1.Service
		controllers []string
		want        []string // substrings of the one hint; nil: no hint
	}{
		"LoadBalancer without class, two controllers": {svc: lbService("gw", nil), controllers: two,
			want: []string{"web/gw", "spec.loadBalancerClass", "2 load-balancer controllers", "cloud-controller-manager and metallb-controller"}},
		"empty class counts as none":                 {svc: lbService("gw", ptr.To("")), controllers: two, want: []string{"web/gw"}},
		"LoadBalancer without class, one controller": {svc: lbService("gw", nil), controllers: two[:1]},
		"LoadBalancer without class, no controller":  {svc: lbService("gw", nil)},
		"LoadBalancer with a class":                  {svc: lbService("gw", ptr.To("metallb.io/metallb")), controllers: two},
		"ClusterIP":                                  {svc: clusterIPService("gw"), controllers: two},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			checkHints(t, StaticHints(tc.svc, tc.controllers), tc.want)
		})
	}
}

func TestOfflineHints(t *testing.T) {
	tests := map[string]struct {
		svc  *corev1.Service
		want []string
	}{
		"LoadBalancer without class": {svc: lbService("gw", nil), want: []string{"web/gw", "spec.loadBalancerClass", "more than one"}},
		"LoadBalancer with a class":  {svc: lbService("gw", ptr.To("service.k8s.aws/nlb"))},
		"ClusterIP":                  {svc: clusterIPService("gw")},
		"NodePort":                   {svc: &corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort}}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			checkHints(t, OfflineHints(tc.svc), tc.want)
		})
	}
}

func checkHints(t *testing.T, got []string, want []string) {
	t.Helper()
	if want == nil {
		if len(got) != 0 {
			t.Errorf("hints = %q, want none", got)
		}
		return
	}
	if len(got) != 1 {
		t.Fatalf("hints = %q, want one", got)
	}
	for _, w := range want {
		if !strings.Contains(got[0], w) {
			t.Errorf("hint %q lacks %q", got[0], w)
		}
	}
}

func TestLoadBalancerControllers(t *testing.T) {
	clk := clocktesting.NewFakeClock(t0)
	c := NewLoadBalancerControllers(clk, time.Hour)
	status := func(manager string) metav1.ManagedFieldsEntry { return mf(manager, "status", 1, lbStatus) }
	spec := mf("kubectl", "", 0, created)

	// Listed at start-up: the owners of existing Services' status.
	a1 := lbService("a1", nil, spec, status("cloud"))
	a2 := lbService("a2", nil, spec, status("cloud"))
	classed := lbService("c", ptr.To("service.k8s.aws/nlb"), spec, status("aws-lb"))
	notLB := clusterIPService("x")
	notLB.ManagedFields = []metav1.ManagedFieldsEntry{spec, status("odd")}
	for _, s := range []*corev1.Service{a1, a2, classed, notLB} {
		c.Observe(nil, s)
	}
	check := func(step string, want ...string) {
		t.Helper()
		if got := c.List(); !reflect.DeepEqual(got, want) && !(len(got) == 0 && len(want) == 0) {
			t.Errorf("%s: controllers = %v, want %v", step, got, want)
		}
	}
	check("listed", "cloud")

	// A second controller takes a1's status, and keeps it.
	a1b := lbService("a1", nil, spec, status("metallb"))
	c.Observe(a1, a1b)
	check("after metallb took a1", "cloud", "metallb")

	// a1 is deleted: metallb owns nothing now, but was seen within the TTL.
	c.Observe(a1b, nil)
	clk.Step(59 * time.Minute)
	check("metallb seen 59m ago", "cloud", "metallb")
	clk.Step(time.Minute)
	check("metallb seen 1h ago", "cloud")

	// cloud still owns a2's status: it stays, however long ago it was seen.
	clk.Step(24 * time.Hour)
	check("a day later", "cloud")
	c.Observe(a2, nil)
	clk.Step(2 * time.Hour)
	check("all deleted")
}

func TestLoadBalancerControllersBounded(t *testing.T) {
	clk := clocktesting.NewFakeClock(t0)
	c := NewLoadBalancerControllers(clk, time.Hour)
	for i := range 100 {
		clk.Step(time.Second)
		m := "lb-" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		s := lbService("s", nil, mf(m, "status", 1, lbStatus))
		c.Observe(nil, s)
		c.Observe(s, nil)
	}
	if n := len(c.List()); n != maxControllers {
		t.Errorf("%d controllers remembered, want %d", n, maxControllers)
	}
}
