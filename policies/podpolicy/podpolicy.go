package podpolicy

import (
	"fmt"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/netguard-io/netguard/config"
)

// NamespaceInfo is what the policy knows of the pod's namespace.
type NamespaceInfo struct {
	// Name of the namespace.
	Name string
	// Labels of the Namespace object; netguard.io/inject selects it.
	Labels map[string]string
	// Annotations of the Namespace object; the netguard.io/ pod annotations
	// set here are the namespace's defaults.
	Annotations map[string]string
}

// Env is what the caller knows of the cluster.
type Env struct {
	// Namespace of the pod. When its Name is empty, the pod's
	// metadata.namespace is used, with no labels or annotations (so in
	// opt-in mode the pod is skipped).
	Namespace NamespaceInfo
	// ClusterDNS is the cluster DNS Service IP; "" when unknown, and then
	// pods are not scrubbed, the sidecar runs in port mode, and a warning
	// says so.
	ClusterDNS string
	// Version of netguard, recorded in the status annotation.
	Version string
}

// Result is the outcome of Mutate.
type Result struct {
	// Pod is the mutated deep copy; equal to the input when nothing applies.
	Pod *corev1.Pod
	// Skipped says why the pod was left unchanged; "" when it was mutated.
	Skipped SkipReason
	// DNSProxySkipped says why a pod that would get the DNS sidecar (image
	// match or annotation) did not; "" otherwise.
	DNSProxySkipped SkipReason
	// Applied names what this call applied, from the Applied* constants.
	Applied []string
	// Warnings are for admission warnings: what the user should know.
	Warnings []string
	// Resolver is the resolver the DNS rules were chosen for, and
	// ResolverFrom what netguard told it from (an annotation, the images,
	// the configured default); empty when the pod was skipped.
	Resolver     config.Resolver
	ResolverFrom string
}

// Mutate applies the pod policies to a copy of pod. Pure: no client calls,
// no I/O. A nil cfg means config.Default().
func Mutate(pod *corev1.Pod, env Env, cfg *config.Config) Result {
	if cfg == nil {
		cfg = config.Default()
	}
	m := &mutator{pod: pod.DeepCopy(), env: env, cfg: cfg, ns: env.Namespace}
	if m.ns.Name == "" {
		m.ns = NamespaceInfo{Name: pod.Namespace}
	}
	m.res.Pod = m.pod

	reason, warnings := skipPod(m.pod, m.ns, cfg)
	m.res.Warnings = warnings
	if reason != "" {
		m.res.Skipped = reason
		return m.res
	}
	m.clusterDNS = m.clusterDNSAddr()
	m.run()

	if len(m.res.Applied) == 0 {
		// Nothing applied: hand back a clean copy, so no unrecorded change
		// can slip through.
		m.res.Pod = pod.DeepCopy()
		m.res.Skipped = SkipNothingToApply
		if _, ok := podStatus(pod); ok {
			m.res.Skipped = SkipAlreadyMutated
		}
		return m.res
	}
	m.writeStatus()
	return m.res
}

// mutator carries one Mutate call.
type mutator struct {
	pod        *corev1.Pod
	env        Env
	cfg        *config.Config
	ns         NamespaceInfo
	clusterDNS string // validated env.ClusterDNS, "" when unknown
	resolver   config.Resolver
	proxyMode  config.DNSProxyMode
	// ndotsKept is set when the pod keeps the kubelet's ndots:5 because
	// its resolver may be musl.
	ndotsKept bool
	res       Result
}

func (m *mutator) warn(msg string) { m.res.Warnings = append(m.res.Warnings, msg) }

func (m *mutator) apply(name string) {
	m.res.Applied = mergeApplied(m.res.Applied, []string{name})
}

// clusterDNSAddr returns env.ClusterDNS if it is an IP address.
func (m *mutator) clusterDNSAddr() string {
	if m.env.ClusterDNS == "" {
		return ""
	}
	addr, err := netip.ParseAddr(m.env.ClusterDNS)
	if err != nil || addr.Zone() != "" {
		m.warn("cluster DNS IP " + m.env.ClusterDNS + " is not an IP address; treated as unknown")
		return ""
	}
	return addr.String()
}

// run applies the policies in order: options and ndots, the sidecar decision
// (its resolv mode owns the pod's resolv.conf), then the rewrite to
// dnsPolicy None, then the sidecar itself.
func (m *mutator) run() {
	m.resolver, m.res.ResolverFrom = m.podResolver()
	m.res.Resolver = m.resolver
	kind := podDNSKind(&m.pod.Spec)
	opts := m.dnsOptions(kind)

	mode, matched := m.planDNSProxy(kind)

	rewritten := false
	if mode == config.DNSProxyModeResolv {
		dc, _ := m.noneDNSConfig(loopbackIP, withNdots(opts))
		m.pod.Spec.DNSConfig = dc
		m.pod.Spec.DNSPolicy = corev1.DNSNone
		m.apply(AppliedSearchScrub)
		rewritten = true
	} else if m.cfg.DNS.Enabled && m.cfg.DNS.Search.Scrub && kind == kindCluster {
		rewritten = m.scrub(opts)
	}
	if !rewritten && len(opts) > 0 && !optionsEqual(opts, m.pod.Spec.DNSConfig) {
		if m.pod.Spec.DNSConfig == nil {
			m.pod.Spec.DNSConfig = &corev1.PodDNSConfig{}
		}
		m.pod.Spec.DNSConfig.Options = opts
	}
	if mode != "" {
		m.injectDNSProxy(mode, matched)
	}
	m.warnResolver()
}

// warnResolver says which fixes a pod whose resolver may be musl goes
// without, and how to get them.
func (m *mutator) warnResolver() {
	var kept []string
	if m.ndotsKept {
		kept = append(kept, fmt.Sprintf("ndots stays 5, as under ndots:%d musl would stop resolving names such as svc.ns.svc", m.cfg.DNS.Ndots))
	}
	switch m.resolver {
	case config.ResolverMusl:
		switch {
		case m.proxyMode == config.DNSProxyModeResolv:
		case m.res.DNSProxySkipped != "":
			kept = append(kept, "the A/AAAA race (5 s lookups) stays, as musl ignores single-request-reopen")
		default:
			kept = append(kept, "the A/AAAA race (5 s lookups) stays, as musl ignores single-request-reopen: annotate "+AnnotationDNSProxy+": resolv for the "+DNSProxyContainerName+" sidecar, which fixes it")
		}
	case config.ResolverUnknown:
		if len(kept) > 0 {
			kept = append(kept, "annotate "+AnnotationResolver+": glibc (or go) if the pod's programs use that resolver")
		}
	}
	if len(kept) > 0 {
		m.warn(fmt.Sprintf("resolver %s (%s): %s", m.resolver, m.res.ResolverFrom, strings.Join(kept, "; ")))
	}
}

// writeStatus records what was applied, merged with what an earlier pass
// recorded, so a later pass that finds nothing new leaves the pod alone.
func (m *mutator) writeStatus() {
	st := Status{Version: m.env.Version, Applied: m.res.Applied, DNSProxy: m.proxyMode, Resolver: m.resolver}
	if prev, ok := podStatus(m.pod); ok {
		st.Applied = mergeApplied(prev.Applied, st.Applied)
		if st.DNSProxy == "" {
			st.DNSProxy = prev.DNSProxy
		}
	}
	if m.pod.Annotations == nil {
		m.pod.Annotations = map[string]string{}
	}
	m.pod.Annotations[AnnotationStatus] = st.String()
}
