package config

import (
	"fmt"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// AlwaysExcluded are namespaces netguard never acts on, besides its own:
// mutating kube-system could deadlock cluster bootstrap.
var AlwaysExcluded = []string{"kube-system"}

// Validate checks every setting and returns one error per bad field.
func (c *Config) Validate() field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, c.Namespaces.validate(field.NewPath("namespaces"))...)
	errs = append(errs, c.DNS.validate(field.NewPath("dns"))...)
	errs = append(errs, c.DNSProxy.validate(field.NewPath("dnsProxy"))...)
	errs = append(errs, c.ServiceGuard.validate(field.NewPath("serviceGuard"))...)
	errs = append(errs, c.Conflicts.validate(field.NewPath("conflicts"))...)
	errs = append(errs, c.Reports.validate(field.NewPath("reports"))...)
	return errs
}

func (n *NamespacesConfig) validate(p *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch n.Mode {
	case NamespaceModeOptIn, NamespaceModeClusterWide:
	default:
		errs = append(errs, field.NotSupported(p.Child("mode"), n.Mode, []NamespaceMode{NamespaceModeOptIn, NamespaceModeClusterWide}))
	}
	for i, ns := range n.Exclude {
		for _, msg := range validation.IsDNS1123Label(ns) {
			errs = append(errs, field.Invalid(p.Child("exclude").Index(i), ns, msg))
		}
	}
	if n.Self != "" {
		for _, msg := range validation.IsDNS1123Label(n.Self) {
			errs = append(errs, field.Invalid(p.Child("self"), n.Self, msg))
		}
	}
	return errs
}

// Kubelet and API server limits on a pod's DNS configuration.
const (
	MaxNameservers     = 3
	MaxSearchDomains   = 32
	MaxSearchListChars = 2048
)

func (d *DNSConfig) validate(p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if d.Ndots < 1 || d.Ndots > 15 {
		errs = append(errs, field.Invalid(p.Child("ndots"), d.Ndots, "must be 1..15"))
	}
	seen := map[string]bool{}
	for i, o := range d.Options {
		op := p.Child("options").Index(i)
		switch {
		case o.Name == "":
			errs = append(errs, field.Required(op.Child("name"), "option name is empty"))
		case strings.ContainsAny(o.Name, " \t\n:"):
			errs = append(errs, field.Invalid(op.Child("name"), o.Name, "must be one word without ':' (put the value in 'value')"))
		case o.Name == "ndots":
			errs = append(errs, field.Invalid(op.Child("name"), o.Name, "set ndots with dns.ndots"))
		case seen[o.Name]:
			errs = append(errs, field.Duplicate(op.Child("name"), o.Name))
		}
		seen[o.Name] = true
		if o.Value != nil && strings.ContainsAny(*o.Value, " \t\n") {
			errs = append(errs, field.Invalid(op.Child("value"), *o.Value, "must not contain white space"))
		}
	}
	errs = append(errs, d.Resolver.validate(p.Child("resolver"))...)
	s := p.Child("search")
	for _, msg := range validation.IsDNS1123Subdomain(d.Search.ClusterDomain) {
		errs = append(errs, field.Invalid(s.Child("clusterDomain"), d.Search.ClusterDomain, msg))
	}
	if d.Search.ClusterDNS != "" {
		if _, err := netip.ParseAddr(d.Search.ClusterDNS); err != nil {
			errs = append(errs, field.Invalid(s.Child("clusterDNS"), d.Search.ClusterDNS, "must be an IP address"))
		}
	}
	if ns, name, ok := strings.Cut(d.Search.ClusterDNSService, "/"); !ok || len(validation.IsDNS1123Label(ns)) > 0 || len(validation.IsDNS1035Label(name)) > 0 {
		errs = append(errs, field.Invalid(s.Child("clusterDNSService"), d.Search.ClusterDNSService, "must be NAMESPACE/NAME of a Service"))
	}
	if n := 3 + len(d.Search.Allowed); n > MaxSearchDomains {
		errs = append(errs, field.TooMany(s.Child("allowed"), len(d.Search.Allowed), MaxSearchDomains-3))
	}
	for i, dom := range d.Search.Allowed {
		for _, msg := range validation.IsDNS1123Subdomain(strings.TrimSuffix(dom, ".")) {
			errs = append(errs, field.Invalid(s.Child("allowed").Index(i), dom, msg))
		}
	}
	return errs
}

