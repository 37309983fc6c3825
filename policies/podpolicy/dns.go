package podpolicy

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/netguard-io/netguard/config"
)

// dnsKind is how the kubelet builds a pod's resolv.conf, after its
// fallbacks (pkg/kubelet/network/dns getPodDNSType).
type dnsKind int

const (
	// kindCluster: cluster DNS, the cluster search path plus the node's
	// search domains, options ndots:5.
	kindCluster dnsKind = iota
	// kindHost: the node's resolv.conf.
	kindHost
	// kindNone: only spec.dnsConfig.
	kindNone
)

// kubeletNdots is the ndots the kubelet gives ClusterFirst pods.
const kubeletNdots = "5"

// loopbackIP is where the sidecar listens in resolv mode.
const loopbackIP = "127.0.0.1"

func podDNSKind(spec *corev1.PodSpec) dnsKind {
	switch spec.DNSPolicy {
	case corev1.DNSNone:
		return kindNone
	case corev1.DNSDefault:
		return kindHost
	case corev1.DNSClusterFirst, "":
		if spec.HostNetwork {
			return kindHost
		}
	}
	return kindCluster
}

// dnsConfigProblem returns why the API server would reject the pod's own
// DNS settings, or "".
func dnsConfigProblem(spec *corev1.PodSpec) string {
	switch spec.DNSPolicy {
	case "", corev1.DNSClusterFirst, corev1.DNSClusterFirstWithHostNet, corev1.DNSDefault, corev1.DNSNone:
	default:
		return fmt.Sprintf("spec.dnsPolicy %q is not ClusterFirst, ClusterFirstWithHostNet, Default or None", spec.DNSPolicy)
	}
	dc := spec.DNSConfig
	if spec.DNSPolicy == corev1.DNSNone && (dc == nil || len(dc.Nameservers) == 0) {
		return "spec.dnsConfig.nameservers is empty, and dnsPolicy None needs at least one"
	}
	if dc == nil {
		return ""
	}
	if problem := dnsLimitsProblem(dc.Nameservers, dc.Searches); problem != "" {
		return problem
	}
	for i, ns := range dc.Nameservers {
		if _, err := netip.ParseAddr(ns); err != nil {
			return fmt.Sprintf("spec.dnsConfig.nameservers[%d] %q is not an IP address", i, ns)
		}
	}
	for i, o := range dc.Options {
		if o.Name == "" {
			return fmt.Sprintf("spec.dnsConfig.options[%d].name is empty", i)
		}
	}
	return ""
}

// dnsLimitsProblem checks the API server's (and the kubelet's) limits on a
// pod's DNS lists.
func dnsLimitsProblem(nameservers, searches []string) string {
	if n := len(nameservers); n > config.MaxNameservers {
		return fmt.Sprintf("spec.dnsConfig.nameservers has %d entries, over the limit of %d", n, config.MaxNameservers)
	}
	if n := len(searches); n > config.MaxSearchDomains {
		return fmt.Sprintf("spec.dnsConfig.searches has %d entries, over the limit of %d", n, config.MaxSearchDomains)
	}
	if n := len(strings.Join(searches, " ")); n > config.MaxSearchListChars {
		return fmt.Sprintf("spec.dnsConfig.searches is %d characters long, over the limit of %d", n, config.MaxSearchListChars)
	}
	return ""
}

// dnsOptions returns the pod's options with the configured ones and ndots
// added, and records what it added.
func (m *mutator) dnsOptions(kind dnsKind) []corev1.PodDNSConfigOption {
	var opts []corev1.PodDNSConfigOption
	if dc := m.pod.Spec.DNSConfig; dc != nil {
		opts = cloneOptions(dc.Options)
	}
	if !m.cfg.DNS.Enabled {
		return opts
	}
	added := false
	for _, o := range m.cfg.DNS.Options {
		if optionIndex(opts, o.Name) >= 0 {
			continue
		}
		// single-request is the stricter choice the pod already made.
		if o.Name == "single-request-reopen" && optionIndex(opts, "single-request") >= 0 {
			continue
		}
		if ignoresOption(m.resolver, o.Name) {
			continue
		}
		opts = append(opts, corev1.PodDNSConfigOption{Name: o.Name, Value: cloneString(o.Value)})
		added = true
	}
	if added {
		m.apply(AppliedDNSOptions)
	}

	i := optionIndex(opts, "ndots")
	_, podAnnotated := m.pod.Annotations[AnnotationNdots]
	switch {
	case kind == kindCluster && i < 0:
		n, from := m.ndots()
		if from == "" && !m.resolver.SearchesAfterAbsolute() {
			// The kubelet's ndots:5 stays (a rewrite to dnsPolicy None
			// writes it out): see resolver.go.
			m.ndotsKept = true
			break
		}
		if v, _ := strconv.Atoi(kubeletNdots); from != "" && n < v && !m.resolver.SearchesAfterAbsolute() {
			m.warn(fmt.Sprintf("%s=\"%d\" applied, though the pod's resolver is %s: musl and dig +search do not search names with %d or more dots, such as svc.ns.svc", from, n, m.resolver, n))
		}
		v := strconv.Itoa(n)
		opts = append(opts, corev1.PodDNSConfigOption{Name: "ndots", Value: &v})
		m.apply(AppliedNdots)
	case kind == kindCluster:
		if v := m.pod.Annotations[AnnotationNdots]; podAnnotated && validNdots(v) && optionValue(opts[i]) != v {
			m.warn(fmt.Sprintf("pod annotation %s=%q ignored: the pod sets spec.dnsConfig option ndots:%s", AnnotationNdots, v, optionValue(opts[i])))
		}
	case podAnnotated && i < 0:
		m.warn(fmt.Sprintf("pod annotation %s ignored: dnsPolicy %s does not get the kubelet's ndots:5", AnnotationNdots, m.pod.Spec.DNSPolicy))
	}
	return opts
}

