package podpolicy

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/netguard-io/netguard/config"
	"github.com/netguard-io/netguard/internal/memlimit"
)

// sysctlUnprivilegedPortStart lets the non-root sidecar bind 127.0.0.1:53 in
// resolv mode. It is a namespaced, "safe" sysctl that Pod Security
// "restricted" allows; capabilities.add cannot do this job because a
// non-root process gets no ambient capabilities.
const sysctlUnprivilegedPortStart = "net.ipv4.ip_unprivileged_port_start"

// dnsProxyUID is the sidecar's user: the distroless "nonroot" user.
const dnsProxyUID = 65532

// metricsPortName names the sidecar's metrics port, so a PodMonitor can
// scrape it.
const metricsPortName = "dns-metrics"

// MatchesImage reports whether container image matches one of patterns, on
// the image's repository path: registry host, tag and digest are ignored,
// and Docker Hub's "library/" is dropped, so docker.io/library/nginx:1.27 is
// "nginx". A pattern matches the path exactly or, with a leading "*/", as a
// whole trailing run of path segments: "*/ingress-nginx/controller" matches
// registry.k8s.io/ingress-nginx/controller:v1.12 and
// mirror.example/ingress-nginx/controller.
func MatchesImage(image string, patterns []string) bool {
	path := ImageRepositoryPath(image)
	if path == "" {
		return false
	}
	for _, p := range patterns {
		if tail, ok := strings.CutPrefix(p, "*/"); ok {
			if path == tail || strings.HasSuffix(path, "/"+tail) {
				return true
			}
		} else if path == p {
			return true
		}
	}
	return false
}

// ImageRepositoryPath returns image's repository path without registry
// host, tag or digest, and without Docker Hub's implicit "library/".
func ImageRepositoryPath(image string) string {
	name, _ := splitTag(image)
	registry := "docker.io"
	if first, rest, ok := strings.Cut(name, "/"); ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
		registry, name = first, rest
	}
	if registry == "docker.io" || registry == "index.docker.io" {
		name = strings.TrimPrefix(name, "library/")
	}
	return name
}

// splitTag splits an image reference, without its digest, into name and
// tag ("" when it has none). A tag follows the last ':' after the last
// '/'; an earlier ':' is a registry port.
func splitTag(image string) (name, tag string) {
	name, _, _ = strings.Cut(image, "@")
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		return name[:i], name[i+1:]
	}
	return name, ""
}

// matchingContainer returns the name of the first long-running container
// whose image is one of the configured nginx images.
func (m *mutator) matchingContainer() string {
	for _, c := range m.pod.Spec.InitContainers {
		if isNativeSidecar(c) && MatchesImage(c.Image, m.cfg.DNSProxy.Images) {
			return c.Name
		}
	}
	for _, c := range m.pod.Spec.Containers {
		if MatchesImage(c.Image, m.cfg.DNSProxy.Images) {
			return c.Name
		}
	}
	return ""
}

func isNativeSidecar(c corev1.Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
}

func hasContainer(spec *corev1.PodSpec, name string) bool {
	for _, list := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for _, c := range list {
			if c.Name == name {
				return true
			}
		}
	}
	return false
}

// IstioCapturesDNS reports whether Istio's agent proxies the pod's DNS:
// ISTIO_META_DNS_CAPTURE is true in the pod's proxy.istio.io/config
// annotation, or in the environment of an istio-proxy container that Istio's
// injector already added (it copies proxyMetadata there, also from the mesh
// config, which netguard cannot see before Istio's injection).
func IstioCapturesDNS(pod *corev1.Pod) bool {
	if v, ok := pod.Annotations[annotationIstioConfig]; ok {
		var pc struct {
			ProxyMetadata map[string]string `json:"proxyMetadata"`
		}
		if err := yaml.Unmarshal([]byte(v), &pc); err == nil && isTrue(pc.ProxyMetadata[istioDNSCaptureEnv]) {
			return true
		}
	}
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range list {
			if c.Name != istioProxyContainer {
				continue
			}
			for _, e := range c.Env {
				if e.Name == istioDNSCaptureEnv && isTrue(e.Value) {
					return true
				}
			}
		}
	}
	return false
}

