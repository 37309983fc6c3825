package podpolicy

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/netguard-io/netguard/config"
)

func TestImageResolver(t *testing.T) {
	rc := config.Default().DNS.Resolver
	cases := map[string]config.Resolver{
		"alpine":                                       config.ResolverMusl,
		"alpine:3.20":                                  config.ResolverMusl,
		"docker.io/library/alpine@sha256:0123":         config.ResolverMusl,
		"mirror.example:5000/base/alpine:3":            config.ResolverMusl,
		"nginx:1.27-alpine":                            config.ResolverMusl,
		"nginx:alpine":                                 config.ResolverMusl,
		"python:3.12-alpine3.20":                       config.ResolverMusl,
		"node:22-Alpine":                               config.ResolverMusl,
		"busybox:1.36-musl":                            config.ResolverMusl,
		"registry.example/app:1.2-alpine@sha256":       config.ResolverMusl,
		"nginx:1.27":                                   config.ResolverGlibc,
		"nginx":                                        config.ResolverGlibc,
		"docker.io/library/python:3.12-slim":           config.ResolverGlibc,
		"debian:12":                                    config.ResolverGlibc,
		"quay.io/example/nginx:1":                      config.ResolverGlibc,
		"ghcr.io/example/api:1.4.2":                    config.ResolverUnknown,
		"gcr.io/distroless/static-debian12":            config.ResolverUnknown,
		"registry.k8s.io/e2e-test-images/agnhost:2.53": config.ResolverUnknown,
		"": config.ResolverUnknown,
		// The repository path decides, not a word inside it.
		"example/alpine-tools:1": config.ResolverUnknown,
		"example/debian-ish:1":   config.ResolverUnknown,
	}
	for image, want := range cases {
		if got := ImageResolver(image, rc); got != want {
			t.Errorf("ImageResolver(%q) = %s, want %s", image, got, want)
		}
	}
	rc.MuslImages = []string{"*/in-house/base"}
	rc.GlibcImages = append(rc.GlibcImages, "team/api")
	if got := ImageResolver("registry.example/in-house/base:7", rc); got != config.ResolverMusl {
		t.Errorf("muslImages: got %s", got)
	}
	if got := ImageResolver("team/api:2", rc); got != config.ResolverGlibc {
		t.Errorf("glibcImages: got %s", got)
	}
	if got := ImageResolver("team/api:2-alpine", rc); got != config.ResolverMusl {
		t.Errorf("an Alpine tag of a glibc repository: got %s, want musl", got)
	}
}

