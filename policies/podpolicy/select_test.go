package podpolicy

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/netguard-io/netguard/config"
)

func TestNamespaceSelected(t *testing.T) {
	enabled := map[string]string{LabelInject: LabelInjectEnabled}
	disabled := map[string]string{LabelInject: LabelInjectDisabled}
	cases := map[string]struct {
		mode    config.NamespaceMode
		exclude []string
		ns      NamespaceInfo
		want    SkipReason // "" = selected
	}{
		"opt-in, labelled enabled":          {mode: config.NamespaceModeOptIn, ns: NamespaceInfo{Name: "shop", Labels: enabled}},
		"opt-in, no label":                  {mode: config.NamespaceModeOptIn, ns: NamespaceInfo{Name: "shop"}, want: SkipNamespaceNotOptedIn},
		"opt-in, label with another value":  {mode: config.NamespaceModeOptIn, ns: NamespaceInfo{Name: "shop", Labels: map[string]string{LabelInject: "true"}}, want: SkipNamespaceNotOptedIn},
		"opt-in, labelled disabled":         {mode: config.NamespaceModeOptIn, ns: NamespaceInfo{Name: "shop", Labels: disabled}, want: SkipNamespaceOptedOut},
		"opt-in, annotation is not a label": {mode: config.NamespaceModeOptIn, ns: NamespaceInfo{Name: "shop", Annotations: enabled}, want: SkipNamespaceNotOptedIn},
		"cluster-wide, no label":            {mode: config.NamespaceModeClusterWide, ns: NamespaceInfo{Name: "shop"}},
		"cluster-wide, labelled enabled":    {mode: config.NamespaceModeClusterWide, ns: NamespaceInfo{Name: "shop", Labels: enabled}},
		"cluster-wide, labelled disabled":   {mode: config.NamespaceModeClusterWide, ns: NamespaceInfo{Name: "shop", Labels: disabled}, want: SkipNamespaceOptedOut},
		"kube-system even when labelled":    {mode: config.NamespaceModeOptIn, ns: NamespaceInfo{Name: "kube-system", Labels: enabled}, want: SkipNamespaceExcluded},
		"kube-system in cluster-wide mode":  {mode: config.NamespaceModeClusterWide, ns: NamespaceInfo{Name: "kube-system"}, want: SkipNamespaceExcluded},
		"netguard's own namespace":          {mode: config.NamespaceModeClusterWide, ns: NamespaceInfo{Name: "netguard-system", Labels: enabled}, want: SkipNamespaceExcluded},
		"configured exclusion":              {mode: config.NamespaceModeClusterWide, exclude: []string{"monitoring"}, ns: NamespaceInfo{Name: "monitoring", Labels: enabled}, want: SkipNamespaceExcluded},
		"exclusion is exact, not a prefix":  {mode: config.NamespaceModeClusterWide, exclude: []string{"monitoring"}, ns: NamespaceInfo{Name: "monitoring-2"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := config.Default()
			cfg.Namespaces.Mode = tc.mode
			cfg.Namespaces.Exclude = tc.exclude
			cfg.Namespaces.Self = "netguard-system"
			ok, reason := NamespaceSelected(tc.ns, cfg)
			if ok != (tc.want == "") || reason != tc.want {
				t.Errorf("NamespaceSelected = %v, %q; want %v, %q", ok, reason, tc.want == "", tc.want)
			}
		})
	}
}

