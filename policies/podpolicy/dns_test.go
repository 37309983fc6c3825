package podpolicy

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/netguard-io/netguard/config"
)

func opt(name string, value ...string) corev1.PodDNSConfigOption {
	o := corev1.PodDNSConfigOption{Name: name}
	if len(value) > 0 {
		o.Value = &value[0]
	}
	return o
}

// optionStrings renders options as the kubelet writes them, in order.
func optionStrings(dc *corev1.PodDNSConfig) []string {
	if dc == nil {
		return nil
	}
	var out []string
	for _, o := range dc.Options {
		if o.Value != nil {
			out = append(out, o.Name+":"+*o.Value)
		} else {
			out = append(out, o.Name)
		}
	}
	return out
}

func TestMutateDNS(t *testing.T) {
	long := strings.Repeat("a", 60) + "." + strings.Repeat("b", 60) + ".example"
	cases := map[string]struct {
		pod    func(*corev1.Pod)
		ns     map[string]string // namespace annotations
		env    func(*Env)
		cfg    func(*config.Config)
		policy corev1.DNSPolicy
		// want
		options     []string
		nameservers []string
		searches    []string
		applied     []string
		warning     string // substring of one warning
		skipped     SkipReason
	}{
		"plain pod": {
			policy: corev1.DNSNone, options: []string{"single-request-reopen", "ndots:2"},
			nameservers: []string{"10.96.0.10"}, searches: []string{"shop.svc.cluster.local", "svc.cluster.local", "cluster.local"},
			applied: []string{AppliedDNSOptions, AppliedNdots, AppliedSearchScrub},
		},
		"pod options first, in order, values kept": {
			pod: func(p *corev1.Pod) {
				p.Spec.DNSConfig = &corev1.PodDNSConfig{Options: []corev1.PodDNSConfigOption{opt("timeout", "1"), opt("ndots", "4"), opt("edns0")}}
			},
			policy: corev1.DNSNone, options: []string{"timeout:1", "ndots:4", "edns0", "single-request-reopen"},
			applied: []string{AppliedDNSOptions, AppliedSearchScrub},
		},
		"option the pod has is not duplicated": {
			pod: func(p *corev1.Pod) {
				p.Spec.DNSConfig = &corev1.PodDNSConfig{Options: []corev1.PodDNSConfigOption{opt("single-request-reopen")}}
			},
			policy: corev1.DNSNone, options: []string{"single-request-reopen", "ndots:2"},
			applied: []string{AppliedNdots, AppliedSearchScrub},
		},
		"single-request wins over single-request-reopen": {
			pod: func(p *corev1.Pod) {
				p.Spec.DNSConfig = &corev1.PodDNSConfig{Options: []corev1.PodDNSConfigOption{opt("single-request")}}
			},
			policy: corev1.DNSNone, options: []string{"single-request", "ndots:2"},
		},
		"configured options with values": {
			cfg: func(c *config.Config) {
				one := "1"
				c.DNS.Options = []config.DNSOption{{Name: "single-request-reopen"}, {Name: "attempts", Value: &one}}
			},
			policy: corev1.DNSNone, options: []string{"single-request-reopen", "attempts:1", "ndots:2"},
		},
		"ndots from config": {
			cfg:    func(c *config.Config) { c.DNS.Ndots = 1 },
			policy: corev1.DNSNone, options: []string{"single-request-reopen", "ndots:1"},
		},
		"ndots from pod annotation": {
			pod:    func(p *corev1.Pod) { p.Annotations = map[string]string{AnnotationNdots: "3"} },
			policy: corev1.DNSNone, options: []string{"single-request-reopen", "ndots:3"},
		},
		"ndots 0 from pod annotation": {
			pod:    func(p *corev1.Pod) { p.Annotations = map[string]string{AnnotationNdots: "0"} },
			policy: corev1.DNSNone, options: []string{"single-request-reopen", "ndots:0"},
		},
		"ndots from namespace annotation": {
			ns:     map[string]string{AnnotationNdots: "1"},
			policy: corev1.DNSNone, options: []string{"single-request-reopen", "ndots:1"},
		},
		"pod ndots annotation beats the namespace's": {
			pod:    func(p *corev1.Pod) { p.Annotations = map[string]string{AnnotationNdots: "4"} },
			ns:     map[string]string{AnnotationNdots: "1"},
			policy: corev1.DNSNone, options: []string{"single-request-reopen", "ndots:4"},
		},
		"bad pod ndots falls back to the namespace's": {
			pod:    func(p *corev1.Pod) { p.Annotations = map[string]string{AnnotationNdots: "16"} },
			ns:     map[string]string{AnnotationNdots: "1"},
			policy: corev1.DNSNone, options: []string{"single-request-reopen", "ndots:1"},
			warning: `pod annotation netguard.io/ndots="16" is not a number from 0 to 15`,
		},
		"bad namespace ndots falls back to config": {
			ns:     map[string]string{AnnotationNdots: "-1"},
			policy: corev1.DNSNone, options: []string{"single-request-reopen", "ndots:2"},
			warning: `namespace shop annotation netguard.io/ndots="-1"`,
		},
		"pod's own ndots option beats the annotation": {
			pod: func(p *corev1.Pod) {
				p.Annotations = map[string]string{AnnotationNdots: "1"}
				p.Spec.DNSConfig = &corev1.PodDNSConfig{Options: []corev1.PodDNSConfigOption{opt("ndots", "3")}}
			},
			policy: corev1.DNSNone, options: []string{"ndots:3", "single-request-reopen"},
			warning: "ignored: the pod sets spec.dnsConfig option ndots:3",
		},
		"dnsPolicy Default: options, no ndots, no scrub": {
			pod:    func(p *corev1.Pod) { p.Spec.DNSPolicy = corev1.DNSDefault },
			policy: corev1.DNSDefault, options: []string{"single-request-reopen"},
			applied: []string{AppliedDNSOptions},
		},
		"dnsPolicy Default with ndots annotation warns": {
			pod: func(p *corev1.Pod) {
				p.Spec.DNSPolicy = corev1.DNSDefault
				p.Annotations = map[string]string{AnnotationNdots: "1"}
			},
			policy: corev1.DNSDefault, options: []string{"single-request-reopen"},
			warning: "dnsPolicy Default does not get the kubelet's ndots:5",
		},
		"dnsPolicy None: options only, lists untouched": {
			pod: func(p *corev1.Pod) {
				p.Spec.DNSPolicy = corev1.DNSNone
				p.Spec.DNSConfig = &corev1.PodDNSConfig{Nameservers: []string{"192.0.2.1"}, Searches: []string{"example.net"}}
			},
			policy: corev1.DNSNone, options: []string{"single-request-reopen"},
			nameservers: []string{"192.0.2.1"}, searches: []string{"example.net"},
			applied: []string{AppliedDNSOptions},
		},
		"ClusterFirstWithHostNet without hostNetwork is ClusterFirst": {
			pod:    func(p *corev1.Pod) { p.Spec.DNSPolicy = corev1.DNSClusterFirstWithHostNet },
			policy: corev1.DNSNone, options: []string{"single-request-reopen", "ndots:2"},
		},
		"scrub keeps the pod's nameservers and searches after the cluster's": {
			pod: func(p *corev1.Pod) {
				p.Spec.DNSConfig = &corev1.PodDNSConfig{Nameservers: []string{"192.0.2.1", "10.96.0.10"}, Searches: []string{"cluster.local", "example.net"}}
			},
			cfg:         func(c *config.Config) { c.DNS.Search.Allowed = []string{"corp.example.com"} },
			policy:      corev1.DNSNone,
			nameservers: []string{"10.96.0.10", "192.0.2.1"},
			searches:    []string{"shop.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.example.com", "example.net"},
		},
		"scrub with another cluster domain": {
			cfg:      func(c *config.Config) { c.DNS.Search.ClusterDomain = "k8s.example" },
			policy:   corev1.DNSNone,
			searches: []string{"shop.svc.k8s.example", "svc.k8s.example", "k8s.example"},
		},
		"scrub over the nameserver limit: not scrubbed": {
			pod: func(p *corev1.Pod) {
				p.Spec.DNSConfig = &corev1.PodDNSConfig{Nameservers: []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"}}
			},
			policy: corev1.DNSClusterFirst, options: []string{"single-request-reopen", "ndots:2"},
			nameservers: []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"},
			applied:     []string{AppliedDNSOptions, AppliedNdots},
			warning:     "search domains not scrubbed: spec.dnsConfig.nameservers has 4 entries",
		},
		"scrub over the search limit: not scrubbed": {
			pod: func(p *corev1.Pod) {
				p.Spec.DNSConfig = &corev1.PodDNSConfig{}
				for i := range 30 {
					p.Spec.DNSConfig.Searches = append(p.Spec.DNSConfig.Searches, "s"+strings.Repeat("x", i)+".example")
				}
			},
			policy:  corev1.DNSClusterFirst,
			applied: []string{AppliedDNSOptions, AppliedNdots},
			warning: "spec.dnsConfig.searches has 33 entries, over the limit of 32",
		},
		"scrub over the search length limit: not scrubbed": {
			pod: func(p *corev1.Pod) {
				p.Spec.DNSConfig = &corev1.PodDNSConfig{}
				for i := range 15 {
					p.Spec.DNSConfig.Searches = append(p.Spec.DNSConfig.Searches, string(rune('a'+i))+long)
				}
				// 2005 characters: valid alone, over 2048 with the cluster's 3.
				p.Spec.DNSConfig.Searches = append(p.Spec.DNSConfig.Searches, strings.Repeat("c", 32)+".example")
			},
			policy:  corev1.DNSClusterFirst,
			warning: "characters long, over the limit of 2048",
		},
		"cluster DNS unknown: no scrub, warning": {
			env:    func(e *Env) { e.ClusterDNS = "" },
			policy: corev1.DNSClusterFirst, options: []string{"single-request-reopen", "ndots:2"},
			applied: []string{AppliedDNSOptions, AppliedNdots},
			warning: "search domains not scrubbed: the cluster DNS Service IP is unknown",
		},
		"cluster DNS not an IP: no scrub, warning": {
			env:     func(e *Env) { e.ClusterDNS = "kube-dns" },
			policy:  corev1.DNSClusterFirst,
			warning: "cluster DNS IP kube-dns is not an IP address",
		},
		"IPv6 cluster DNS": {
			env:         func(e *Env) { e.ClusterDNS = "fd00:10:96::a" },
			policy:      corev1.DNSNone,
			nameservers: []string{"fd00:10:96::a"},
		},
		"scrub disabled": {
			cfg:    func(c *config.Config) { c.DNS.Search.Scrub = false },
			policy: corev1.DNSClusterFirst, options: []string{"single-request-reopen", "ndots:2"},
			applied: []string{AppliedDNSOptions, AppliedNdots},
		},
		"DNS policy disabled": {
			cfg:    func(c *config.Config) { c.DNS.Enabled = false },
			policy: corev1.DNSClusterFirst, skipped: SkipNothingToApply,
		},
		"namespace from the pod when env has none": {
			env:      func(e *Env) { e.Namespace = NamespaceInfo{} },
			cfg:      func(c *config.Config) { c.Namespaces.Mode = config.NamespaceModeClusterWide },
			policy:   corev1.DNSNone,
			searches: []string{"shop.svc.cluster.local", "svc.cluster.local", "cluster.local"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			pod := testPod("shop")
			if tc.pod != nil {
				tc.pod(pod)
			}
			env := testEnv()
			env.Namespace.Annotations = tc.ns
			if tc.env != nil {
				tc.env(&env)
			}
			cfg := testConfig()
			if tc.cfg != nil {
				tc.cfg(cfg)
			}
			res := Mutate(pod, env, cfg)
			out := res.Pod
			if res.Skipped != tc.skipped {
				t.Errorf("Skipped = %q, want %q", res.Skipped, tc.skipped)
			}
			if got := out.Spec.DNSPolicy; got != tc.policy && !(got == "" && tc.policy == corev1.DNSClusterFirst) {
				t.Errorf("dnsPolicy = %q, want %q", got, tc.policy)
			}
			if tc.options != nil && !slices.Equal(optionStrings(out.Spec.DNSConfig), tc.options) {
				t.Errorf("options = %q, want %q", optionStrings(out.Spec.DNSConfig), tc.options)
			}
			if tc.nameservers != nil && !slices.Equal(out.Spec.DNSConfig.Nameservers, tc.nameservers) {
				t.Errorf("nameservers = %q, want %q", out.Spec.DNSConfig.Nameservers, tc.nameservers)
			}
			if tc.searches != nil && !slices.Equal(out.Spec.DNSConfig.Searches, tc.searches) {
				t.Errorf("searches = %q, want %q", out.Spec.DNSConfig.Searches, tc.searches)
			}
			if tc.applied != nil && !slices.Equal(res.Applied, tc.applied) {
				t.Errorf("applied = %q, want %q", res.Applied, tc.applied)
			}
			if tc.warning != "" && !slices.ContainsFunc(res.Warnings, func(w string) bool { return strings.Contains(w, tc.warning) }) {
				t.Errorf("warnings %q lack %q", res.Warnings, tc.warning)
			}
			if tc.warning == "" && len(res.Warnings) > 0 {
				t.Errorf("unexpected warnings %q", res.Warnings)
			}
			checkOutput(t, pod, env, cfg, res)
		})
	}
}

func TestStatusAnnotation(t *testing.T) {
	env, cfg := testEnv(), testConfig()
	res := Mutate(testPod("shop"), env, cfg)
	got := res.Pod.Annotations[AnnotationStatus]
	want := `{"version":"v1.2.3","applied":["dns-options","ndots","search-scrub"],"resolver":"glibc"}`
	if got != want {
		t.Errorf("status = %s, want %s", got, want)
	}

	t.Run("an earlier pass's record is kept", func(t *testing.T) {
		// A pod mutated with the sidecar by an older version, whose DNS
		// options were since removed by hand: options are added again and
		// the record keeps what the older pass applied.
		pod := testPod("shop")
		pod.Spec.DNSPolicy = corev1.DNSDefault
		pod.Annotations = map[string]string{AnnotationStatus: `{"version":"v0.9.0","applied":["dns-proxy","future-thing"],"dnsProxy":"port"}`}
		res := Mutate(pod, env, cfg)
		st, err := ParseStatus(res.Pod.Annotations[AnnotationStatus])
		if err != nil {
			t.Fatal(err)
		}
		if st.Version != "v1.2.3" || !slices.Equal(st.Applied, []string{AppliedDNSOptions, AppliedDNSProxy, "future-thing"}) || st.DNSProxy != config.DNSProxyModePort {
			t.Errorf("status = %+v", st)
		}
		if !slices.Equal(res.Applied, []string{AppliedDNSOptions}) {
			t.Errorf("applied = %q", res.Applied)
		}
	})
	t.Run("a garbled record is replaced", func(t *testing.T) {
		pod := testPod("shop")
		pod.Annotations = map[string]string{AnnotationStatus: `{not json`}
		res := Mutate(pod, env, cfg)
		if res.Pod.Annotations[AnnotationStatus] != want {
			t.Errorf("status = %s", res.Pod.Annotations[AnnotationStatus])
		}
		checkOutput(t, pod, env, cfg, res)
	})
	t.Run("the input is not modified", func(t *testing.T) {
		pod := testPod("shop")
		before := toYAML(t, pod)
		Mutate(pod, env, cfg)
		if after := toYAML(t, pod); after != before {
			t.Errorf("input changed:\n%s", after)
		}
	})
	t.Run("nil config means the defaults", func(t *testing.T) {
		res := Mutate(testPod("shop"), env, nil)
		if !slices.Equal(res.Applied, []string{AppliedDNSOptions, AppliedNdots, AppliedSearchScrub}) {
			t.Errorf("applied = %q", res.Applied)
		}
	})
}