// TestResolverRules mirrors the table in resolver.go: per resolver, what a
// ClusterFirst pod gets.
func TestResolverRules(t *testing.T) {
	const glibcImage, muslImage, otherImage = "python:3.12", "python:3.12-alpine", "ghcr.io/example/app:1"
	cases := map[string]struct {
		images  []string          // the pod's containers
		podAnn  map[string]string // pod annotations
		own     []corev1.PodDNSConfigOption
		nsAnn   map[string]string // namespace annotations
		cfg     func(*config.Config)
		want    config.Resolver
		from    string // substring of ResolverFrom
		options []string
		applied []string
		warning string // substring of one warning; "" means none
	}{
		"glibc image": {
			images: []string{glibcImage}, want: config.ResolverGlibc, from: "image python:3.12",
			options: []string{"single-request-reopen", "ndots:2"}, applied: []string{AppliedDNSOptions, AppliedNdots, AppliedSearchScrub},
		},
		"musl image": {
			images: []string{muslImage}, want: config.ResolverMusl, from: "image python:3.12-alpine",
			options: []string{"ndots:5"}, applied: []string{AppliedSearchScrub},
			warning: "ndots stays 5, as under ndots:2 musl would stop resolving names such as svc.ns.svc; the A/AAAA race (5 s lookups) stays",
		},
		"unclassified image": {
			images: []string{otherImage}, want: config.ResolverUnknown, from: "image ghcr.io/example/app:1 unclassified",
			options: []string{"single-request-reopen", "ndots:5"}, applied: []string{AppliedDNSOptions, AppliedSearchScrub},
			warning: "annotate netguard.io/resolver: glibc (or go)",
		},
		"one musl container makes the pod musl": {
			images: []string{glibcImage, muslImage, otherImage}, want: config.ResolverMusl, options: []string{"ndots:5"},
			warning: "resolver musl (image python:3.12-alpine): ndots stays 5",
		},
		"one unclassified container makes the pod unknown": {
			images: []string{glibcImage, otherImage}, want: config.ResolverUnknown, from: "image ghcr.io/example/app:1 unclassified",
			options: []string{"single-request-reopen", "ndots:5"}, warning: "ndots stays 5",
		},
		"pod annotation go": {
			images: []string{otherImage}, podAnn: map[string]string{AnnotationResolver: "go"}, want: config.ResolverGo, from: "pod annotation",
			options: []string{"ndots:2"}, applied: []string{AppliedNdots, AppliedSearchScrub},
		},
		"pod annotation glibc on an Alpine image": {
			images: []string{muslImage}, podAnn: map[string]string{AnnotationResolver: "glibc"}, want: config.ResolverGlibc,
			options: []string{"single-request-reopen", "ndots:2"},
		},
		"namespace annotation musl": {
			images: []string{glibcImage}, nsAnn: map[string]string{AnnotationResolver: "musl"}, want: config.ResolverMusl, from: "namespace shop annotation",
			options: []string{"ndots:5"}, warning: "ndots stays 5",
		},
		"pod annotation beats the namespace's": {
			images: []string{otherImage}, podAnn: map[string]string{AnnotationResolver: "glibc"}, nsAnn: map[string]string{AnnotationResolver: "musl"},
			want: config.ResolverGlibc, options: []string{"single-request-reopen", "ndots:2"},
		},
		"pod annotation unknown on a glibc image": {
			images: []string{glibcImage}, podAnn: map[string]string{AnnotationResolver: "unknown"}, want: config.ResolverUnknown,
			options: []string{"single-request-reopen", "ndots:5"}, warning: "ndots stays 5",
		},
		"bad annotation is ignored with a warning": {
			images: []string{glibcImage}, podAnn: map[string]string{AnnotationResolver: "bionic"}, want: config.ResolverGlibc,
			options: []string{"single-request-reopen", "ndots:2"}, warning: `pod annotation netguard.io/resolver="bionic" is not one of glibc, musl, go, unknown; ignored`,
		},
		"configured default for unclassified images": {
			images: []string{otherImage}, cfg: func(c *config.Config) { c.DNS.Resolver.Default = config.ResolverGlibc }, want: config.ResolverGlibc,
			from: "dns.resolver.default", options: []string{"single-request-reopen", "ndots:2"},
		},
		"configured default does not override a musl image": {
			images: []string{otherImage, muslImage}, cfg: func(c *config.Config) { c.DNS.Resolver.Default = config.ResolverGlibc }, want: config.ResolverMusl,
			options: []string{"ndots:5"}, warning: "ndots stays 5",
		},
		"ndots annotation applies to musl, with a warning": {
			images: []string{muslImage}, podAnn: map[string]string{AnnotationNdots: "3"}, want: config.ResolverMusl,
			options: []string{"ndots:3"}, applied: []string{AppliedNdots, AppliedSearchScrub},
			warning: `pod annotation netguard.io/ndots="3" applied, though the pod's resolver is musl: musl and dig +search do not search names with 3 or more dots`,
		},
		"ndots annotation of 5 or more on musl: no warning about it": {
			images: []string{muslImage}, podAnn: map[string]string{AnnotationNdots: "6", AnnotationDNSProxy: "false"}, want: config.ResolverMusl,
			options: []string{"ndots:6"}, warning: "the A/AAAA race (5 s lookups) stays, as musl ignores single-request-reopen",
		},
		"the pod's own ndots is kept on musl": {
			images: []string{muslImage}, podAnn: map[string]string{AnnotationDNSProxy: "false"}, want: config.ResolverMusl,
			own:     []corev1.PodDNSConfigOption{opt("timeout", "1"), opt("ndots", "1")},
			options: []string{"timeout:1", "ndots:1"}, applied: []string{AppliedSearchScrub},
			warning: "the A/AAAA race (5 s lookups) stays, as musl ignores single-request-reopen",
		},
		"the netguard-dns container does not count": {
			images: []string{glibcImage, "ghcr.io/netguard-io/netguard:1"}, want: config.ResolverGlibc,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			pod := testPod("shop")
			pod.Spec.Containers = nil
			for i, img := range tc.images {
				c := corev1.Container{Name: "c" + string(rune('0'+i)), Image: img}
				if strings.Contains(img, "netguard") {
					c.Name = DNSProxyContainerName
				}
				pod.Spec.Containers = append(pod.Spec.Containers, c)
			}
			pod.Annotations = tc.podAnn
			if tc.own != nil {
				pod.Spec.DNSConfig = &corev1.PodDNSConfig{Options: tc.own}
			}
			env := testEnv()
			env.Namespace.Annotations = tc.nsAnn
			cfg := testConfig()
			if tc.cfg != nil {
				tc.cfg(cfg)
			}
			res := Mutate(pod, env, cfg)
			if res.Resolver != tc.want {
				t.Errorf("resolver = %s (%s), want %s", res.Resolver, res.ResolverFrom, tc.want)
			}
			if !strings.Contains(res.ResolverFrom, tc.from) {
				t.Errorf("resolver from %q, want it to name %q", res.ResolverFrom, tc.from)
			}
			if st, ok := podStatus(res.Pod); ok && st.Resolver != tc.want {
				t.Errorf("status resolver = %s, want %s", st.Resolver, tc.want)
			}
			if got := optionStrings(res.Pod.Spec.DNSConfig); tc.options != nil && !slices.Equal(got, tc.options) {
				t.Errorf("options = %q, want %q", got, tc.options)
			}
			if tc.applied != nil && !slices.Equal(res.Applied, tc.applied) {
				t.Errorf("applied = %q, want %q", res.Applied, tc.applied)
			}
			switch {
			case tc.warning == "" && len(res.Warnings) > 0:
				t.Errorf("unexpected warnings %q", res.Warnings)
			case tc.warning != "" && !slices.ContainsFunc(res.Warnings, func(w string) bool { return strings.Contains(w, tc.warning) }):
				t.Errorf("warnings %q lack %q", res.Warnings, tc.warning)
			}
			checkOutput(t, pod, env, cfg, res)
		})
	}
}

