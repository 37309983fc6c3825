package selectorguard

import (
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/netguard-io/netguard/config"
)

func TestNamespaceSelected(t *testing.T) {
	ns := func(label string) *corev1.Namespace {
		n := &corev1.Namespace{}
		if label != "" {
			n.Labels = map[string]string{InjectLabel: label}
		}
		return n
	}
	optIn := config.Default().Namespaces
	optIn.Self = "netguard"
	clusterWide := optIn
	clusterWide.Mode = config.NamespaceModeClusterWide
	tests := map[string]struct {
		cfg  config.NamespacesConfig
		name string
		ns   *corev1.Namespace
		want bool
	}{
		"opt-in, labelled":            {cfg: optIn, name: "loki", ns: ns("enabled"), want: true},
		"opt-in, unlabelled":          {cfg: optIn, name: "loki", ns: ns("")},
		"opt-in, unknown namespace":   {cfg: optIn, name: "loki"},
		"opt-in, kube-system":         {cfg: optIn, name: "kube-system", ns: ns("enabled")},
		"opt-in, netguard's own":      {cfg: optIn, name: "netguard", ns: ns("enabled")},
		"cluster-wide, unlabelled":    {cfg: clusterWide, name: "loki", ns: ns(""), want: true},
		"cluster-wide, opted out":     {cfg: clusterWide, name: "loki", ns: ns("disabled")},
		"cluster-wide, kube-system":   {cfg: clusterWide, name: "kube-system", ns: ns("")},
		"cluster-wide, not yet known": {cfg: clusterWide, name: "loki", want: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := NamespaceSelected(tc.cfg, tc.name, tc.ns); got != tc.want {
				t.Errorf("NamespaceSelected = %v, want %v", got, tc.want)
			}
		})
	}
}
