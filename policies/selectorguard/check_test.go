package selectorguard

import (
	"fmt"
	"maps"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// revision describes n pods of one revision with the given labels.
type revision struct {
	hash   string
	n      int
	labels map[string]string
	// terminating / finished mark all n pods.
	terminating, finished bool
}

func workload(kind Kind, name string, template map[string]string, templateRev string, revs ...revision) Workload {
	w := Workload{Kind: kind, Namespace: "loki", Name: name, TemplateLabels: template, TemplateRevision: templateRev}
	for _, r := range revs {
		for i := 0; i < r.n; i++ {
			w.Pods = append(w.Pods, PodInfo{
				Name:        fmt.Sprintf("%s-%s-%d", name, r.hash, i),
				Labels:      r.labels,
				Revision:    r.hash,
				Terminating: r.terminating,
				Finished:    r.finished,
			})
		}
	}
	return w
}

func service(sel map[string]string, annotations ...string) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "loki", Name: "distributor"},
		Spec:       corev1.ServiceSpec{Selector: sel},
	}
	for i := 0; i+1 < len(annotations); i += 2 {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[annotations[i]] = annotations[i+1]
	}
	return s
}

func with(base map[string]string, kv ...string) map[string]string {
	m := maps.Clone(base)
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

var (
	appLabels  = map[string]string{"app": "distributor"}
	ringLabels = with(appLabels, "gossip_ring_member", "true")

	// The incident: 124 pods of the old revision, 16 of the new one that
	// carries the new label.
	incident = workload(KindDeployment, "distributor", ringLabels, "7d9f8c",
		revision{hash: "5b6c4d", n: 124, labels: with(appLabels, "pod-template-hash", "5b6c4d")},
		revision{hash: "7d9f8c", n: 16, labels: with(ringLabels, "pod-template-hash", "7d9f8c")},
	)
	// steady: the rollout finished, all 140 pods carry the label.
	steady = workload(KindDeployment, "distributor", ringLabels, "7d9f8c",
		revision{hash: "7d9f8c", n: 140, labels: with(ringLabels, "pod-template-hash", "7d9f8c")},
	)
	// reverse: the template has the label, no pod of it exists yet.
	reverse = workload(KindDeployment, "distributor", ringLabels, "",
		revision{hash: "5b6c4d", n: 140, labels: with(appLabels, "pod-template-hash", "5b6c4d")},
	)
)

type wantFinding struct {
	rule     RuleID
	deny     bool
	contains []string
	field    string
	matched  int
	total    int
}

func TestCheck(t *testing.T) {
	incidentMsg := "selector matches 16 of 140 pods of Deployment loki/distributor (only revision 7d9f8c; 124 pods of revision 5b6c4d lack gossip_ring_member=true): roll the label out to all pods before selecting on it, or annotate netguard.io/allow-subset-selector"
	sts := func(revs ...revision) Workload {
		return workload(KindStatefulSet, "ingester", with(appLabels, "ring", "b"), "b", revs...)
	}
	tests := map[string]struct {
		svc, old *corev1.Service
		view     StaticView
		want     []wantFinding
	}{
		"incident: new selector matches only the new revision": {
			svc:  service(ringLabels),
			view: StaticView{incident},
			want: []wantFinding{{rule: RuleRevisionSubset, deny: true, contains: []string{incidentMsg}, field: "spec.selector", matched: 16, total: 140}},
		},
		"incident as an update: the change drops the old revision": {
			svc:  service(ringLabels),
			old:  service(appLabels),
			view: StaticView{incident},
			want: []wantFinding{{rule: RuleDropsRevision, deny: true, matched: 16, total: 140, contains: []string{
				"selector matches 16 of 140 pods of Deployment loki/distributor (only revision 7d9f8c; 124 pods of revision 5b6c4d lack gossip_ring_member=true; the current selector matches 140): roll the label out",
			}}},
		},
		"old selector matched the same subset: still a split, not a drop": {
			svc: service(with(ringLabels, "tier", "write")),
			old: service(ringLabels),
			view: StaticView{workload(KindDeployment, "distributor", with(ringLabels, "tier", "write"), "7d9f8c",
				revision{hash: "5b6c4d", n: 124, labels: appLabels},
				revision{hash: "7d9f8c", n: 16, labels: with(ringLabels, "tier", "write")},
			)},
			want: []wantFinding{{rule: RuleRevisionSubset, deny: true, matched: 16, total: 140, contains: []string{"the current selector matches 16)"}}},
		},
		"steady state: every pod carries the label": {
			svc:  service(ringLabels),
			view: StaticView{steady},
		},
		"mid-rollout, selector on a label every revision carries": {
			svc:  service(appLabels),
			view: StaticView{incident},
		},
		"reverse order: template has the label, no pod does yet": {
			svc:  service(ringLabels),
			view: StaticView{reverse},
			want: []wantFinding{{rule: RuleTemplateOnly, deny: true, matched: 0, total: 140, contains: []string{
				"selector matches none of the 140 pods of Deployment loki/distributor, only its pod template (not rolled out yet; 140 pods of revision 5b6c4d lack gossip_ring_member=true)",
			}}},
		},
		"reverse order as an update": {
			svc:  service(ringLabels),
			old:  service(appLabels),
			view: StaticView{reverse},
			want: []wantFinding{{rule: RuleDropsRevision, deny: true, total: 140, contains: []string{"the current selector matches 140"}}},
		},
		"reverse order, new ReplicaSet created with no pods yet": {
			svc: service(ringLabels),
			view: StaticView{workload(KindDeployment, "distributor", ringLabels, "7d9f8c",
				revision{hash: "5b6c4d", n: 140, labels: appLabels})},
			want: []wantFinding{{rule: RuleTemplateOnly, deny: true, total: 140, contains: []string{"only its pod template (revision 7d9f8c, no pods yet; 140 pods"}}},
		},
		"template matches, workload has no pods at all": {
			svc:  service(ringLabels),
			view: StaticView{workload(KindDeployment, "distributor", ringLabels, "7d9f8c")},
		},
		"selector follows the old revision while the template drops the label": {
			svc: service(ringLabels),
			view: StaticView{workload(KindDeployment, "distributor", appLabels, "9a9a9a",
				revision{hash: "5b6c4d", n: 100, labels: ringLabels},
				revision{hash: "9a9a9a", n: 40, labels: appLabels},
			)},
			want: []wantFinding{{rule: RuleRevisionSubset, deny: true, matched: 100, total: 140, contains: []string{"the pod template being rolled out lacks it too"}}},
		},
		"pod-template-hash in the selector": {
			svc:  service(with(appLabels, "pod-template-hash", "7d9f8c")),
			view: StaticView{incident},
			want: []wantFinding{{rule: RuleRevisionKey, deny: true, field: "spec.selector[pod-template-hash]", contains: []string{"selector key pod-template-hash names a single revision"}}},
		},
		"controller-revision-hash in the selector": {
			svc:  service(with(appLabels, "controller-revision-hash", "ingester-b")),
			view: StaticView{},
			want: []wantFinding{
				{rule: RuleRevisionKey, deny: true, field: "spec.selector[controller-revision-hash]"},
				{rule: RuleMatchesNothing},
			},
		},
		"rollouts-pod-template-hash on a Service Argo does not manage": {
			svc:  service(with(appLabels, "rollouts-pod-template-hash", "abc")),
			view: StaticView{},
			want: []wantFinding{{rule: RuleRevisionKey, deny: true}, {rule: RuleMatchesNothing}},
		},
		"Argo-managed Service pinned to one Rollout revision": {
			svc: service(with(appLabels, "rollouts-pod-template-hash", "bbb"), ArgoManagedAnnotation, "distributor"),
			view: StaticView{workload(KindRollout, "distributor", appLabels, "bbb",
				revision{hash: "aaa", n: 10, labels: with(appLabels, "rollouts-pod-template-hash", "aaa")},
				revision{hash: "bbb", n: 2, labels: with(appLabels, "rollouts-pod-template-hash", "bbb")},
			)},
		},
		"Argo-managed Service, but the team's part of the selector splits revisions": {
			svc: service(with(ringLabels, "rollouts-pod-template-hash", "bbb"), ArgoManagedAnnotation, "distributor"),
			view: StaticView{workload(KindRollout, "distributor", ringLabels, "bbb",
				revision{hash: "aaa", n: 10, labels: appLabels},
				revision{hash: "bbb", n: 2, labels: ringLabels},
			)},
			want: []wantFinding{{rule: RuleRevisionSubset, deny: true, matched: 2, total: 12, contains: []string{"Rollout loki/distributor"}}},
		},
		"Argo-managed Service selecting pod-template-hash is still denied": {
			svc:  service(with(appLabels, "pod-template-hash", "7d9f8c"), ArgoManagedAnnotation, "x"),
			view: StaticView{incident},
			want: []wantFinding{{rule: RuleRevisionKey, deny: true}},
		},
		"Argo Rollouts controller moves its Service to the new revision": {
			svc:  service(with(appLabels, "rollouts-pod-template-hash", "bbb"), ArgoManagedAnnotation, "distributor"),
			old:  service(with(appLabels, "rollouts-pod-template-hash", "aaa"), ArgoManagedAnnotation, "distributor"),
			view: StaticView{workload(KindRollout, "distributor", appLabels, "bbb", revision{hash: "aaa", n: 10, labels: with(appLabels, "rollouts-pod-template-hash", "aaa")})},
		},
		"Argo Rollouts controller takes a Service over": {
			svc:  service(with(appLabels, "rollouts-pod-template-hash", "aaa"), ArgoManagedAnnotation, "distributor"),
			old:  service(appLabels),
			view: StaticView{incident},
		},
		"StatefulSet mid-rollout, selector on the new label": {
			svc: service(with(appLabels, "ring", "b")),
			view: StaticView{sts(
				revision{hash: "a", n: 2, labels: appLabels},
				revision{hash: "b", n: 1, labels: with(appLabels, "ring", "b")},
			)},
			want: []wantFinding{{rule: RuleRevisionSubset, deny: true, matched: 1, total: 3, contains: []string{
				"selector matches 1 of 3 pods of StatefulSet loki/ingester (only revision b; 2 pods of revision a lack ring=b)",
			}}},
		},
		"StatefulSet per-pod Service picks one pod on purpose": {
			svc: service(with(appLabels, "statefulset.kubernetes.io/pod-name", "ingester-2")),
			view: StaticView{sts(
				revision{hash: "a", n: 2, labels: appLabels},
				revision{hash: "b", n: 1, labels: with(appLabels, "statefulset.kubernetes.io/pod-name", "ingester-2")},
			)},
		},
		"pod-index Service picks one pod on purpose": {
			svc: service(with(appLabels, "apps.kubernetes.io/pod-index", "0")),
			view: StaticView{sts(
				revision{hash: "a", n: 1, labels: with(appLabels, "apps.kubernetes.io/pod-index", "0")},
				revision{hash: "b", n: 1, labels: appLabels},
			)},
		},
		"DaemonSet mid-rollout": {
			svc: service(ringLabels),
			view: StaticView{workload(KindDaemonSet, "promtail", ringLabels, "",
				revision{hash: "x1", n: 9, labels: appLabels},
				revision{hash: "x2", n: 1, labels: ringLabels},
			)},
			want: []wantFinding{{rule: RuleRevisionSubset, deny: true, matched: 1, total: 10, contains: []string{"(only revision x2; 9 pods of revision x1 lack gossip_ring_member=true)"}}},
		},
		"one revision, hand-labelled subset is not a revision split": {
			svc: service(ringLabels),
			view: StaticView{workload(KindDeployment, "distributor", appLabels, "5b6c4d",
				revision{hash: "5b6c4d", n: 3, labels: ringLabels},
				revision{hash: "5b6c4d", n: 137, labels: appLabels},
			)},
		},
		"a split where one matched revision is only partly matched": {
			svc: service(ringLabels),
			view: StaticView{workload(KindDeployment, "distributor", ringLabels, "b",
				revision{hash: "a", n: 10, labels: appLabels},
				revision{hash: "b", n: 3, labels: ringLabels},
				revision{hash: "b", n: 1, labels: appLabels},
			)},
			want: []wantFinding{{rule: RuleRevisionSubset, deny: true, matched: 3, total: 14, contains: []string{"(only revision b; 10 pods of revision a lack"}}},
		},
		"terminating and evicted pods of the old revision do not count": {
			svc: service(ringLabels),
			view: StaticView{workload(KindDeployment, "distributor", ringLabels, "7d9f8c",
				revision{hash: "5b6c4d", n: 100, labels: appLabels, terminating: true},
				revision{hash: "5b6c4d", n: 4, labels: appLabels, finished: true},
				revision{hash: "7d9f8c", n: 140, labels: ringLabels},
			)},
		},
		"selector matches only terminating pods": {
			svc:  service(appLabels),
			view: StaticView{workload(KindDeployment, "distributor", nil, "", revision{hash: "a", n: 3, labels: appLabels, terminating: true})},
			want: []wantFinding{{rule: RuleMatchesNothing}},
		},
		"no selector": {
			svc:  service(nil),
			view: StaticView{incident},
		},
		"empty selector": {
			svc:  service(map[string]string{}),
			view: StaticView{incident},
		},
		"ExternalName Service": {
			svc: func() *corev1.Service {
				s := service(ringLabels)
				s.Spec.Type = corev1.ServiceTypeExternalName
				return s
			}(),
			view: StaticView{incident},
		},
		"update that leaves the selector alone is not judged": {
			svc:  service(ringLabels, "team", "loki"),
			old:  service(ringLabels),
			view: StaticView{incident},
		},
		"matches nothing": {
			svc:  service(map[string]string{"app": "typo"}),
			view: StaticView{incident},
			want: []wantFinding{{rule: RuleMatchesNothing, contains: []string{"selector matches no pods and no pod template of a Deployment, StatefulSet, DaemonSet or Rollout in namespace loki: the Service has no endpoints"}}},
		},
		"update to a selector that matches nothing says what it matched before": {
			svc:  service(map[string]string{"app": "typo"}),
			old:  service(appLabels),
			view: StaticView{incident},
			want: []wantFinding{{rule: RuleMatchesNothing, contains: []string{"(the current selector matches 140 pods)"}}},
		},
		"pods of two workloads": {
			svc: service(appLabels),
			view: StaticView{
				steady,
				workload(KindJob, "migrate", nil, "", revision{n: 1, labels: appLabels}),
				workload(KindDeployment, "other", map[string]string{"app": "other"}, "", revision{hash: "o", n: 5, labels: map[string]string{"app": "other"}}),
			},
			want: []wantFinding{{rule: RuleManyWorkloads, contains: []string{"selector matches pods of 2 workloads: Deployment loki/distributor (140 pods), Job loki/migrate (1 pod)"}}},
		},
		"a finished Job's pods are not endpoints": {
			svc: service(appLabels),
			view: StaticView{
				steady,
				workload(KindJob, "migrate", nil, "", revision{n: 1, labels: appLabels, finished: true}),
			},
		},
		"pods of a Job and standalone pods carry no revisions": {
			svc: service(ringLabels),
			view: StaticView{
				workload(KindJob, "migrate", nil, "", revision{hash: "a", n: 1, labels: ringLabels}, revision{hash: "b", n: 3, labels: appLabels}),
			},
		},
		"denied and warned together, denials first": {
			svc: service(ringLabels),
			view: StaticView{
				incident,
				workload(KindPod, "", nil, "", revision{n: 2, labels: ringLabels}),
			},
			want: []wantFinding{
				{rule: RuleRevisionSubset, deny: true, matched: 16, total: 140},
				{rule: RuleManyWorkloads, contains: []string{"standalone pods in loki (2 pods)"}},
			},
		},
		"workloads of other namespaces are ignored": {
			svc: service(ringLabels),
			view: StaticView{func() Workload {
				w := incident
				w.Namespace = "other"
				return w
			}()},
			want: []wantFinding{{rule: RuleMatchesNothing}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := Check(tc.svc, tc.old, tc.view)
			if len(got) != len(tc.want) {
				t.Fatalf("got %d findings, want %d:\n%s", len(got), len(tc.want), describe(got))
			}
			for i, w := range tc.want {
				g := got[i]
				if g.Rule != w.rule || g.Deny != w.deny {
					t.Errorf("finding %d: got rule %s deny %v, want %s deny %v\n%s", i, g.Rule, g.Deny, w.rule, w.deny, g.Message)
				}
				for _, s := range w.contains {
					if !strings.Contains(g.Message, s) {
						t.Errorf("finding %d message:\n  %s\nwant it to contain:\n  %s", i, g.Message, s)
					}
				}
				if w.field != "" && g.Field.String() != w.field {
					t.Errorf("finding %d field = %s, want %s", i, g.Field, w.field)
				}
				if w.deny && w.rule != RuleRevisionKey && (g.Matched != w.matched || g.Total != w.total) {
					t.Errorf("finding %d counts = %d of %d, want %d of %d", i, g.Matched, g.Total, w.matched, w.total)
				}
			}
		})
	}
}

func describe(fs []Finding) string {
	var b strings.Builder
	for _, f := range fs {
		fmt.Fprintf(&b, "  %s deny=%v: %s\n", f.Rule, f.Deny, f.Message)
	}
	return b.String()
}

func TestSkip(t *testing.T) {
	tests := map[string]struct {
		svc, old *corev1.Service
		want     SkipReason
	}{
		"no selector":     {svc: service(nil), want: SkipNoSelector},
		"only Argo's key": {svc: service(map[string]string{LabelRolloutsPodTemplateHash: "a"}, ArgoManagedAnnotation, "r"), want: SkipNoSelector},
		"unchanged":       {svc: service(appLabels), old: service(appLabels), want: SkipSelectorUnchanged},
		"changed":         {svc: service(ringLabels), old: service(appLabels)},
		"was ExternalName": {svc: service(appLabels), old: func() *corev1.Service {
			s := service(appLabels)
			s.Spec.Type = corev1.ServiceTypeExternalName
			return s
		}()},
		"create":              {svc: service(appLabels)},
		"Argo hash key moved": {svc: service(with(appLabels, LabelRolloutsPodTemplateHash, "b"), ArgoManagedAnnotation, "r"), old: service(with(appLabels, LabelRolloutsPodTemplateHash, "a"), ArgoManagedAnnotation, "r"), want: SkipSelectorUnchanged},
		"Argo releases the Service": {
			svc: service(appLabels), old: service(with(appLabels, LabelRolloutsPodTemplateHash, "a"), ArgoManagedAnnotation, "r"), want: SkipSelectorUnchanged,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, skip := Skip(tc.svc, tc.old)
			if got != tc.want || skip != (tc.want != "") {
				t.Errorf("Skip = %q, %v; want %q", got, skip, tc.want)
			}
		})
	}
}

func TestEffectiveSelectorDoesNotModifyService(t *testing.T) {
	svc := service(with(appLabels, LabelRolloutsPodTemplateHash, "a"), ArgoManagedAnnotation, "r")
	if got := EffectiveSelector(svc); len(got) != 1 || got["app"] != "distributor" {
		t.Errorf("EffectiveSelector = %v", got)
	}
	if _, ok := svc.Spec.Selector[LabelRolloutsPodTemplateHash]; !ok {
		t.Error("EffectiveSelector removed the key from the Service itself")
	}
}