// TestSkipTruthTable mirrors the truth table in select.go, row by row.
func TestSkipTruthTable(t *testing.T) {
	type row struct {
		nsLabel       string // "", enabled, disabled
		nsName        string // default "shop"
		nsAnnotation  string // netguard.io/inject on the namespace
		podAnnotation string // netguard.io/inject on the pod
		hostNetwork   bool
		cfwhn         bool // dnsPolicy ClusterFirstWithHostNet
		mutated       bool // pod is the output of an earlier pass
		want          SkipReason
	}
	rows := map[string]row{
		"excluded namespace":                           {nsLabel: "enabled", nsName: "kube-system", want: SkipNamespaceExcluded},
		"excluded namespace, pod asks for it":          {nsLabel: "enabled", nsName: "netguard", podAnnotation: "true", want: SkipNamespaceExcluded},
		"namespace opted out":                          {nsLabel: "disabled", podAnnotation: "true", want: SkipNamespaceOptedOut},
		"namespace not opted in":                       {podAnnotation: "true", want: SkipNamespaceNotOptedIn},
		"pod opts out":                                 {nsLabel: "enabled", podAnnotation: "false", want: SkipOptedOut},
		"pod opts out, namespace default true":         {nsLabel: "enabled", nsAnnotation: "true", podAnnotation: "false", want: SkipOptedOut},
		"namespace default opts out":                   {nsLabel: "enabled", nsAnnotation: "false", want: SkipNamespaceDefaultOptedOut},
		"namespace default opts out, pod opts in":      {nsLabel: "enabled", nsAnnotation: "false", podAnnotation: "true"},
		"hostNetwork ClusterFirst":                     {nsLabel: "enabled", hostNetwork: true, want: SkipHostNetwork},
		"hostNetwork ClusterFirst, pod opts in":        {nsLabel: "enabled", podAnnotation: "true", hostNetwork: true, want: SkipHostNetwork},
		"hostNetwork ClusterFirstWithHostNet":          {nsLabel: "enabled", hostNetwork: true, cfwhn: true},
		"hostNetwork ClusterFirstWithHostNet, mutated": {nsLabel: "enabled", hostNetwork: true, cfwhn: true, mutated: true, want: SkipAlreadyMutated},
		"already mutated":                              {nsLabel: "enabled", mutated: true, want: SkipAlreadyMutated},
		"already mutated, pod opts in":                 {nsLabel: "enabled", podAnnotation: "true", mutated: true, want: SkipAlreadyMutated},
		"fresh pod":                                    {nsLabel: "enabled"},
		"fresh pod, pod opts in":                       {nsLabel: "enabled", podAnnotation: "true"},
	}
	for name, r := range rows {
		t.Run(name, func(t *testing.T) {
			ns := NamespaceInfo{Name: "shop", Labels: map[string]string{}, Annotations: map[string]string{}}
			if r.nsName != "" {
				ns.Name = r.nsName
			}
			if r.nsLabel != "" {
				ns.Labels[LabelInject] = r.nsLabel
			}
			if r.nsAnnotation != "" {
				ns.Annotations[AnnotationInject] = r.nsAnnotation
			}
			pod := testPod(ns.Name)
			if r.podAnnotation != "" {
				pod.Annotations = map[string]string{AnnotationInject: r.podAnnotation}
			}
			pod.Spec.HostNetwork = r.hostNetwork
			if r.cfwhn {
				pod.Spec.DNSPolicy = corev1.DNSClusterFirstWithHostNet
			}
			env := Env{Namespace: ns, ClusterDNS: "10.96.0.10", Version: "v1"}
			cfg := config.Default()
			cfg.Namespaces.Self = "netguard"
			if r.mutated {
				pod = Mutate(pod, env, cfg).Pod
				if _, ok := pod.Annotations[AnnotationStatus]; !ok {
					t.Fatal("first pass did not mutate the pod")
				}
			}
			res := Mutate(pod, env, cfg)
			if res.Skipped != r.want {
				t.Errorf("Skipped = %q, want %q", res.Skipped, r.want)
			}
			checkOutput(t, pod, env, cfg, res)
		})
	}
}

