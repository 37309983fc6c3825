package podpolicy

import (
	"encoding/json"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/netguard-io/netguard/config"
)

// Annotations and labels netguard reads and writes. The pod annotations can
// also be set on a Namespace, where they give that namespace's default; a
// pod's own annotation wins.
const (
	// AnnotationInject "false" leaves the pod alone.
	AnnotationInject = "netguard.io/inject"
	// AnnotationNdots "N" (0..15) is the ndots value for the pod.
	AnnotationNdots = "netguard.io/ndots"
	// AnnotationDNSProxy "true" forces the DNS sidecar in the configured
	// mode, "port" or "resolv" in that mode, "false" prevents it.
	AnnotationDNSProxy = "netguard.io/dns-proxy"
	// AnnotationResolver "glibc", "musl", "go" or "unknown" names the DNS
	// resolver the pod's programs use, which netguard otherwise tells from
	// the images (see config.Resolver).
	AnnotationResolver = "netguard.io/resolver"
	// AnnotationStatus is written by netguard: what it applied, and its
	// version, as compact JSON (see Status).
	AnnotationStatus = "netguard.io/status"

	// LabelInject on a Namespace opts it in (LabelInjectEnabled) or, in
	// cluster-wide mode, out (LabelInjectDisabled).
	LabelInject = "netguard.io/inject"
	// LabelInjectEnabled opts a namespace in.
	LabelInjectEnabled = config.InjectEnabled
	// LabelInjectDisabled opts a namespace out.
	LabelInjectDisabled = config.InjectDisabled
	// LabelDNSSidecar is set on the pods netguard injects the DNS sidecar
	// into, to the sidecar's mode (port or resolv), so that a PodMonitor or
	// `kubectl get pods -l` can select them.
	LabelDNSSidecar = "netguard.io/dns-sidecar"

	// DNSProxyContainerName names the injected sidecar; its presence makes
	// injection idempotent, also across other mutating webhooks.
	DNSProxyContainerName = "netguard-dns"
)

// Names of what Mutate applies, in Result.Applied and Status.Applied, in
// this order.
const (
	AppliedDNSOptions  = "dns-options"
	AppliedNdots       = "ndots"
	AppliedSearchScrub = "search-scrub"
	AppliedDNSProxy    = "dns-proxy"
)

var appliedOrder = []string{AppliedDNSOptions, AppliedNdots, AppliedSearchScrub, AppliedDNSProxy}

// Labels and annotations of other owners that decide a skip.
const (
	labelAppName          = "app.kubernetes.io/name"
	netguardAppName       = "netguard"
	annotationIstioConfig = "proxy.istio.io/config"
	istioProxyContainer   = "istio-proxy"
	istioDNSCaptureEnv    = "ISTIO_META_DNS_CAPTURE"
)

// Status is the content of the netguard.io/status annotation.
type Status struct {
	// Version of netguard that wrote the annotation.
	Version string `json:"version"`
	// Applied lists what was applied, in the order of the Applied* names.
	Applied []string `json:"applied"`
	// DNSProxy is the sidecar's mode, when one was injected.
	DNSProxy config.DNSProxyMode `json:"dnsProxy,omitempty"`
	// Resolver is the resolver the DNS rules were chosen for; absent in
	// pods mutated before netguard told resolvers apart.
	Resolver config.Resolver `json:"resolver,omitempty"`
}

// ParseStatus decodes a netguard.io/status annotation value.
func ParseStatus(s string) (Status, error) {
	var st Status
	if err := json.Unmarshal([]byte(s), &st); err != nil {
		return Status{}, fmt.Errorf("parsing annotation %s: %w", AnnotationStatus, err)
	}
	return st, nil
}

// String encodes st as the compact JSON stored in the annotation.
func (st Status) String() string {
	b, err := json.Marshal(st)
	if err != nil { // cannot happen: only strings
		panic(err)
	}
	return string(b)
}

// podStatus returns the pod's parsed status annotation, if it has a valid one.
func podStatus(pod *corev1.Pod) (Status, bool) {
	v, ok := pod.Annotations[AnnotationStatus]
	if !ok {
		return Status{}, false
	}
	st, err := ParseStatus(v)
	return st, err == nil
}

// mergeApplied returns the union of a and b in canonical order; unknown
// names (from another netguard version) are kept after the known ones.
func mergeApplied(a, b []string) []string {
	out := []string{}
	for _, name := range appliedOrder {
		if slices.Contains(a, name) || slices.Contains(b, name) {
			out = append(out, name)
		}
	}
	for _, name := range append(slices.Clone(a), b...) {
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out
}

// annotation looks key up on the pod, then on its namespace; from says
// which object the value came from, for warnings.
func annotation(pod *corev1.Pod, ns NamespaceInfo, key string) (value, from string, ok bool) {
	if v, ok := pod.Annotations[key]; ok {
		return v, "pod annotation " + key, true
	}
	if v, ok := ns.Annotations[key]; ok {
		return v, "namespace " + ns.Name + " annotation " + key, true
	}
	return "", "", false
}