func isTrue(s string) bool {
	b, err := strconv.ParseBool(s)
	return err == nil && b
}

// planDNSProxy decides whether the pod gets the sidecar and in which mode;
// "" means no sidecar. matched names the nginx container that asked for it.
// The sidecar is asked for by an nginx image, by the netguard.io/dns-proxy
// annotation ("true" in the configured mode, "port" or "resolv" in that
// one), or, with dnsProxy.forMusl, by a musl resolver (in resolv mode: in
// port mode it would serve nobody).
func (m *mutator) planDNSProxy(kind dnsKind) (mode config.DNSProxyMode, matched string) {
	if hasContainer(&m.pod.Spec, DNSProxyContainerName) {
		return "", "" // injected before, by netguard or by hand
	}
	matched = m.matchingContainer()
	forced := false
	if v, from, ok := annotation(m.pod, m.ns, AnnotationDNSProxy); ok {
		switch b, err := strconv.ParseBool(v); {
		case v == string(config.DNSProxyModePort) || v == string(config.DNSProxyModeResolv):
			forced, mode = true, config.DNSProxyMode(v)
		case err != nil:
			m.warn(fmt.Sprintf("%s=%q is not true, false, port or resolv; ignored", from, v))
		case !b:
			if matched != "" || m.wantsMuslSidecar() {
				m.res.DNSProxySkipped = SkipDNSProxyOptedOut
			}
			return "", ""
		default:
			forced = true
		}
	}
	if !forced && matched == "" {
		if !m.wantsMuslSidecar() {
			return "", ""
		}
		forced, mode = true, config.DNSProxyModeResolv
	}
	skip := func(r SkipReason, detail string) (config.DNSProxyMode, string) {
		m.res.DNSProxySkipped = r
		if detail != "" {
			m.warn("DNS sidecar " + DNSProxyContainerName + " not injected: " + detail)
		}
		return "", ""
	}
	switch {
	case !m.cfg.DNSProxy.Enabled:
		if forced {
			return skip(SkipDNSProxyDisabled, "dnsProxy.enabled is false in netguard configuration")
		}
		return skip(SkipDNSProxyDisabled, "")
	case m.pod.Spec.HostNetwork:
		return skip(SkipDNSProxyHostNetwork, "a hostNetwork pod shares the node's loopback with every other one; use a node-local DNS cache")
	case IstioCapturesDNS(m.pod):
		return skip(SkipIstioDNSCapture, "Istio's DNS proxy already serves the pod (ISTIO_META_DNS_CAPTURE=true); netguard does not stack a second one")
	}

	resolvAsked := mode == config.DNSProxyModeResolv
	if mode == "" {
		mode = m.cfg.DNSProxy.Mode
	}
	if mode == config.DNSProxyModeResolv {
		if problem := m.resolvModeProblem(kind); problem != "" {
			if resolvAsked && matched == "" {
				// In port mode only a program pointed at the port would
				// use it, and none asked for it.
				return skip(SkipDNSProxyResolvUnavailable, "resolv mode is not possible: "+problem)
			}
			m.warn("DNS sidecar uses port mode, not resolv mode: " + problem)
			mode = config.DNSProxyModePort
		}
	}
	if container, port := m.portConflict(); container != "" {
		return skip(SkipDNSProxyPortConflict, fmt.Sprintf("container %q declares port %d, which %s binds (change dnsProxy.port or dnsProxy.metricsPort)", container, port, DNSProxyContainerName))
	}
	return mode, matched
}

// wantsMuslSidecar reports whether dnsProxy.forMusl asks for the sidecar:
// the pod's resolver is musl, which keeps the A/AAAA race.
func (m *mutator) wantsMuslSidecar() bool {
	return m.cfg.DNSProxy.ForMusl && m.resolver == config.ResolverMusl
}