// ndots returns the pod's ndots annotation, else its namespace's, with the
// annotation it came from; else the configured value and "". A bad
// annotation is reported and passed over.
func (m *mutator) ndots() (int, string) {
	if v, ok := m.pod.Annotations[AnnotationNdots]; ok {
		if validNdots(v) {
			n, _ := strconv.Atoi(v)
			return n, "pod annotation " + AnnotationNdots
		}
		m.warn(fmt.Sprintf("pod annotation %s=%q is not a number from 0 to 15; ignored", AnnotationNdots, v))
	}
	if v, ok := m.ns.Annotations[AnnotationNdots]; ok {
		if validNdots(v) {
			n, _ := strconv.Atoi(v)
			return n, "namespace " + m.ns.Name + " annotation " + AnnotationNdots
		}
		m.warn(fmt.Sprintf("namespace %s annotation %s=%q is not a number from 0 to 15; ignored", m.ns.Name, AnnotationNdots, v))
	}
	return m.cfg.DNS.Ndots, ""
}

// validNdots accepts what glibc does for ndots: 0..15.
func validNdots(v string) bool {
	n, err := strconv.Atoi(v)
	return err == nil && n >= 0 && n <= 15 && strconv.Itoa(n) == v
}

// scrub rebuilds a cluster-DNS pod as dnsPolicy None with only the cluster's
// search path, dropping the node's search domains. It reports whether it did.
func (m *mutator) scrub(opts []corev1.PodDNSConfigOption) bool {
	if m.clusterDNS == "" {
		m.warn("search domains not scrubbed: the cluster DNS Service IP is unknown (set dns.search.clusterDNS or check the " + m.cfg.DNS.Search.ClusterDNSService + " Service)")
		return false
	}
	dc, problem := m.noneDNSConfig(m.clusterDNS, withNdots(opts))
	if problem != "" {
		m.warn("search domains not scrubbed: " + problem)
		return false
	}
	m.pod.Spec.DNSConfig = dc
	m.pod.Spec.DNSPolicy = corev1.DNSNone
	m.apply(AppliedSearchScrub)
	return true
}

// noneDNSConfig builds the dnsConfig that, under dnsPolicy None, resolves
// like ClusterFirst through nameserver first, without the node's search
// domains: the cluster search path, the allowed extras, and the nameservers
// and searches the pod listed itself. It returns a problem instead when the
// result would break the API server's limits or the namespace is unknown.
func (m *mutator) noneDNSConfig(first string, opts []corev1.PodDNSConfigOption) (*corev1.PodDNSConfig, string) {
	if m.ns.Name == "" {
		return nil, "the pod's namespace is unknown"
	}
	var own corev1.PodDNSConfig
	if m.pod.Spec.DNSConfig != nil {
		own = *m.pod.Spec.DNSConfig
	}
	nameservers := omitDuplicates(append([]string{first}, own.Nameservers...))
	var searches []string
	if d := m.cfg.DNS.Search.ClusterDomain; d != "" {
		searches = []string{m.ns.Name + ".svc." + d, "svc." + d, d}
	}
	searches = append(searches, m.cfg.DNS.Search.Allowed...)
	searches = omitDuplicates(append(searches, own.Searches...))
	if problem := dnsLimitsProblem(nameservers, searches); problem != "" {
		return nil, problem + " once " + first + " and the cluster search path are added"
	}
	return &corev1.PodDNSConfig{Nameservers: nameservers, Searches: searches, Options: opts}, ""
}

// withNdots keeps the kubelet's ndots:5 for a pod moved to dnsPolicy None
// when no ndots is set, so its lookups behave as before.
func withNdots(opts []corev1.PodDNSConfigOption) []corev1.PodDNSConfigOption {
	if optionIndex(opts, "ndots") >= 0 {
		return opts
	}
	n := kubeletNdots
	return append(opts, corev1.PodDNSConfigOption{Name: "ndots", Value: &n})
}

func optionIndex(opts []corev1.PodDNSConfigOption, name string) int {
	for i, o := range opts {
		if o.Name == name {
			return i
		}
	}
	return -1
}

func optionValue(o corev1.PodDNSConfigOption) string {
	if o.Value == nil {
		return ""
	}
	return *o.Value
}

func optionsEqual(opts []corev1.PodDNSConfigOption, dc *corev1.PodDNSConfig) bool {
	var have []corev1.PodDNSConfigOption
	if dc != nil {
		have = dc.Options
	}
	if len(opts) != len(have) {
		return false
	}
	for i := range opts {
		if opts[i].Name != have[i].Name || (opts[i].Value == nil) != (have[i].Value == nil) || optionValue(opts[i]) != optionValue(have[i]) {
			return false
		}
	}
	return true
}

func cloneOptions(opts []corev1.PodDNSConfigOption) []corev1.PodDNSConfigOption {
	if opts == nil {
		return nil
	}
	out := make([]corev1.PodDNSConfigOption, len(opts))
	for i, o := range opts {
		out[i] = corev1.PodDNSConfigOption{Name: o.Name, Value: cloneString(o.Value)}
	}
	return out
}

func cloneString(s *string) *string {
	if s == nil {
		return nil
	}
	v := *s
	return &v
}

// omitDuplicates keeps the first of equal strings, as the kubelet does.
func omitDuplicates(strs []string) []string {
	seen := make(map[string]bool, len(strs))
	out := make([]string, 0, len(strs))
	for _, s := range strs {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
