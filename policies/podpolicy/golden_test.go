package podpolicy

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/netguard-io/netguard/config"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// goldenNodeResolvConf is the node's resolv.conf the golden summaries render
// against: a search domain leaked from DHCP, as in the outages netguard is
// for.
const goldenNodeResolvConf = "search example.org corp.example.com\nnameserver 192.0.2.53\noptions edns0 trust-ad\n"

const goldenClusterDNS = "10.96.0.10"

// goldenSummary is the first document of an .out.yaml file.
type goldenSummary struct {
	Skipped         string   `json:"skipped,omitempty"`
	SkipLabel       string   `json:"skipLabel"`
	DNSProxySkipped string   `json:"dnsProxySkipped,omitempty"`
	Applied         []string `json:"applied"`
	Resolver        string   `json:"resolver,omitempty"`
	ResolverFrom    string   `json:"resolverFrom,omitempty"`
	Warnings        []string `json:"warnings"`
	// ResolvConf is what the kubelet writes for the output pod on a node
	// with goldenNodeResolvConf.
	ResolvConf string `json:"resolvConf"`
}

// TestGolden runs Mutate on testdata/golden/NAME.in.yaml and compares with
// NAME.out.yaml: a result summary, then the output pod. Rewrite the outputs
// with `go test ./policies/podpolicy -update` and review the diff.
func TestGolden(t *testing.T) {
	cases := map[string]struct {
		env func(*Env)
		cfg func(*config.Config)
		// restricted: the input meets Pod Security "restricted", so the
		// output must too (checkOutput), sysctl and sidecar included.
		restricted bool
	}{
		"plain":                    {},
		"own-options":              {},
		"dnspolicy-default":        {},
		"dnspolicy-none":           {},
		"clusterfirstwithhostnet":  {},
		"hostnetwork-clusterfirst": {},
		"already-mutated":          {},
		"over-limits":              {},
		"nginx-port":               {},
		"nginx-resolv":             {cfg: func(c *config.Config) { c.DNSProxy.Mode = config.DNSProxyModeResolv }},
		"loki-gateway-resolv":      {cfg: func(c *config.Config) { c.DNSProxy.Mode = config.DNSProxyModeResolv }},
		"nginx-plain-container":    {cfg: func(c *config.Config) { c.DNSProxy.NativeSidecar = false }},
		"nginx-tuned-attempts": {cfg: func(c *config.Config) {
			c.DNSProxy.Attempts.HedgeDelayMin, c.DNSProxy.Attempts.MaxParallel = "25ms", 8
		}},
		"ingress-nginx-controller": {},
		"dns-proxy-false":          {},
		"istio-dns-capture":        {},
		"windows":                  {},
		"mirror":                   {},
		"cluster-dns-unknown":      {env: func(e *Env) { e.ClusterDNS = "" }},
		"namespace-defaults": {env: func(e *Env) {
			e.Namespace.Annotations = map[string]string{AnnotationNdots: "1", AnnotationDNSProxy: "true"}
		}},
		"scrub-disabled":              {cfg: func(c *config.Config) { c.DNS.Search.Scrub = false }},
		"allowed-search-domains":      {cfg: func(c *config.Config) { c.DNS.Search.Allowed = []string{"corp.example.com"} }},
		"single-request":              {},
		"bad-ndots-annotation":        {},
		"nginx-hostnetwork-cfwhn":     {},
		"resolv-sysctl-lowered":       {cfg: func(c *config.Config) { c.DNSProxy.Mode = config.DNSProxyModeResolv }},
		"resolv-too-many-nameservers": {cfg: func(c *config.Config) { c.DNSProxy.Mode = config.DNSProxyModeResolv }},
		// The pod's resolver decides ndots and the options (resolver.go).
		"alpine":                    {},
		"debian":                    {},
		"resolver-annotation-glibc": {},
		"resolver-annotation-go":    {},
		"alpine-sidecar-container":  {},
		"nginx-alpine":              {},
		"alpine-for-musl":           {cfg: func(c *config.Config) { c.DNSProxy.ForMusl = true }, restricted: true},
		"alpine-dns-proxy-resolv":   {},
		"alpine-resolv-unavailable": {env: func(e *Env) { e.ClusterDNS = "" }},
		"resolver-default-glibc":    {cfg: func(c *config.Config) { c.DNS.Resolver.Default = config.ResolverGlibc }},
		"alpine-namespace-ndots": {env: func(e *Env) {
			e.Namespace.Annotations = map[string]string{AnnotationNdots: "2"}
		}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			in := readPod(t, filepath.Join("testdata", "golden", name+".in.yaml"))
			env := Env{
				Namespace:  NamespaceInfo{Name: in.Namespace, Labels: map[string]string{LabelInject: LabelInjectEnabled}},
				ClusterDNS: goldenClusterDNS,
				Version:    "v0.0.0-test",
			}
			cfg := config.Default()
			cfg.Namespaces.Self = "netguard"
			if tc.env != nil {
				tc.env(&env)
			}
			if tc.cfg != nil {
				tc.cfg(cfg)
			}
			if errs := cfg.Validate(); len(errs) > 0 {
				t.Fatalf("test config: %v", errs)
			}

			if p := restrictedProblems(in); tc.restricted && len(p) > 0 {
				t.Fatalf("input does not meet Pod Security restricted: %v", p)
			}
			res := Mutate(in, env, cfg)
			checkOutput(t, in, env, cfg, res)

			resolv, err := RenderResolvConf(res.Pod, []byte(goldenNodeResolvConf), goldenClusterDNS, cfg.DNS.Search.ClusterDomain)
			if err != nil {
				resolv = "error: " + err.Error()
			}
			summary := goldenSummary{
				Skipped: string(res.Skipped), SkipLabel: res.Skipped.Label(), DNSProxySkipped: string(res.DNSProxySkipped),
				Applied: nonNil(res.Applied), Resolver: string(res.Resolver), ResolverFrom: res.ResolverFrom,
				Warnings: nonNil(res.Warnings), ResolvConf: resolv,
			}
			var got bytes.Buffer
			got.WriteString("# Generated by `go test ./policies/podpolicy -update` from " + name + ".in.yaml.\n")
			got.WriteString(toYAML(t, summary))
			got.WriteString("---\n")
			got.WriteString(toYAML(t, res.Pod))

			outPath := filepath.Join("testdata", "golden", name+".out.yaml")
			if *update {
				if err := os.WriteFile(outPath, got.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(outPath)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(want, got.Bytes()) {
				t.Errorf("%s differs from the output (run with -update and review the diff):\n%s", outPath, got.String())
			}
		})
	}
}

func readPod(t *testing.T, path string) *corev1.Pod {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var pod corev1.Pod
	if err := yaml.UnmarshalStrict(data, &pod); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return &pod
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
