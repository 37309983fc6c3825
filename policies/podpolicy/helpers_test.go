package podpolicy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/util/validation"
	psaapi "k8s.io/pod-security-admission/api"
	psapolicy "k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/yaml"

	"github.com/netguard-io/netguard/config"
)

// apiProblems checks what the API server's pod validation checks on the
// fields netguard writes (k8s.io/kubernetes is not a dependency). It is
// written apart from the package's own checks on purpose.
func apiProblems(pod *corev1.Pod) []string {
	var p []string
	spec := &pod.Spec
	switch spec.DNSPolicy {
	case "", corev1.DNSClusterFirst, corev1.DNSClusterFirstWithHostNet, corev1.DNSDefault, corev1.DNSNone:
	default:
		p = append(p, "unknown dnsPolicy "+string(spec.DNSPolicy))
	}
	dc := spec.DNSConfig
	if spec.DNSPolicy == corev1.DNSNone && (dc == nil || len(dc.Nameservers) == 0) {
		p = append(p, "dnsPolicy None without nameservers")
	}
	if dc != nil {
		if len(dc.Nameservers) > 3 {
			p = append(p, fmt.Sprintf("%d nameservers", len(dc.Nameservers)))
		}
		for _, ns := range dc.Nameservers {
			if _, err := netip.ParseAddr(ns); err != nil {
				p = append(p, "nameserver "+ns+" is not an IP")
			}
		}
		if len(dc.Searches) > 32 {
			p = append(p, fmt.Sprintf("%d searches", len(dc.Searches)))
		}
		if n := len(strings.Join(dc.Searches, " ")); n > 2048 {
			p = append(p, fmt.Sprintf("search line of %d characters", n))
		}
		for _, s := range dc.Searches {
			if s == "." {
				continue
			}
			for _, msg := range validation.IsDNS1123SubdomainWithUnderscore(strings.TrimSuffix(s, ".")) {
				p = append(p, "search "+s+": "+msg)
			}
		}
		for _, o := range dc.Options {
			if o.Name == "" {
				p = append(p, "empty option name")
			}
		}
	}
	names := map[string]bool{}
	for i, c := range append(append([]corev1.Container(nil), spec.InitContainers...), spec.Containers...) {
		init := i < len(spec.InitContainers)
		if names[c.Name] {
			p = append(p, "duplicate container name "+c.Name)
		}
		names[c.Name] = true
		for _, msg := range validation.IsDNS1123Label(c.Name) {
			p = append(p, "container name "+c.Name+": "+msg)
		}
		always := c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
		if init && c.RestartPolicy != nil && !always {
			p = append(p, "init container "+c.Name+" restartPolicy "+string(*c.RestartPolicy))
		}
		if init && !always && (c.StartupProbe != nil || c.LivenessProbe != nil || c.ReadinessProbe != nil || c.Lifecycle != nil) {
			p = append(p, "init container "+c.Name+" has probes without restartPolicy Always")
		}
		if !init && c.RestartPolicy != nil {
			p = append(p, "container "+c.Name+" sets restartPolicy")
		}
		ports := map[string]bool{}
		for _, port := range c.Ports {
			if port.Name != "" {
				for _, msg := range validation.IsValidPortName(port.Name) {
					p = append(p, "port name "+port.Name+": "+msg)
				}
				if ports[port.Name] {
					p = append(p, "duplicate port name "+port.Name)
				}
				ports[port.Name] = true
			}
			if port.ContainerPort < 1 || port.ContainerPort > 65535 {
				p = append(p, fmt.Sprintf("containerPort %d", port.ContainerPort))
			}
		}
	}
	if sc := spec.SecurityContext; sc != nil {
		seen := map[string]bool{}
		for _, s := range sc.Sysctls {
			if seen[s.Name] {
				p = append(p, "duplicate sysctl "+s.Name)
			}
			seen[s.Name] = true
			if spec.HostNetwork && strings.HasPrefix(s.Name, "net.") {
				p = append(p, "net sysctl "+s.Name+" with hostNetwork")
			}
		}
	}
	return p
}