// resolvModeProblem says why the pod cannot get the sidecar in resolv mode.
func (m *mutator) resolvModeProblem(kind dnsKind) string {
	switch {
	case m.clusterDNS == "":
		return "the cluster DNS Service IP is unknown (set dns.search.clusterDNS or check the " + m.cfg.DNS.Search.ClusterDNSService + " Service)"
	case kind != kindCluster:
		return fmt.Sprintf("spec.dnsPolicy %s keeps the pod's own resolv.conf", m.pod.Spec.DNSPolicy)
	case !m.cfg.DNSProxy.NativeSidecar && len(m.pod.Spec.InitContainers) > 0:
		return "init containers would run before the plain " + DNSProxyContainerName + " container and find no DNS (set dnsProxy.nativeSidecar: true)"
	}
	if container := m.declaresPort(53); container != "" {
		return fmt.Sprintf("container %q declares port 53", container)
	}
	_, problem := m.noneDNSConfig(loopbackIP, nil)
	return problem
}

// portConflict returns a container that declares a port the sidecar binds
// in port mode. (Resolv mode falls back to port mode on a conflict over 53,
// so that a second pass, which sees the pod as dnsPolicy None and so in port
// mode, decides the same.)
func (m *mutator) portConflict() (string, int32) {
	for _, port := range []int32{m.cfg.DNSProxy.MetricsPort, m.cfg.DNSProxy.Port} {
		if container := m.declaresPort(port); container != "" {
			return container, port
		}
	}
	return "", 0
}

// declaresPort returns the first container that declares port.
func (m *mutator) declaresPort(port int32) string {
	for _, list := range [][]corev1.Container{m.pod.Spec.InitContainers, m.pod.Spec.Containers} {
		for _, c := range list {
			for _, p := range c.Ports {
				if p.ContainerPort == port {
					return c.Name
				}
			}
		}
	}
	return ""
}

// injectDNSProxy adds the sidecar: first among the init containers as a
// native sidecar, so it is up (startup probe) before every other container,
// including earlier init containers; or last among the containers. The pod
// gets the LabelDNSSidecar label.
func (m *mutator) injectDNSProxy(mode config.DNSProxyMode, matched string) {
	c := m.dnsProxyContainer(mode)
	spec := &m.pod.Spec
	if m.cfg.DNSProxy.NativeSidecar {
		spec.InitContainers = append([]corev1.Container{c}, spec.InitContainers...)
	} else {
		spec.Containers = append(spec.Containers, c)
	}
	if m.pod.Labels == nil {
		m.pod.Labels = map[string]string{}
	}
	m.pod.Labels[LabelDNSSidecar] = string(mode)
	if mode == config.DNSProxyModeResolv {
		if w := allowPort53(spec); w != "" {
			m.warn(w)
		}
	} else {
		m.warn(m.resolverHint(matched))
	}
	m.proxyMode = mode
	m.apply(AppliedDNSProxy)
}

// resolverHint tells the user the nginx line that sends lookups through the
// sidecar in port mode. nginx ignores search domains and, without ipv6=off,
// also asks for AAAA records an IPv4-only cluster does not have.
func (m *mutator) resolverHint(matched string) string {
	hint := fmt.Sprintf("resolver %s valid=10s", net.JoinHostPort(loopbackIP, strconv.Itoa(int(m.cfg.DNSProxy.Port))))
	if addr, err := netip.ParseAddr(m.clusterDNS); err != nil || addr.Is4() {
		hint += " ipv6=off"
	}
	if matched == "" {
		return fmt.Sprintf("%s listens on %s: point the pod's resolver at it (for nginx: %q)",
			DNSProxyContainerName, net.JoinHostPort(loopbackIP, strconv.Itoa(int(m.cfg.DNSProxy.Port))), hint+";")
	}
	return fmt.Sprintf("container %q: nginx must resolve through the sidecar: set %q in its configuration", matched, hint+";")
}

