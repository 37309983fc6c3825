package podpolicy

import (
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"

	"github.com/netguard-io/netguard/config"
)

// Whether netguard acts on a pod. The first matching row wins; "-" is any
// value. CFWHN is dnsPolicy ClusterFirstWithHostNet. TestSkipTruthTable
// mirrors this table row by row.
//
//	namespace (mode)                pod annotation        hostNetwork        netguard.io/status          result
//	-------------------------------------------------------------------------------------------------------------------------
//	kube-system, self, exclude      -                     -                  -                           skip namespace-excluded
//	label disabled (any mode)       -                     -                  -                           skip namespace-opted-out
//	no label enabled (opt-in)       -                     -                  -                           skip namespace-not-opted-in
//	selected                        inject=false          -                  -                           skip pod-opted-out
//	selected, annotation false      none                  -                  -                           skip namespace-default-opted-out
//	selected                        true or none          true, not CFWHN    absent                      skip host-network
//	selected                        true or none          -                  present, nothing left       skip already-mutated
//	selected                        true or none          false, or CFWHN    absent, or something left   mutate
//
// Before the namespace rows: both policies disabled in the configuration
// skips every pod (disabled). Between the annotation and hostNetwork rows:
// mirror pods, netguard's own pods and Windows pods are skipped. After the
// hostNetwork row: a pod whose own dnsConfig breaks the API server's limits
// is skipped (invalid-dns-config). A pod without the status annotation that
// already has every setting netguard would apply is skipped as
// nothing-to-apply. (A ClusterFirstWithHostNet pod that netguard scrubbed is
// dnsPolicy None afterwards: the status annotation keeps it off the
// host-network row.)

// NamespaceSelected reports whether netguard acts on pods of namespace ns
// under cfg's namespace mode, labels and exclusions, and if not, why.
func NamespaceSelected(ns NamespaceInfo, cfg *config.Config) (bool, SkipReason) {
	if cfg == nil {
		cfg = config.Default()
	}
	label := ns.Labels[LabelInject]
	switch {
	case cfg.Namespaces.Selects(ns.Name, label):
		return true, ""
	case cfg.Namespaces.Excluded(ns.Name):
		return false, SkipNamespaceExcluded
	case label == LabelInjectDisabled:
		return false, SkipNamespaceOptedOut
	}
	return false, SkipNamespaceNotOptedIn
}

// skipPod decides whether the pod is left alone before any policy runs.
func skipPod(pod *corev1.Pod, ns NamespaceInfo, cfg *config.Config) (SkipReason, []string) {
	if !cfg.DNS.Enabled && !cfg.DNSProxy.Enabled {
		return SkipDisabled, nil
	}
	if ok, reason := NamespaceSelected(ns, cfg); !ok {
		return reason, nil
	}
	var warnings []string
	if v, from, ok := annotation(pod, ns, AnnotationInject); ok {
		inject, err := strconv.ParseBool(v)
		switch {
		case err != nil:
			warnings = append(warnings, fmt.Sprintf("%s=%q is not true or false; ignored", from, v))
		case !inject:
			if _, onPod := pod.Annotations[AnnotationInject]; onPod {
				return SkipOptedOut, nil
			}
			return SkipNamespaceDefaultOptedOut, nil
		}
	}
	if _, ok := pod.Annotations[corev1.MirrorPodAnnotationKey]; ok {
		return SkipMirrorPod, warnings
	}
	if pod.Labels[labelAppName] == netguardAppName {
		return SkipNetguardPod, warnings
	}
	if isWindows(pod) {
		return SkipWindows, warnings
	}
	if _, mutated := podStatus(pod); pod.Spec.HostNetwork && pod.Spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet && !mutated {
		return SkipHostNetwork, warnings
	}
	if problem := dnsConfigProblem(&pod.Spec); problem != "" {
		return SkipInvalidDNSConfig, append(warnings, "netguard left the pod unchanged: "+problem)
	}
	return "", warnings
}

func isWindows(pod *corev1.Pod) bool {
	if pod.Spec.OS != nil && pod.Spec.OS.Name == corev1.Windows {
		return true
	}
	return pod.Spec.NodeSelector[corev1.LabelOSStable] == string(corev1.Windows)
}
