package selectorguard

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestPartialRollout(t *testing.T) {
	job := workload(KindJob, "migrate", nil, "", revision{hash: "", n: 3, labels: with(appLabels, "job", "x")})
	statefulPod := workload(KindStatefulSet, "ingester", appLabels, "a",
		revision{hash: "a", n: 2, labels: with(appLabels, "statefulset.kubernetes.io/pod-name", "ingester-0")},
		revision{hash: "b", n: 2, labels: with(appLabels, "statefulset.kubernetes.io/pod-name", "ingester-1")})
	cases := map[string]struct {
		svc      *corev1.Service
		view     StaticView
		wantRule RuleID // "" = not partial
		wantText []string
	}{
		"the incident: new pods only": {
			svc: service(ringLabels), view: StaticView{incident}, wantRule: RuleRevisionSubset,
			wantText: []string{"selector matches 16 of 140 pods of Deployment loki/distributor", "only revision 7d9f8c", "124 pods of revision 5b6c4d lack gossip_ring_member=true"},
		},
		"the rollout is over":              {svc: service(ringLabels), view: StaticView{steady}},
		"every revision matched":           {svc: service(appLabels), view: StaticView{incident}},
		"template only, no pod rolled yet": {svc: service(ringLabels), view: StaticView{reverse}, wantRule: RuleTemplateOnly, wantText: []string{"none of the 140 pods"}},
		"the owner accepted a subset": {
			svc: service(ringLabels, AllowSubsetAnnotation, "canary"), view: StaticView{incident},
		},
		"a revision key mid rollout follows the old pods": {
			svc: service(with(appLabels, "pod-template-hash", "5b6c4d")), view: StaticView{incident}, wantRule: RuleRevisionSubset,
			wantText: []string{"124 of 140 pods", "only revision 5b6c4d"},
		},
		"a revision key at rest":       {svc: service(with(ringLabels, "pod-template-hash", "7d9f8c")), view: StaticView{steady}},
		"no selector":                  {svc: service(nil), view: StaticView{incident}},
		"a Job's pods do not roll":     {svc: service(with(appLabels, "job", "x")), view: StaticView{job}},
		"a selector naming one pod":    {svc: service(with(appLabels, "statefulset.kubernetes.io/pod-name", "ingester-0")), view: StaticView{statefulPod}},
		"another namespace's workload": {svc: func() *corev1.Service { s := service(ringLabels); s.Namespace = "other"; return s }(), view: StaticView{incident}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			f, partial := PartialRollout(tc.svc, tc.view)
			if partial != (tc.wantRule != "") || f.Rule != tc.wantRule {
				t.Fatalf("PartialRollout = %v %q (%s), want rule %q", partial, f.Rule, f.Message, tc.wantRule)
			}
			for _, want := range tc.wantText {
				if !strings.Contains(f.Message, want) {
					t.Errorf("message %q lacks %q", f.Message, want)
				}
			}
		})
	}
}

// TestPartialRolloutSaysWhatAdmissionSays: for a selector admission would
// deny as a partial rollout, the live check gives the same message.
func TestPartialRolloutSaysWhatAdmissionSays(t *testing.T) {
	svc := service(ringLabels)
	live, ok := PartialRollout(svc, StaticView{incident})
	if !ok {
		t.Fatal("not partial")
	}
	for _, f := range Check(svc, nil, StaticView{incident}) {
		if f.Rule == live.Rule {
			if f.Message != live.Message {
				t.Errorf("live %q, admission %q", live.Message, f.Message)
			}
			return
		}
	}
	t.Fatalf("admission has no %s finding", live.Rule)
}