// dnsProxyContainer builds the sidecar. Its security context meets Pod
// Security "restricted" on its own, whatever the pod sets.
func (m *mutator) dnsProxyContainer(mode config.DNSProxyMode) corev1.Container {
	dp := m.cfg.DNSProxy
	args := []string{"dns-proxy"}
	if mode == config.DNSProxyModeResolv {
		// The pod's resolv.conf points back at the sidecar, so its upstream
		// is the cluster DNS IP, never resolv.conf.
		args = append(args, "--listen", net.JoinHostPort(loopbackIP, "53"), "--upstream", net.JoinHostPort(m.clusterDNS, "53"))
	} else {
		args = append(args, "--listen", net.JoinHostPort(loopbackIP, strconv.Itoa(int(dp.Port))))
	}
	// Metrics and health listen on the pod IP too: the kubelet's probes
	// connect there, never to the pod's loopback.
	args = append(args, "--metrics-bind-address", ":"+strconv.Itoa(int(dp.MetricsPort)))
	// The attempt policy: only what differs from the forwarder's defaults.
	args = append(args, dp.Attempts.Flags()...)

	probe := func(path string, period, failures int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: path, Port: intstr.FromString(metricsPortName), Scheme: corev1.URISchemeHTTP,
			}},
			PeriodSeconds: period, FailureThreshold: failures, TimeoutSeconds: 1, SuccessThreshold: 1,
		}
	}
	resources := dnsProxyResources(dp.Resources)
	c := corev1.Container{
		Name:            DNSProxyContainerName,
		Image:           dp.Image,
		ImagePullPolicy: dp.ImagePullPolicy,
		Args:            args,
		Ports: []corev1.ContainerPort{{
			Name: metricsPortName, ContainerPort: dp.MetricsPort, Protocol: corev1.ProtocolTCP,
		}},
		Resources: resources,
		// A native sidecar with a startup probe is ready before the
		// containers after it start.
		StartupProbe:             probe("/readyz", 1, 30),
		LivenessProbe:            probe("/healthz", 10, 3),
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		SecurityContext: &corev1.SecurityContext{
			RunAsNonRoot:             ptr(true),
			RunAsUser:                ptr(int64(dnsProxyUID)),
			RunAsGroup:               ptr(int64(dnsProxyUID)),
			AllowPrivilegeEscalation: ptr(false),
			ReadOnlyRootFilesystem:   ptr(true),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
	}
	if _, ok := resources.Limits[corev1.ResourceMemory]; ok {
		// The forwarder sets Go's soft memory limit from its container's
		// limit, as netguard's own pods do (internal/memlimit).
		c.Env = []corev1.EnvVar{{Name: memlimit.EnvVar, ValueFrom: &corev1.EnvVarSource{
			ResourceFieldRef: &corev1.ResourceFieldSelector{
				ContainerName: DNSProxyContainerName, Resource: "limits.memory", Divisor: resource.MustParse("1"),
			},
		}}}
	}
	if dp.NativeSidecar {
		c.RestartPolicy = ptr(corev1.ContainerRestartPolicyAlways)
	}
	return c
}

// dnsProxyResources returns the configured resources, or small defaults
// when none are configured.
func dnsProxyResources(r corev1.ResourceRequirements) corev1.ResourceRequirements {
	if len(r.Requests) > 0 || len(r.Limits) > 0 || len(r.Claims) > 0 {
		return *r.DeepCopy()
	}
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("10m"),
			corev1.ResourceMemory: resource.MustParse("16Mi"),
		},
		Limits: corev1.ResourceList{
			corev1.ResourceMemory: resource.MustParse("64Mi"),
		},
	}
}

// allowPort53 sets the pod sysctl that lets non-root processes bind port 53,
// lowering a higher value the pod set; it returns a warning when it lowers
// one.
func allowPort53(spec *corev1.PodSpec) string {
	if spec.SecurityContext == nil {
		spec.SecurityContext = &corev1.PodSecurityContext{}
	}
	sc := spec.SecurityContext
	for i, s := range sc.Sysctls {
		if s.Name != sysctlUnprivilegedPortStart {
			continue
		}
		if n, err := strconv.Atoi(s.Value); err == nil && n <= 53 {
			return ""
		}
		sc.Sysctls[i].Value = "53"
		return fmt.Sprintf("spec.securityContext.sysctls %s lowered from %q to 53 so %s can bind 127.0.0.1:53 as non-root", sysctlUnprivilegedPortStart, s.Value, DNSProxyContainerName)
	}
	sc.Sysctls = append(sc.Sysctls, corev1.Sysctl{Name: sysctlUnprivilegedPortStart, Value: "53"})
	return ""
}

func ptr[T any](v T) *T { return &v }