func TestNdotsLosesNames(t *testing.T) {
	// What an earlier netguard gave every ClusterFirst pod: ndots:2, with a
	// status that names no resolver.
	admitted := func(image string, ndots string, applied ...string) *corev1.Pod {
		pod := testPod("shop")
		pod.Spec.Containers[0].Image = image
		pod.Spec.DNSPolicy = corev1.DNSNone
		pod.Spec.DNSConfig = &corev1.PodDNSConfig{
			Nameservers: []string{"10.96.0.10"}, Searches: []string{"shop.svc.cluster.local", "svc.cluster.local", "cluster.local"},
			Options: []corev1.PodDNSConfigOption{opt("single-request-reopen"), opt("ndots", ndots)},
		}
		pod.Annotations = map[string]string{AnnotationStatus: Status{Version: "v0.3.0", Applied: applied}.String()}
		return pod
	}
	all := []string{AppliedDNSOptions, AppliedNdots, AppliedSearchScrub}
	cases := map[string]struct {
		pod  *corev1.Pod
		ns   map[string]string
		cfg  func(*config.Config)
		want string // substring; "" means not reported
	}{
		"musl pod with ndots:2": {pod: admitted("alpine:3.20", "2", all...),
			want: "netguard v0.3.0 set ndots:2, under which musl no longer resolves names with 2 or more dots such as svc.ns.svc, and this pod's resolver is musl (image alpine:3.20): pods created by this netguard keep ndots:5, roll the workload out again"},
		"unclassified pod with ndots:2": {pod: admitted("ghcr.io/example/app:1", "2", all...), want: "this pod's resolver is unknown (image ghcr.io/example/app:1 unclassified)"},
		"glibc pod":                     {pod: admitted("python:3.12", "2", all...)},
		"unclassified, default glibc":   {pod: admitted("ghcr.io/example/app:1", "2", all...), cfg: func(c *config.Config) { c.DNS.Resolver.Default = config.ResolverGlibc }},
		"annotated go": {pod: func() *corev1.Pod {
			p := admitted("ghcr.io/example/app:1", "2", all...)
			p.Annotations[AnnotationResolver] = "go"
			return p
		}()},
		"ndots was the pod's own":             {pod: admitted("alpine:3.20", "2", AppliedDNSOptions, AppliedSearchScrub)},
		"ndots from the namespace annotation": {pod: admitted("alpine:3.20", "2", all...), ns: map[string]string{AnnotationNdots: "2"}},
		"ndots 5 kept":                        {pod: admitted("alpine:3.20", "5", all...)},
		"not mutated by netguard": {pod: func() *corev1.Pod {
			p := admitted("alpine:3.20", "2", all...)
			p.Annotations = nil
			return p
		}()},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := config.Default()
			if tc.cfg != nil {
				tc.cfg(cfg)
			}
			got := NdotsLosesNames(tc.pod, NamespaceInfo{Name: "shop", Annotations: tc.ns}, cfg)
			if (got == "") != (tc.want == "") || !strings.Contains(got, tc.want) {
				t.Errorf("NdotsLosesNames = %q, want %q", got, tc.want)
			}
		})
	}
	// A musl pod netguard admits now is never reported.
	res := Mutate(func() *corev1.Pod { p := testPod("shop"); p.Spec.Containers[0].Image = "alpine:3.20"; return p }(), testEnv(), testConfig())
	if got := NdotsLosesNames(res.Pod, testEnv().Namespace, testConfig()); got != "" {
		t.Errorf("a pod admitted now is reported: %s", got)
	}
}
