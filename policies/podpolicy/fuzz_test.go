package podpolicy

import (
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"

	"github.com/netguard-io/netguard/config"
)

// fuzzBytes hands out choices from the fuzzer's bytes; zeros once they run out.
type fuzzBytes []byte

func (b *fuzzBytes) next() byte {
	if len(*b) == 0 {
		return 0
	}
	c := (*b)[0]
	*b = (*b)[1:]
	return c
}

func (b *fuzzBytes) intn(n int) int { return int(b.next()) % n }
func (b *fuzzBytes) bool() bool     { return b.next()&1 == 1 }

// pick returns one of vals; "" in vals stands for "absent".
func pick[T any](b *fuzzBytes, vals ...T) T { return vals[b.intn(len(vals))] }

var (
	fuzzNameservers = []string{"10.96.0.10", "192.0.2.1", "192.0.2.2", "198.51.100.1", "127.0.0.1", "fd00::10"}
	fuzzSearches    = []string{
		"shop.svc.cluster.local", "svc.cluster.local", "cluster.local", "example.org", "corp.example.com",
		strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + ".example",
		strings.Repeat("d", 63) + "." + strings.Repeat("e", 63) + "." + strings.Repeat("f", 63) + ".example",
	}
	fuzzImages = []string{
		"nginx:1.27", "docker.io/nginxinc/nginx-unprivileged:1.27-alpine", "registry.k8s.io/ingress-nginx/controller:v1.12@sha256:00",
		"ghcr.io/example/app:1", "busybox", "openresty/openresty",
	}
)

func fuzzOption(b *fuzzBytes) corev1.PodDNSConfigOption {
	switch b.intn(7) {
	case 0:
		return opt("ndots", pick(b, "0", "1", "3", "5", "15"))
	case 1:
		return opt("single-request")
	case 2:
		return opt("single-request-reopen")
	case 3:
		return opt("timeout", pick(b, "1", "2"))
	case 4:
		return opt("attempts", "")
	case 5:
		return opt("") // invalid: the API server rejects it
	default:
		return opt("edns0")
	}
}

func fuzzAnnotations(b *fuzzBytes, keys map[string][]string) map[string]string {
	var m map[string]string
	for _, key := range []string{AnnotationInject, AnnotationNdots, AnnotationDNSProxy, AnnotationStatus, annotationIstioConfig, corev1.MirrorPodAnnotationKey} {
		vals, ok := keys[key]
		if !ok {
			continue
		}
		if v := pick(b, vals...); v != "" {
			if m == nil {
				m = map[string]string{}
			}
			m[key] = v
		}
	}
	return m
}