func (d *DNSProxyConfig) validate(p *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch d.Mode {
	case DNSProxyModePort, DNSProxyModeResolv:
	default:
		errs = append(errs, field.NotSupported(p.Child("mode"), d.Mode, []DNSProxyMode{DNSProxyModePort, DNSProxyModeResolv}))
	}
	if d.Enabled && d.Image == "" {
		errs = append(errs, field.Required(p.Child("image"), "the sidecar needs an image"))
	}
	switch d.ImagePullPolicy {
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		errs = append(errs, field.NotSupported(p.Child("imagePullPolicy"), d.ImagePullPolicy, []corev1.PullPolicy{corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever}))
	}
	errs = append(errs, validateImagePatterns(p.Child("images"), d.Images)...)
	for name, port := range map[string]int32{"port": d.Port, "metricsPort": d.MetricsPort} {
		if port < 1 || port > 65535 {
			errs = append(errs, field.Invalid(p.Child(name), port, "must be 1..65535"))
		}
	}
	if d.Port == d.MetricsPort {
		errs = append(errs, field.Invalid(p.Child("metricsPort"), d.MetricsPort, fmt.Sprintf("must differ from dnsProxy.port (%d)", d.Port)))
	}
	if d.Mode == DNSProxyModeResolv && d.MetricsPort == 53 {
		errs = append(errs, field.Invalid(p.Child("metricsPort"), d.MetricsPort, "port 53 is taken by the forwarder in resolv mode"))
	}
	errs = append(errs, d.Attempts.validate(p.Child("attempts"))...)
	return errs
}

func (g *ServiceGuardConfig) validate(p *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch g.Mode {
	case GuardModeEnforce, GuardModeWarn, GuardModeDryRun:
	default:
		errs = append(errs, field.NotSupported(p.Child("mode"), g.Mode, []GuardMode{GuardModeEnforce, GuardModeWarn, GuardModeDryRun}))
	}
	switch g.NamespaceMode {
	case "", NamespaceModeOptIn, NamespaceModeClusterWide:
	default:
		errs = append(errs, field.NotSupported(p.Child("namespaceMode"), g.NamespaceMode, []NamespaceMode{NamespaceModeOptIn, NamespaceModeClusterWide}))
	}
	return append(errs, g.Coverage.validate(p.Child("coverage"))...)
}

// Values of the netguard.io/inject label on a Namespace.
const (
	// InjectEnabled opts a namespace in.
	InjectEnabled = "enabled"
	// InjectDisabled opts a namespace out in cluster-wide mode.
	InjectDisabled = "disabled"
)

// Selects reports whether netguard acts on namespace name, whose
// netguard.io/inject label has the value label ("" when it has none):
// never on an excluded namespace; in opt-in mode only with InjectEnabled;
// cluster-wide unless InjectDisabled.
func (n NamespacesConfig) Selects(name, label string) bool {
	if n.Excluded(name) || label == InjectDisabled {
		return false
	}
	return n.Mode == NamespaceModeClusterWide || label == InjectEnabled
}

// Excluded reports whether netguard must never act on namespace ns.
func (n NamespacesConfig) Excluded(ns string) bool {
	if ns == n.Self {
		return true
	}
	for _, x := range AlwaysExcluded {
		if ns == x {
			return true
		}
	}
	for _, x := range n.Exclude {
		if ns == x {
			return true
		}
	}
	return false
}
