package podpolicy

// SkipReason says why netguard left a pod, or a part of its policy, alone.
// The text is written for people (logs, admission warnings); Label gives a
// short stable value for the one metric label that carries it.
type SkipReason string

// Reasons for leaving a whole pod alone.
const (
	// SkipDisabled: both pod policies are turned off in the configuration.
	SkipDisabled SkipReason = "pod policies disabled in netguard configuration (dns.enabled and dnsProxy.enabled are false)"
	// SkipNamespaceExcluded: kube-system, netguard's own namespace and
	// namespaces.exclude are never acted on.
	SkipNamespaceExcluded SkipReason = "namespace excluded by netguard configuration"
	// SkipNamespaceNotOptedIn: opt-in mode and the namespace lacks the label.
	SkipNamespaceNotOptedIn SkipReason = "namespace lacks label netguard.io/inject=enabled"
	// SkipNamespaceOptedOut: the namespace carries netguard.io/inject=disabled.
	SkipNamespaceOptedOut SkipReason = "namespace label netguard.io/inject=disabled"
	// SkipOptedOut: the pod's own annotation opts it out.
	SkipOptedOut SkipReason = "pod annotation netguard.io/inject=false"
	// SkipNamespaceDefaultOptedOut: the namespace annotation opts its pods out
	// and the pod does not override it.
	SkipNamespaceDefaultOptedOut SkipReason = "namespace annotation netguard.io/inject=false"
	// SkipMirrorPod: the kubelet owns mirror pods of static pods.
	SkipMirrorPod SkipReason = "mirror pod of a static pod (annotation kubernetes.io/config.mirror)"
	// SkipNetguardPod: netguard never mutates itself.
	SkipNetguardPod SkipReason = "netguard's own pod (label app.kubernetes.io/name=netguard)"
	// SkipWindows: resolv.conf options do nothing on Windows nodes.
	SkipWindows SkipReason = "Windows pod (spec.os.name or nodeSelector kubernetes.io/os)"
	// SkipHostNetwork: with hostNetwork the kubelet gives the pod the node's
	// resolv.conf unless dnsPolicy is ClusterFirstWithHostNet.
	SkipHostNetwork SkipReason = "hostNetwork pod without dnsPolicy ClusterFirstWithHostNet"
	// SkipInvalidDNSConfig: the pod's own DNS settings break the API server's
	// rules; it is left for the API server to reject with its own message.
	SkipInvalidDNSConfig SkipReason = "pod spec.dnsPolicy/dnsConfig over the API server's limits or incomplete"
	// SkipAlreadyMutated: the pod carries netguard.io/status and nothing is
	// left to apply.
	SkipAlreadyMutated SkipReason = "pod already mutated (annotation netguard.io/status)"
	// SkipNothingToApply: every setting netguard would apply is already there.
	SkipNothingToApply SkipReason = "pod already has every setting netguard would apply"
)

// Reasons for not injecting the DNS sidecar into a pod that would get it.
const (
	// SkipDNSProxyOptedOut: annotation netguard.io/dns-proxy=false on the pod
	// or its namespace.
	SkipDNSProxyOptedOut SkipReason = "annotation netguard.io/dns-proxy=false"
	// SkipDNSProxyDisabled: dnsProxy.enabled is false in the configuration.
	SkipDNSProxyDisabled SkipReason = "dnsProxy.enabled is false in netguard configuration"
	// SkipDNSProxyHostNetwork: a hostNetwork pod shares the node's loopback,
	// so its sidecar would collide with every other one on the node.
	SkipDNSProxyHostNetwork SkipReason = "DNS sidecar cannot run in a hostNetwork pod"
	// SkipIstioDNSCapture: Istio's agent already proxies the pod's DNS;
	// netguard never stacks a second proxy on it.
	SkipIstioDNSCapture SkipReason = "Istio captures the pod's DNS (ISTIO_META_DNS_CAPTURE=true)"
	// SkipDNSProxyPortConflict: a container already declares a port the
	// sidecar would bind.
	SkipDNSProxyPortConflict SkipReason = "a container already declares a port the DNS sidecar needs"
	// SkipDNSProxyResolvUnavailable: the sidecar was asked for in resolv
	// mode (annotation, or dnsProxy.forMusl) and the pod cannot have it
	// there (cluster DNS IP unknown, its own dnsPolicy, port 53 taken).
	SkipDNSProxyResolvUnavailable SkipReason = "the DNS sidecar was asked for in resolv mode, which the pod cannot have"
)

// Label returns a short, stable name for r, fit for a bounded metric label.
// Unknown reasons map to "other" so the label set stays bounded.
func (r SkipReason) Label() string {
	switch r {
	case "":
		return "none"
	case SkipDisabled:
		return "disabled"
	case SkipNamespaceExcluded:
		return "namespace-excluded"
	case SkipNamespaceNotOptedIn:
		return "namespace-not-opted-in"
	case SkipNamespaceOptedOut:
		return "namespace-opted-out"
	case SkipOptedOut:
		return "pod-opted-out"
	case SkipNamespaceDefaultOptedOut:
		return "namespace-default-opted-out"
	case SkipMirrorPod:
		return "mirror-pod"
	case SkipNetguardPod:
		return "netguard-pod"
	case SkipWindows:
		return "windows"
	case SkipHostNetwork:
		return "host-network"
	case SkipInvalidDNSConfig:
		return "invalid-dns-config"
	case SkipAlreadyMutated:
		return "already-mutated"
	case SkipNothingToApply:
		return "nothing-to-apply"
	case SkipDNSProxyOptedOut:
		return "dns-proxy-opted-out"
	case SkipDNSProxyDisabled:
		return "dns-proxy-disabled"
	case SkipDNSProxyHostNetwork:
		return "dns-proxy-host-network"
	case SkipIstioDNSCapture:
		return "istio-dns-capture"
	case SkipDNSProxyPortConflict:
		return "dns-proxy-port-conflict"
	case SkipDNSProxyResolvUnavailable:
		return "dns-proxy-resolv-unavailable"
	}
	return "other"
}

// String returns the readable text of r.
func (r SkipReason) String() string { return string(r) }

// SkipReasons returns every reason, for tests and for initialising metric
// series to zero.
func SkipReasons() []SkipReason {
	return []SkipReason{
		SkipDisabled, SkipNamespaceExcluded, SkipNamespaceNotOptedIn, SkipNamespaceOptedOut,
		SkipOptedOut, SkipNamespaceDefaultOptedOut, SkipMirrorPod, SkipNetguardPod, SkipWindows,
		SkipHostNetwork, SkipInvalidDNSConfig, SkipAlreadyMutated, SkipNothingToApply,
		SkipDNSProxyOptedOut, SkipDNSProxyDisabled, SkipDNSProxyHostNetwork, SkipIstioDNSCapture,
		SkipDNSProxyPortConflict, SkipDNSProxyResolvUnavailable,
	}
}