var psaEvaluator = func() psapolicy.Evaluator {
	e, err := psapolicy.NewEvaluator(psapolicy.DefaultChecks(), nil)
	if err != nil {
		panic(err)
	}
	return e
}()

// restrictedProblems returns the Pod Security "restricted" (latest) checks
// the pod fails, using the admission plugin's own code.
func restrictedProblems(pod *corev1.Pod) []string {
	var p []string
	lv := psaapi.LevelVersion{Level: psaapi.LevelRestricted, Version: psaapi.LatestVersion()}
	for _, r := range psaEvaluator.EvaluatePod(lv, &pod.ObjectMeta, &pod.Spec) {
		if !r.Allowed {
			p = append(p, r.ForbiddenReason+": "+r.ForbiddenDetail)
		}
	}
	return p
}

// checkOutput asserts what every Mutate result must satisfy: the output is
// valid when the input was, stays within Pod Security "restricted" when the
// input was, has a sidecar that is "restricted" on its own, and a second
// Mutate changes nothing.
func checkOutput(t *testing.T, in *corev1.Pod, env Env, cfg *config.Config, res Result) {
	t.Helper()
	if len(apiProblems(in)) == 0 {
		if p := apiProblems(res.Pod); len(p) > 0 {
			t.Errorf("output fails API validation: %v", p)
		}
	}
	if len(restrictedProblems(in)) == 0 {
		if p := restrictedProblems(res.Pod); len(p) > 0 {
			t.Errorf("input meets Pod Security restricted, output does not: %v", p)
		}
	}
	if v := res.Pod.Annotations[AnnotationStatus]; v != in.Annotations[AnnotationStatus] {
		if _, err := ParseStatus(v); err != nil {
			t.Errorf("netguard wrote a bad status: %v", err)
		}
	}
	// netguard never adds an option the pod already has.
	for name, n := range optionCounts(res.Pod) {
		if n > max(1, optionCounts(in)[name]) {
			t.Errorf("option %s appears %d times", name, n)
		}
	}
	if res.Skipped != "" && !equality.Semantic.DeepEqual(in, res.Pod) {
		t.Errorf("skipped (%s) but the pod changed", res.Skipped)
	}
	if res.Skipped == "" && len(res.Applied) == 0 {
		t.Errorf("not skipped, yet nothing applied")
	}
	if c := findContainer(res.Pod, DNSProxyContainerName); c != nil && slices.Contains(res.Applied, AppliedDNSProxy) {
		alone := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{*c}}}
		alone.Spec.Containers[0].RestartPolicy = nil
		if res.Pod.Spec.SecurityContext != nil {
			alone.Spec.SecurityContext = &corev1.PodSecurityContext{Sysctls: res.Pod.Spec.SecurityContext.Sysctls}
		}
		if p := restrictedProblems(alone); len(p) > 0 {
			t.Errorf("sidecar fails Pod Security restricted: %v", p)
		}
	}
	again := Mutate(res.Pod, env, cfg)
	if !equality.Semantic.DeepEqual(again.Pod, res.Pod) {
		t.Errorf("second Mutate changed the pod:\nfirst:  %s\nsecond: %s", toYAML(t, res.Pod), toYAML(t, again.Pod))
	}
	if len(again.Applied) > 0 {
		t.Errorf("second Mutate applied %v", again.Applied)
	}
	// The webhook sees the pod again after a JSON round trip.
	var decoded corev1.Pod
	if err := yaml.Unmarshal([]byte(toYAML(t, res.Pod)), &decoded); err != nil {
		t.Fatal(err)
	}
	if again := Mutate(&decoded, env, cfg); !equality.Semantic.DeepEqual(again.Pod, &decoded) {
		t.Errorf("Mutate after a round trip changed the pod: %s", toYAML(t, again.Pod))
	}
}

func findContainer(pod *corev1.Pod, name string) *corev1.Container {
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}

func toYAML(t testing.TB, v any) string {
	t.Helper()
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func optionCounts(pod *corev1.Pod) map[string]int {
	counts := map[string]int{}
	if pod.Spec.DNSConfig != nil {
		for _, o := range pod.Spec.DNSConfig.Options {
			counts[o.Name]++
		}
	}
	return counts
}