func TestSkipPod(t *testing.T) {
	cases := map[string]struct {
		pod  func(*corev1.Pod)
		cfg  func(*config.Config)
		want SkipReason
		warn bool
	}{
		"both policies disabled": {cfg: func(c *config.Config) { c.DNS.Enabled, c.DNSProxy.Enabled = false, false }, want: SkipDisabled},
		"mirror pod":             {pod: func(p *corev1.Pod) { p.Annotations = map[string]string{corev1.MirrorPodAnnotationKey: "abc"} }, want: SkipMirrorPod},
		"netguard's own pod":     {pod: func(p *corev1.Pod) { p.Labels = map[string]string{"app.kubernetes.io/name": "netguard"} }, want: SkipNetguardPod},
		"windows by spec.os":     {pod: func(p *corev1.Pod) { p.Spec.OS = &corev1.PodOS{Name: corev1.Windows} }, want: SkipWindows},
		"windows by selector":    {pod: func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{"kubernetes.io/os": "windows"} }, want: SkipWindows},
		"linux by spec.os":       {pod: func(p *corev1.Pod) { p.Spec.OS = &corev1.PodOS{Name: corev1.Linux} }},
		"None without dnsConfig": {pod: func(p *corev1.Pod) { p.Spec.DNSPolicy = corev1.DNSNone }, want: SkipInvalidDNSConfig, warn: true},
		"unknown dnsPolicy":      {pod: func(p *corev1.Pod) { p.Spec.DNSPolicy = "Cluster" }, want: SkipInvalidDNSConfig, warn: true},
		"33 searches": {pod: func(p *corev1.Pod) {
			p.Spec.DNSConfig = &corev1.PodDNSConfig{}
			for i := range 33 {
				p.Spec.DNSConfig.Searches = append(p.Spec.DNSConfig.Searches, "d"+string(rune('a'+i%26))+string(rune('a'+i/26))+".example")
			}
		}, want: SkipInvalidDNSConfig, warn: true},
		"search line over 2048 characters": {pod: func(p *corev1.Pod) {
			long := "a123456789.b123456789.c123456789.d123456789.e123456789.f123456789.g123456789.h123456789.example"
			p.Spec.DNSConfig = &corev1.PodDNSConfig{}
			for i := range 22 {
				p.Spec.DNSConfig.Searches = append(p.Spec.DNSConfig.Searches, string(rune('a'+i))+long)
			}
		}, want: SkipInvalidDNSConfig, warn: true},
		"nameserver not an IP":   {pod: func(p *corev1.Pod) { p.Spec.DNSConfig = &corev1.PodDNSConfig{Nameservers: []string{"dns.example"}} }, want: SkipInvalidDNSConfig, warn: true},
		"empty option name":      {pod: func(p *corev1.Pod) { p.Spec.DNSConfig = &corev1.PodDNSConfig{Options: []corev1.PodDNSConfigOption{{}}} }, want: SkipInvalidDNSConfig, warn: true},
		"bad inject annotation":  {pod: func(p *corev1.Pod) { p.Annotations = map[string]string{AnnotationInject: "nope"} }, warn: true},
		"inject annotation TRUE": {pod: func(p *corev1.Pod) { p.Annotations = map[string]string{AnnotationInject: "TRUE"} }},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			pod := testPod("shop")
			if tc.pod != nil {
				tc.pod(pod)
			}
			cfg := testConfig()
			if tc.cfg != nil {
				tc.cfg(cfg)
			}
			env := testEnv()
			res := Mutate(pod, env, cfg)
			if res.Skipped != tc.want {
				t.Errorf("Skipped = %q, want %q", res.Skipped, tc.want)
			}
			if got := len(res.Warnings) > 0; got != tc.warn {
				t.Errorf("warnings = %q, want some: %v", res.Warnings, tc.warn)
			}
			checkOutput(t, pod, env, cfg, res)
		})
	}
}

func TestSkipReasonLabels(t *testing.T) {
	seen := map[string]SkipReason{}
	for _, r := range SkipReasons() {
		l := r.Label()
		if l == "other" || l == "none" {
			t.Errorf("%q has no label of its own", r)
		}
		if prev, dup := seen[l]; dup {
			t.Errorf("label %q used by %q and %q", l, prev, r)
		}
		seen[l] = r
	}
	if got := SkipReason("something new").Label(); got != "other" {
		t.Errorf("unknown reason label = %q, want other", got)
	}
}

func testPod(ns string) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: ns},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "app", Image: "docker.io/library/python:3.12"}},
		},
	}
}

func testEnv() Env {
	return Env{
		Namespace:  NamespaceInfo{Name: "shop", Labels: map[string]string{LabelInject: LabelInjectEnabled}},
		ClusterDNS: "10.96.0.10",
		Version:    "v1.2.3",
	}
}

func testConfig() *config.Config {
	cfg := config.Default()
	cfg.Namespaces.Self = "netguard"
	return cfg
}