// fuzzCase builds a pod, its environment and a configuration from data.
func fuzzCase(data []byte) (*corev1.Pod, Env, *config.Config) {
	b := fuzzBytes(data)
	// The environment and configuration come first: they take the bytes
	// that are always there.
	env := Env{
		Namespace:  NamespaceInfo{Name: pick(&b, "shop", "shop", "shop", "shop", "shop", "kube-system"), Labels: map[string]string{LabelInject: pick(&b, "enabled", "enabled", "enabled", "enabled", "disabled", "")}},
		ClusterDNS: pick(&b, "10.96.0.10", "", "fd00::10", "bogus"),
		Version:    "v1",
	}
	env.Namespace.Annotations = fuzzAnnotations(&b, map[string][]string{
		AnnotationInject:   {"", "", "false"},
		AnnotationNdots:    {"", "", "1", "99"},
		AnnotationDNSProxy: {"", "", "true", "false"},
	})
	cfg := testConfig()
	cfg.Namespaces.Mode = pick(&b, config.NamespaceModeOptIn, config.NamespaceModeClusterWide)
	cfg.DNS.Enabled = b.intn(4) != 3
	cfg.DNS.Search.Scrub = b.intn(4) != 3
	cfg.DNS.Ndots = 1 + b.intn(15)
	if b.bool() {
		cfg.DNS.Search.Allowed = []string{"corp.example.com"}
	}
	cfg.DNSProxy.Enabled = b.intn(4) != 3
	cfg.DNSProxy.Mode = pick(&b, config.DNSProxyModePort, config.DNSProxyModeResolv)
	cfg.DNSProxy.NativeSidecar = b.intn(4) != 3

	pod := testPod(env.Namespace.Name)
	spec := &pod.Spec
	spec.DNSPolicy = pick(&b, "", corev1.DNSClusterFirst, corev1.DNSClusterFirstWithHostNet, corev1.DNSDefault, corev1.DNSNone)
	spec.HostNetwork = b.intn(4) == 3
	if b.bool() {
		dc := &corev1.PodDNSConfig{}
		for range b.intn(5) {
			dc.Nameservers = append(dc.Nameservers, pick(&b, fuzzNameservers...))
		}
		for range b.intn(40) {
			dc.Searches = append(dc.Searches, pick(&b, fuzzSearches...)+pick(&b, "", ".", "")+pick(&b, "", "x", "y.z"))
		}
		for range b.intn(5) {
			dc.Options = append(dc.Options, fuzzOption(&b))
		}
		spec.DNSConfig = dc
	}
	pod.Annotations = fuzzAnnotations(&b, map[string][]string{
		AnnotationInject:              {"", "", "true", "false", "junk"},
		AnnotationNdots:               {"", "", "0", "3", "16", "x"},
		AnnotationDNSProxy:            {"", "", "true", "false", "maybe"},
		AnnotationStatus:              {"", "", `{"version":"v0","applied":["dns-options"]}`, `{"version":"v0","applied":["dns-proxy"],"dnsProxy":"port"}`, "garbage"},
		annotationIstioConfig:         {"", "", "", "proxyMetadata:\n  ISTIO_META_DNS_CAPTURE: \"true\"\n"},
		corev1.MirrorPodAnnotationKey: {"", "", "", "", "", "", "abc"},
	})
	if b.intn(8) == 7 {
		pod.Labels = map[string]string{labelAppName: netguardAppName}
	}
	if b.intn(8) == 7 {
		spec.OS = &corev1.PodOS{Name: corev1.Windows}
	}
	spec.Containers = nil
	for i := range 1 + b.intn(3) {
		c := corev1.Container{Name: "c" + strconv.Itoa(i), Image: pick(&b, fuzzImages...)}
		if b.intn(4) == 0 {
			c.Ports = []corev1.ContainerPort{{ContainerPort: pick[int32](&b, 80, 53, 8053, 9153)}}
		}
		if i == 0 && b.intn(6) == 5 {
			c.Name = "istio-proxy"
			c.Env = []corev1.EnvVar{{Name: istioDNSCaptureEnv, Value: pick(&b, "true", "false")}}
		}
		spec.Containers = append(spec.Containers, c)
	}
	for i := range b.intn(3) {
		c := corev1.Container{Name: "i" + strconv.Itoa(i), Image: pick(&b, fuzzImages...)}
		if b.bool() {
			c.RestartPolicy = ptr(corev1.ContainerRestartPolicyAlways)
		}
		spec.InitContainers = append(spec.InitContainers, c)
	}
	if b.bool() {
		spec.Containers = append(spec.Containers, corev1.Container{Name: pick(&b, "x", DNSProxyContainerName), Image: "example/x:1"})
	}
	if !spec.HostNetwork && b.bool() { // net sysctls are invalid with hostNetwork
		spec.SecurityContext = &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{{Name: sysctlUnprivilegedPortStart, Value: pick(&b, "0", "53", "1024", "abc")}}}
	}

	return pod, env, cfg
}

// FuzzMutate builds pods, namespaces and configurations from random bytes
// and checks that Mutate never panics, is idempotent, and never turns a
// pod the API server accepts into one it rejects; pods it would reject are
// left alone.
func FuzzMutate(f *testing.F) {
	for _, seed := range [][]byte{
		nil,
		{1, 0, 1, 3, 0, 1, 2, 5, 0, 2, 1},
		{4, 0, 1, 4, 0, 1, 2, 3, 4, 33, 1, 2, 3, 4, 5, 6, 7},
		{0, 0, 1, 1, 1, 30, 5, 0, 6, 1, 0, 2, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 0, 1, 1},
		[]byte("netguard fuzz seed: nginx in resolv mode with a long search list"),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		pod, env, cfg := fuzzCase(data)
		res := Mutate(pod, env, cfg)
		if res.Pod == pod {
			t.Fatal("Mutate returned its input, not a copy")
		}
		if len(apiProblems(pod)) > 0 && !equality.Semantic.DeepEqual(pod, res.Pod) {
			t.Errorf("input the API server rejects (%v) was changed; skipped %q", apiProblems(pod), res.Skipped)
		}
		checkOutput(t, pod, env, cfg, res)
		if dc := res.Pod.Spec.DNSConfig; dc != nil && len(apiProblems(pod)) == 0 {
			if problem := dnsLimitsProblem(dc.Nameservers, dc.Searches); problem != "" {
				t.Errorf("limits broken: %s", problem)
			}
		}
	})
}
