package selectorguard

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/netguard-io/netguard/config"
)

// fuzzLabels builds a small label map from fuzz bytes over a tiny
// alphabet, so selectors and pods collide often.
func fuzzLabels(b []byte) map[string]string {
	keys := []string{"app", "tier", LabelPodTemplateHash, LabelControllerRevisionHash, LabelRolloutsPodTemplateHash, "statefulset.kubernetes.io/pod-name", "zone"}
	vals := []string{"a", "b", "api", "1", ""}
	m := map[string]string{}
	for i := 0; i+1 < len(b) && i < 8; i += 2 {
		m[keys[int(b[i])%len(keys)]] = vals[int(b[i+1])%len(vals)]
	}
	return m
}

// FuzzCheck: whatever the Services, workloads and pods, the rules never
// panic, every finding names a rule and has a message, a denying finding
// denies in enforce mode unless the Service carries the override, and
// warn and dry-run modes never deny.
func FuzzCheck(f *testing.F) {
	f.Add([]byte{0, 2, 1, 1}, []byte{0, 2}, []byte{0, 2, 2, 0, 0, 3, 2, 1}, uint8(5), uint8(3), false, false)
	f.Add([]byte{2, 3}, []byte{}, []byte{0, 2}, uint8(1), uint8(0), true, true)
	f.Fuzz(func(t *testing.T, sel, oldSel, pods []byte, nOld, nNew uint8, kindSTS, override bool) {
		kind := KindDeployment
		if kindSTS {
			kind = KindStatefulSet
		}
		base := fuzzLabels(pods)
		w := Workload{Kind: kind, Namespace: "ns", Name: "w", TemplateLabels: fuzzLabels(sel), TemplateRevision: "new"}
		for i := 0; i < int(nOld%40)+int(nNew%40); i++ {
			l := map[string]string{}
			for k, v := range base {
				l[k] = v
			}
			rev := "old"
			if i >= int(nOld%40) {
				rev = "new"
				for k, v := range w.TemplateLabels {
					l[k] = v
				}
			}
			w.Pods = append(w.Pods, PodInfo{Name: fmt.Sprintf("p%d", i), Labels: l, Revision: rev, Terminating: i%7 == 6})
		}
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "s"}, Spec: corev1.ServiceSpec{Selector: fuzzLabels(sel)}}
		if override {
			svc.Annotations = map[string]string{AllowSubsetAnnotation: "fuzz"}
		}
		var old *corev1.Service
		if len(oldSel) > 0 {
			old = svc.DeepCopy()
			old.Spec.Selector = fuzzLabels(oldSel)
		}
		findings := Check(svc, old, StaticView{w})
		deny := false
		for _, fd := range findings {
			if fd.Rule == "" || fd.Message == "" || fd.Field == nil {
				t.Fatalf("incomplete finding: %+v", fd)
			}
			deny = deny || fd.Deny
		}
		enforce := Decide(findings, config.GuardModeEnforce, svc)
		if deny && !override && (enforce.Allowed || enforce.Err == nil) {
			t.Fatalf("a denying finding was admitted in enforce mode: %+v", findings)
		}
		if !enforce.Allowed && (override || !deny) {
			t.Fatalf("denied without a denying finding or despite the override: %+v", findings)
		}
		for _, mode := range []config.GuardMode{config.GuardModeWarn, config.GuardModeDryRun} {
			if d := Decide(findings, mode, svc); !d.Allowed {
				t.Fatalf("%s mode denied: %+v", mode, findings)
			}
		}
	})
}
