package selectorguard

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestCheckTemplateChange(t *testing.T) {
	w := Workload{Kind: KindDeployment, Namespace: "loki", Name: "distributor"}
	named := func(name string, s *corev1.Service) *corev1.Service { s.Name = name; return s }
	tests := map[string]struct {
		oldLabels, newLabels map[string]string
		services             []*corev1.Service
		want                 []string // messages' prefixes, in order
	}{
		"template drops a selected label": {
			oldLabels: ringLabels, newLabels: appLabels,
			services: []*corev1.Service{named("distributor", service(ringLabels)), named("all", service(appLabels))},
			want:     []string{"the new pod template of Deployment loki/distributor drops gossip_ring_member=true, which Service distributor selects: as the rollout replaces pods, the Service loses its endpoints; keep the label in the template, or take it out of the Service's selector first"},
		},
		"template changes a selected value": {
			oldLabels: ringLabels, newLabels: with(appLabels, "gossip_ring_member", "false"),
			services: []*corev1.Service{service(ringLabels)},
			want:     []string{"the new pod template of Deployment loki/distributor drops gossip_ring_member=true"},
		},
		"several Services, sorted by name": {
			oldLabels: ringLabels, newLabels: map[string]string{"app": "renamed"},
			services: []*corev1.Service{named("b", service(ringLabels)), named("a", service(appLabels))},
			want: []string{
				"the new pod template of Deployment loki/distributor drops app=distributor, which Service a selects",
				"the new pod template of Deployment loki/distributor drops app=distributor, gossip_ring_member=true, which Service b selects: as the rollout replaces pods, the Service loses its endpoints; keep the labels in the template, or take them out",
			},
		},
		"template adds a label": {
			oldLabels: appLabels, newLabels: ringLabels,
			services: []*corev1.Service{service(appLabels), service(ringLabels)},
		},
		"Service that never selected the workload": {
			oldLabels: ringLabels, newLabels: appLabels,
			services: []*corev1.Service{service(map[string]string{"app": "other"})},
		},
		"Service in another namespace": {
			oldLabels: ringLabels, newLabels: appLabels,
			services: []*corev1.Service{func() *corev1.Service { s := service(ringLabels); s.Namespace = "other"; return s }()},
		},
		"Service without selector": {
			oldLabels: ringLabels, newLabels: appLabels,
			services: []*corev1.Service{service(nil)},
		},
		"per-pod Service": {
			oldLabels: with(ringLabels, "statefulset.kubernetes.io/pod-name", "x-0"), newLabels: appLabels,
			services: []*corev1.Service{service(with(ringLabels, "statefulset.kubernetes.io/pod-name", "x-0"))},
		},
		"Argo's revision key is not the template's business": {
			oldLabels: ringLabels, newLabels: ringLabels,
			services: []*corev1.Service{service(with(ringLabels, LabelRolloutsPodTemplateHash, "abc"), ArgoManagedAnnotation, "distributor")},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := CheckTemplateChange(w, tc.oldLabels, tc.newLabels, tc.services)
			if len(got) != len(tc.want) {
				t.Fatalf("got %d findings, want %d:\n%s", len(got), len(tc.want), describe(got))
			}
			for i, f := range got {
				if f.Rule != RuleTemplateDropsLabel || f.Deny {
					t.Errorf("finding %d: rule %s deny %v", i, f.Rule, f.Deny)
				}
				if !strings.HasPrefix(f.Message, tc.want[i]) {
					t.Errorf("finding %d:\n  %s\nwant prefix\n  %s", i, f.Message, tc.want[i])
				}
				if f.Field.String() != "spec.template.metadata.labels" {
					t.Errorf("field = %s", f.Field)
				}
			}
		})
	}
}
