package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"

	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Config is the whole settings file.
type Config struct {
	// Namespaces decides which namespaces netguard acts on.
	Namespaces NamespacesConfig `json:"namespaces"`
	// DNS is the pod DNS hardening policy.
	DNS DNSConfig `json:"dns"`
	// DNSProxy is the fresh-port DNS forwarder sidecar.
	DNSProxy DNSProxyConfig `json:"dnsProxy"`
	// ServiceGuard is the Service selector guard.
	ServiceGuard ServiceGuardConfig `json:"serviceGuard"`
	// Conflicts detects controllers fighting over a Service.
	Conflicts ConflictsConfig `json:"conflicts"`
	// Reports publishes what netguard finds as OpenReports Reports.
	Reports ReportsConfig `json:"reports"`
}

// NamespaceMode says how namespaces are selected.
type NamespaceMode string

const (
	// NamespaceModeOptIn acts only on namespaces labelled netguard.io/inject=enabled.
	NamespaceModeOptIn NamespaceMode = "opt-in"
	// NamespaceModeClusterWide acts on every namespace except those labelled
	// netguard.io/inject=disabled and the excluded ones.
	NamespaceModeClusterWide NamespaceMode = "cluster-wide"
)

// NamespacesConfig selects the namespaces netguard acts on.
type NamespacesConfig struct {
	// Mode is opt-in or cluster-wide. Defaults to opt-in.
	Mode NamespaceMode `json:"mode"`
	// Exclude lists namespaces never acted on, in addition to kube-system and
	// netguard's own namespace, which are always excluded.
	Exclude []string `json:"exclude,omitempty"`
	// Self is netguard's own namespace. Defaults to $POD_NAMESPACE, else "netguard".
	Self string `json:"self,omitempty"`
}

// DNSConfig is the pod DNS hardening policy.
type DNSConfig struct {
	// Enabled turns the pod DNS policy on. Defaults to true.
	Enabled bool `json:"enabled"`
	// Options are resolv.conf options added to every mutated pod, unless the
	// pod already sets an option of the same name.
	// Defaults to [single-request-reopen].
	Options []DNSOption `json:"options"`
	// Ndots is the ndots value given to pods whose resolv.conf would get the
	// kubelet's ndots:5, that do not set their own, and whose resolver
	// searches a name after its absolute lookup fails (glibc, Go). Pods
	// whose resolver never does (musl) or is unknown keep ndots:5, so that
	// names such as svc.ns.svc keep resolving. Defaults to 2.
	Ndots int `json:"ndots"`
	// Resolver tells netguard which DNS resolver a pod's programs use.
	Resolver ResolverConfig `json:"resolver"`
	// Search controls the scrubbing of search domains leaked from the node.
	Search SearchConfig `json:"search"`
}

// DNSOption is one resolv.conf option, as in a pod's spec.dnsConfig.options.
type DNSOption struct {
	// Name of the option, e.g. single-request-reopen or timeout.
	Name string `json:"name"`
	// Value of the option, if it takes one.
	Value *string `json:"value,omitempty"`
}

// SearchConfig controls search-domain scrubbing.
type SearchConfig struct {
	// Scrub rebuilds ClusterFirst pods as dnsPolicy None with only the
	// cluster's search path, so search domains leaked from the node are
	// dropped. Defaults to true.
	Scrub bool `json:"scrub"`
	// ClusterDomain is the cluster's DNS domain. Defaults to cluster.local.
	ClusterDomain string `json:"clusterDomain"`
	// ClusterDNS is the cluster DNS Service IP. Empty means discover it from
	// the kube-system/kube-dns Service; while it is unknown, pods are not
	// scrubbed and a warning says so.
	ClusterDNS string `json:"clusterDNS,omitempty"`
	// ClusterDNSService is the Service read to discover the cluster DNS IP.
	// Defaults to kube-system/kube-dns.
	ClusterDNSService string `json:"clusterDNSService"`
	// Allowed lists extra search domains kept after the cluster's own.
	Allowed []string `json:"allowed,omitempty"`
}

// Default returns the settings used when there is no file.
func Default() *Config {
	return &Config{
		Namespaces: NamespacesConfig{Mode: NamespaceModeOptIn},
		DNS: DNSConfig{
			Enabled:  true,
			Options:  []DNSOption{{Name: "single-request-reopen"}},
			Ndots:    2,
			Resolver: defaultResolver(),
			Search: SearchConfig{
				Scrub:             true,
				ClusterDomain:     "cluster.local",
				ClusterDNSService: "kube-system/kube-dns",
			},
		},
		DNSProxy:     defaultDNSProxy(),
		ServiceGuard: defaultServiceGuard(),
		Conflicts:    defaultConflicts(),
		Reports:      defaultReports(),
	}
}

// Load reads, defaults and validates the settings file at path. An empty
// path gives the defaults. Unknown fields and bad values are errors that
// name the field.
func Load(path string) (*Config, error) {
	cfg := Default()
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("reading config: %w", err)
		}
		if err := decodeInto(cfg, data); err != nil {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
	}
	cfg.complete()
	if errs := cfg.Validate(); len(errs) > 0 {
		if path == "" {
			path = "(defaults)"
		}
		return nil, fmt.Errorf("config %s: %w", path, errs.ToAggregate())
	}
	return cfg, nil
}

// Parse decodes settings from YAML over the defaults and validates them.
func Parse(data []byte) (*Config, error) {
	cfg := Default()
	if err := decodeInto(cfg, data); err != nil {
		return nil, err
	}
	cfg.complete()
	if errs := cfg.Validate(); len(errs) > 0 {
		return nil, errs.ToAggregate()
	}
	return cfg, nil
}

// decodeInto decodes YAML over cfg. Fields absent from the file keep their
// defaults; a list given in the file replaces the default list.
func decodeInto(cfg *Config, data []byte) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return fmt.Errorf("not valid YAML: %w", err)
	}
	if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
		return nil
	}
	strict, err := sigsjson.UnmarshalStrict(js, cfg, sigsjson.DisallowUnknownFields, sigsjson.DisallowDuplicateFields)
	if err != nil {
		return fmt.Errorf("decoding: %w", err)
	}
	if len(strict) > 0 {
		// sigs.k8s.io/json names the full path: unknown field "dns.ndot".
		msgs := make([]string, len(strict))
		for i, e := range strict {
			msgs[i] = e.Error()
		}
		return errors.New(strings.Join(msgs, "; "))
	}
	return nil
}

// complete fills values that depend on the environment.
func (c *Config) complete() {
	if c.Namespaces.Self == "" {
		c.Namespaces.Self = os.Getenv("POD_NAMESPACE")
	}
	if c.Namespaces.Self == "" {
		c.Namespaces.Self = "netguard"
	}
}
