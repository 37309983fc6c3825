package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestDefaultsAreValid(t *testing.T) {
	cfg, err := Load("")
	if err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	if cfg.DNS.Ndots != 2 || len(cfg.DNS.Options) != 1 || cfg.DNS.Options[0].Name != "single-request-reopen" {
		t.Errorf("DNS defaults = %+v", cfg.DNS)
	}
	if !cfg.DNS.Search.Scrub || cfg.DNS.Search.ClusterDomain != "cluster.local" || cfg.DNS.Search.ClusterDNSService != "kube-system/kube-dns" {
		t.Errorf("search defaults = %+v", cfg.DNS.Search)
	}
	if cfg.Namespaces.Mode != NamespaceModeOptIn || cfg.ServiceGuard.Mode != GuardModeEnforce || cfg.DNSProxy.Mode != DNSProxyModePort {
		t.Errorf("mode defaults = %s %s %s", cfg.Namespaces.Mode, cfg.ServiceGuard.Mode, cfg.DNSProxy.Mode)
	}
}

func TestParse(t *testing.T) {
	tests := map[string]struct {
		yaml    string
		wantErr string // substring; empty means valid
		check   func(*testing.T, *Config)
	}{
		"empty file keeps defaults": {yaml: "", check: func(t *testing.T, c *Config) {
			if c.DNS.Ndots != 2 {
				t.Errorf("ndots = %d", c.DNS.Ndots)
			}
		}},
		"partial file keeps other defaults": {yaml: "dns:\n  ndots: 3\n", check: func(t *testing.T, c *Config) {
			if c.DNS.Ndots != 3 || !c.DNS.Search.Scrub || len(c.DNS.Options) != 1 {
				t.Errorf("got %+v", c.DNS)
			}
		}},
		"a list replaces the default list": {yaml: "dns:\n  options:\n  - name: single-request\n  - name: timeout\n    value: \"2\"\n", check: func(t *testing.T, c *Config) {
			if len(c.DNS.Options) != 2 || c.DNS.Options[0].Name != "single-request" || *c.DNS.Options[1].Value != "2" {
				t.Errorf("options = %+v", c.DNS.Options)
			}
		}},
		"cluster-wide with exclusions": {yaml: "namespaces:\n  mode: cluster-wide\n  exclude: [monitoring]\n", check: func(t *testing.T, c *Config) {
			if !c.Namespaces.Excluded("monitoring") || !c.Namespaces.Excluded("kube-system") || c.Namespaces.Excluded("team") {
				t.Errorf("exclusions wrong: %+v", c.Namespaces)
			}
		}},
		"unknown field names its path":   {yaml: "dns:\n  ndot: 3\n", wantErr: `unknown field "dns.ndot"`},
		"duplicate field":                {yaml: "dns:\n  ndots: 3\n  ndots: 4\n", wantErr: "ndots"},
		"ndots zero":                     {yaml: "dns:\n  ndots: 0\n", wantErr: "dns.ndots: Invalid value: 0: must be 1..15"},
		"ndots too large":                {yaml: "dns:\n  ndots: 16\n", wantErr: "dns.ndots"},
		"wrong type":                     {yaml: "dns:\n  ndots: two\n", wantErr: "ndots"},
		"ndots as an option":             {yaml: "dns:\n  options:\n  - name: ndots\n", wantErr: "dns.options[0].name"},
		"duplicate option":               {yaml: "dns:\n  options:\n  - name: a\n  - name: a\n", wantErr: "dns.options[1].name: Duplicate value"},
		"option with colon":              {yaml: "dns:\n  options:\n  - name: timeout:2\n", wantErr: "dns.options[0].name"},
		"bad cluster DNS IP":             {yaml: "dns:\n  search:\n    clusterDNS: ten\n", wantErr: "dns.search.clusterDNS"},
		"bad cluster domain":             {yaml: "dns:\n  search:\n    clusterDomain: Bad_Domain\n", wantErr: "dns.search.clusterDomain"},
		"bad DNS service reference":      {yaml: "dns:\n  search:\n    clusterDNSService: kube-dns\n", wantErr: "dns.search.clusterDNSService"},
		"bad allowed search domain":      {yaml: "dns:\n  search:\n    allowed: [\"a b\"]\n", wantErr: "dns.search.allowed[0]"},
		"bad namespace mode":             {yaml: "namespaces:\n  mode: all\n", wantErr: `namespaces.mode: Unsupported value: "all"`},
		"bad excluded namespace":         {yaml: "namespaces:\n  exclude: [Team]\n", wantErr: "namespaces.exclude[0]"},
		"bad sidecar mode":               {yaml: "dnsProxy:\n  mode: socket\n", wantErr: "dnsProxy.mode"},
		"sidecar image with tag pattern": {yaml: "dnsProxy:\n  images: [\"nginx:1.27\"]\n", wantErr: "dnsProxy.images[0]"},
		"sidecar port out of range":      {yaml: "dnsProxy:\n  port: 70000\n", wantErr: "dnsProxy.port"},
		"bad resolver default":           {yaml: "dns:\n  resolver:\n    default: bionic\n", wantErr: `dns.resolver.default: Unsupported value: "bionic"`},
		"glibc image with a tag":         {yaml: "dns:\n  resolver:\n    glibcImages: [\"debian:12\"]\n", wantErr: "dns.resolver.glibcImages[0]"},
		"empty musl image":               {yaml: "dns:\n  resolver:\n    muslImages: [\"\"]\n", wantErr: "dns.resolver.muslImages[0]"},
		"attempt policy, partly given": {yaml: "dnsProxy:\n  attempts:\n    hedgeDelayMin: 5ms\n    maxParallel: 4\n", check: func(t *testing.T, c *Config) {
			want := DefaultDNSProxyAttempts()
			want.HedgeDelayMin, want.MaxParallel = "5ms", 4
			if c.DNSProxy.Attempts != want {
				t.Errorf("attempts = %+v, want %+v", c.DNSProxy.Attempts, want)
			}
		}},
		"bad attempt timeout":        {yaml: "dnsProxy:\n  attempts:\n    timeout: 2\n", wantErr: "dnsProxy.attempts.timeout"},
		"deadline before timeout":    {yaml: "dnsProxy:\n  attempts:\n    timeout: 5s\n", wantErr: "dnsProxy.attempts.deadline"},
		"hedge delays reversed":      {yaml: "dnsProxy:\n  attempts:\n    hedgeDelayMin: 1s\n", wantErr: "dnsProxy.attempts.hedgeDelayMax"},
		"negative hedge delay":       {yaml: "dnsProxy:\n  attempts:\n    hedgeDelayMin: -1ms\n", wantErr: "dnsProxy.attempts.hedgeDelayMin"},
		"too many parallel attempts": {yaml: "dnsProxy:\n  attempts:\n    maxParallel: 65\n", wantErr: "dnsProxy.attempts.maxParallel"},
		"zero hedge budget":          {yaml: "dnsProxy:\n  attempts:\n    hedgeBudget: 0\n", wantErr: "dnsProxy.attempts.hedgeBudget"},
		"warm ports off":             {yaml: "dnsProxy:\n  attempts:\n    warmPortAge: 0s\n"},
		"negative warm port age":     {yaml: "dnsProxy:\n  attempts:\n    warmPortAge: -1s\n", wantErr: "dnsProxy.attempts.warmPortAge"},
		"bad guard mode":             {yaml: "serviceGuard:\n  mode: block\n", wantErr: "serviceGuard.mode"},
		"guard namespace mode":       {yaml: "serviceGuard:\n  namespaceMode: cluster-wide\n"},
		"reports":                    {yaml: "reports:\n  enabled: true\n  interval: 1m\n"},
		"bad reports interval":       {yaml: "reports:\n  interval: 0s\n", wantErr: "reports.interval: Invalid value: \"0s\": must be 1s..24h"},
		"coverage settings":          {yaml: "serviceGuard:\n  coverage: {enabled: false, settle: 1m, maxChecksPerSecond: 20}\n"},
		"bad coverage settle":        {yaml: "serviceGuard:\n  coverage: {settle: soon}\n", wantErr: "serviceGuard.coverage.settle"},
		"coverage rate zero":         {yaml: "serviceGuard:\n  coverage: {maxChecksPerSecond: 0}\n", wantErr: "serviceGuard.coverage.maxChecksPerSecond: Invalid value: 0: must be 1..100000"},
		"bad guard namespace mode":   {yaml: "serviceGuard:\n  namespaceMode: everywhere\n", wantErr: `serviceGuard.namespaceMode: Unsupported value: "everywhere"`},
		"not YAML":                   {yaml: "dns: [\n", wantErr: "not valid YAML"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cfg, err := Parse([]byte(tc.yaml))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if tc.check != nil {
				tc.check(t, cfg)
			}
		})
	}
}

func TestLoadNamesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "netguard.yaml")
	if err := os.WriteFile(path, []byte("dns:\n  ndots: 0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "dns.ndots") {
		t.Fatalf("error = %v, want it to name %s and dns.ndots", err, path)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Fatal("a missing file is not an error")
	}
}

func TestSelfNamespaceFromEnvironment(t *testing.T) {
	t.Setenv("POD_NAMESPACE", "platform-netguard")
	cfg, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Namespaces.Excluded("platform-netguard") {
		t.Errorf("own namespace from POD_NAMESPACE not excluded: %+v", cfg.Namespaces)
	}
}

func TestDNSProxyAttemptFlags(t *testing.T) {
	tests := map[string]struct {
		attempts func(*DNSProxyAttempts)
		want     []string
	}{
		"defaults give no flags":     {attempts: func(*DNSProxyAttempts) {}},
		"same value, other spelling": {attempts: func(a *DNSProxyAttempts) { a.Timeout, a.HedgeDelayMax = "2000ms", "0.5s" }},
		"every value": {
			attempts: func(a *DNSProxyAttempts) {
				*a = DNSProxyAttempts{Timeout: "1s", Deadline: "3s", HedgeDelayMin: "5ms", HedgeDelayMax: "1.5s", MaxParallel: 8, HedgeBudget: 2.5, WarmPortAge: "0s"}
			},
			want: []string{"--timeout", "1s", "--deadline", "3s", "--hedge-delay-min", "5ms", "--hedge-delay-max", "1.5s",
				"--warm-port-age", "0s", "--max-parallel-attempts", "8", "--hedge-budget", "2.5"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			a := DefaultDNSProxyAttempts()
			tc.attempts(&a)
			if got := a.Flags(); !slices.Equal(got, tc.want) {
				t.Errorf("flags %q, want %q", got, tc.want)
			}
		})
	}
}

// TestServiceNamespaces: the Service features follow the pods' namespace
// selection unless serviceGuard.namespaceMode sets their own; exclusions
// and the opt-out label hold either way.
func TestServiceNamespaces(t *testing.T) {
	cases := map[string]struct {
		yaml       string
		ns, label  string
		pods, svcs bool
	}{
		"opt-in, unlabelled":                         {yaml: "", ns: "team", pods: false, svcs: false},
		"opt-in, opted in":                           {yaml: "", ns: "team", label: InjectEnabled, pods: true, svcs: true},
		"services cluster-wide, unlabelled":          {yaml: "serviceGuard: {namespaceMode: cluster-wide}", ns: "team", pods: false, svcs: true},
		"services cluster-wide, opted out":           {yaml: "serviceGuard: {namespaceMode: cluster-wide}", ns: "team", label: InjectDisabled, pods: false, svcs: false},
		"services cluster-wide, excluded":            {yaml: "namespaces: {exclude: [legacy]}\nserviceGuard: {namespaceMode: cluster-wide}", ns: "legacy", pods: false, svcs: false},
		"services cluster-wide, kube-system":         {yaml: "serviceGuard: {namespaceMode: cluster-wide}", ns: "kube-system", pods: false, svcs: false},
		"pods cluster-wide, services opt-in":         {yaml: "namespaces: {mode: cluster-wide}\nserviceGuard: {namespaceMode: opt-in}", ns: "team", pods: true, svcs: false},
		"pods cluster-wide, services follow (unset)": {yaml: "namespaces: {mode: cluster-wide}", ns: "team", pods: true, svcs: true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			cfg, err := Parse([]byte(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Namespaces.Selects(tc.ns, tc.label); got != tc.pods {
				t.Errorf("pods selected = %v, want %v", got, tc.pods)
			}
			if got := cfg.ServiceNamespaces().Selects(tc.ns, tc.label); got != tc.svcs {
				t.Errorf("Services selected = %v, want %v", got, tc.svcs)
			}
		})
	}
}
