package podpolicy

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/netguard-io/netguard/config"
)

func TestMatchesImage(t *testing.T) {
	cases := map[string]struct {
		image    string
		patterns []string
		want     bool
		path     string // ImageRepositoryPath, when checked
	}{
		"docker hub official, full":        {image: "docker.io/library/nginx:1.27", patterns: []string{"nginx"}, want: true, path: "nginx"},
		"docker hub official, short":       {image: "nginx", patterns: []string{"nginx"}, want: true, path: "nginx"},
		"docker hub library prefix":        {image: "library/nginx:1.27-alpine", patterns: []string{"nginx"}, want: true, path: "nginx"},
		"index.docker.io":                  {image: "index.docker.io/library/nginx", patterns: []string{"nginx"}, want: true, path: "nginx"},
		"digest only":                      {image: "nginx@sha256:0123abcd", patterns: []string{"nginx"}, want: true, path: "nginx"},
		"tag and digest":                   {image: "registry.k8s.io/ingress-nginx/controller:v1.12@sha256:0123abcd", patterns: []string{"*/ingress-nginx/controller"}, want: true, path: "ingress-nginx/controller"},
		"registry with port":               {image: "registry.example:5000/nginx:1.27", patterns: []string{"nginx"}, want: true, path: "nginx"},
		"registry with port, no tag":       {image: "registry.example:5000/team/nginx", patterns: []string{"*/nginx"}, want: true, path: "team/nginx"},
		"localhost registry":               {image: "localhost/nginx:dev", patterns: []string{"nginx"}, want: true, path: "nginx"},
		"library kept off docker hub":      {image: "quay.example/library/nginx:1", patterns: []string{"nginx"}, want: false, path: "library/nginx"},
		"loki gateway image":               {image: "docker.io/nginxinc/nginx-unprivileged:1.27-alpine", patterns: config.DefaultNginxImages, want: true, path: "nginxinc/nginx-unprivileged"},
		"mirrored under a path":            {image: "harbor.example/dockerhub/nginxinc/nginx-unprivileged:1.27", patterns: []string{"*/nginx-unprivileged"}, want: true},
		"star pattern matches bare path":   {image: "nginx:1.27", patterns: []string{"*/nginx"}, want: true},
		"star pattern is whole segments":   {image: "example/my-nginx:1", patterns: []string{"*/nginx"}, want: false},
		"exact pattern is not a suffix":    {image: "bitnami/nginx:1.27", patterns: []string{"nginx"}, want: false},
		"bitnami":                          {image: "docker.io/bitnami/nginx:1.27", patterns: config.DefaultNginxImages, want: true},
		"openresty":                        {image: "openresty/openresty:1.25.3.2-alpine", patterns: config.DefaultNginxImages, want: true},
		"ingress-nginx controller":         {image: "registry.k8s.io/ingress-nginx/controller:v1.12.0", patterns: []string{"ingress-nginx/controller"}, want: true},
		"another controller":               {image: "registry.k8s.io/kube-state-metrics/controller:v2", patterns: config.DefaultNginxImages, want: false},
		"prefix of a name is no match":     {image: "nginx-exporter:1", patterns: config.DefaultNginxImages, want: false},
		"nginx prometheus exporter":        {image: "nginx/nginx-prometheus-exporter:1.3", patterns: config.DefaultNginxImages, want: false},
		"empty image":                      {image: "", patterns: config.DefaultNginxImages, want: false},
		"tag that looks like a path piece": {image: "nginx:stable-alpine3.20-perl", patterns: []string{"nginx"}, want: true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got := MatchesImage(tc.image, tc.patterns); got != tc.want {
				t.Errorf("MatchesImage(%q, %q) = %v, want %v (path %q)", tc.image, tc.patterns, got, tc.want, ImageRepositoryPath(tc.image))
			}
			if tc.path != "" {
				if got := ImageRepositoryPath(tc.image); got != tc.path {
					t.Errorf("ImageRepositoryPath(%q) = %q, want %q", tc.image, got, tc.path)
				}
			}
		})
	}
}

func TestIstioCapturesDNS(t *testing.T) {
	istioProxy := func(env ...corev1.EnvVar) corev1.Container {
		return corev1.Container{Name: "istio-proxy", Image: "docker.io/istio/proxyv2:1.26.0", Env: env}
	}
	cases := map[string]struct {
		annotations map[string]string
		init        []corev1.Container
		containers  []corev1.Container
		want        bool
	}{
		"no istio":                       {},
		"proxy config annotation, YAML":  {annotations: map[string]string{"proxy.istio.io/config": "proxyMetadata:\n  ISTIO_META_DNS_CAPTURE: \"true\"\n"}, want: true},
		"proxy config annotation, JSON":  {annotations: map[string]string{"proxy.istio.io/config": `{"proxyMetadata":{"ISTIO_META_DNS_CAPTURE":"true"}}`}, want: true},
		"proxy config annotation, false": {annotations: map[string]string{"proxy.istio.io/config": "proxyMetadata:\n  ISTIO_META_DNS_CAPTURE: \"false\"\n"}},
		"proxy config without DNS":       {annotations: map[string]string{"proxy.istio.io/config": "holdApplicationUntilProxyStarts: true\n"}},
		"garbled proxy config":           {annotations: map[string]string{"proxy.istio.io/config": "proxyMetadata: [\n"}},
		"injected sidecar with capture": {
			annotations: map[string]string{"sidecar.istio.io/status": `{"containers":["istio-proxy"]}`},
			containers:  []corev1.Container{istioProxy(corev1.EnvVar{Name: "ISTIO_META_DNS_CAPTURE", Value: "true"})},
			want:        true,
		},
		"injected native sidecar with capture": {
			init: []corev1.Container{istioProxy(corev1.EnvVar{Name: "ISTIO_META_DNS_CAPTURE", Value: "true"})},
			want: true,
		},
		"injected sidecar without capture": {
			containers: []corev1.Container{istioProxy(corev1.EnvVar{Name: "ISTIO_META_DNS_AUTO_ALLOCATE", Value: "true"})},
		},
		"capture env on another container": {
			containers: []corev1.Container{{Name: "app", Env: []corev1.EnvVar{{Name: "ISTIO_META_DNS_CAPTURE", Value: "true"}}}},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			pod := testPod("shop")
			pod.Annotations = tc.annotations
			pod.Spec.InitContainers = tc.init
			pod.Spec.Containers = append(pod.Spec.Containers, tc.containers...)
			if got := IstioCapturesDNS(pod); got != tc.want {
				t.Errorf("IstioCapturesDNS = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestMutateDNSProxy(t *testing.T) {
	nginx := func(p *corev1.Pod) { p.Spec.Containers[0].Image = "nginx:1.27" }
	resolv := func(c *config.Config) { c.DNSProxy.Mode = config.DNSProxyModeResolv }
	forMusl := func(c *config.Config) { c.DNSProxy.ForMusl = true }
	alpine := func(p *corev1.Pod) { p.Spec.Containers[0].Image = "alpine:3.20" }
	cases := map[string]struct {
		pod    func(*corev1.Pod)
		ns     map[string]string
		env    func(*Env)
		cfg    func(*config.Config)
		mode   config.DNSProxyMode // "" = no sidecar
		native bool
		skip   SkipReason // DNSProxySkipped
		// resolv mode expectations
		nameservers []string
		sysctl      string
		warning     string
		noWarning   bool
	}{
		"nginx gets a native sidecar in port mode": {pod: nginx, mode: config.DNSProxyModePort, native: true, warning: `container "app": nginx must resolve through the sidecar: set "resolver 127.0.0.1:8053 valid=10s ipv6=off;"`},
		"other images do not":                      {},
		"pod annotation forces it":                 {pod: func(p *corev1.Pod) { p.Annotations = map[string]string{AnnotationDNSProxy: "true"} }, mode: config.DNSProxyModePort, native: true, warning: "netguard-dns listens on 127.0.0.1:8053"},
		"namespace annotation forces it":           {ns: map[string]string{AnnotationDNSProxy: "true"}, mode: config.DNSProxyModePort, native: true},
		"pod annotation false beats the namespace's true": {
			pod: func(p *corev1.Pod) { nginx(p); p.Annotations = map[string]string{AnnotationDNSProxy: "false"} },
			ns:  map[string]string{AnnotationDNSProxy: "true"}, skip: SkipDNSProxyOptedOut, noWarning: true,
		},
		"namespace annotation false skips nginx": {pod: nginx, ns: map[string]string{AnnotationDNSProxy: "false"}, skip: SkipDNSProxyOptedOut, noWarning: true},
		"pod annotation true beats the namespace's false": {
			pod: func(p *corev1.Pod) { p.Annotations = map[string]string{AnnotationDNSProxy: "true"} },
			ns:  map[string]string{AnnotationDNSProxy: "false"}, mode: config.DNSProxyModePort, native: true,
		},
		"bad annotation is ignored with a warning": {
			pod:  func(p *corev1.Pod) { nginx(p); p.Annotations = map[string]string{AnnotationDNSProxy: "yes please"} },
			mode: config.DNSProxyModePort, native: true, warning: `pod annotation netguard.io/dns-proxy="yes please" is not true, false, port or resolv`,
		},
		"plain container when native sidecars are off": {pod: nginx, cfg: func(c *config.Config) { c.DNSProxy.NativeSidecar = false }, mode: config.DNSProxyModePort},
		"nginx as a native sidecar counts": {
			pod: func(p *corev1.Pod) {
				p.Spec.InitContainers = []corev1.Container{{Name: "proxy", Image: "nginx:1.27", RestartPolicy: ptr(corev1.ContainerRestartPolicyAlways)}}
			},
			mode: config.DNSProxyModePort, native: true,
		},
		"nginx as a plain init container does not": {
			pod: func(p *corev1.Pod) { p.Spec.InitContainers = []corev1.Container{{Name: "render", Image: "nginx:1.27"}} },
		},
		"disabled in config":                {pod: nginx, cfg: func(c *config.Config) { c.DNSProxy.Enabled = false }, skip: SkipDNSProxyDisabled, noWarning: true},
		"disabled in config, but asked for": {pod: func(p *corev1.Pod) { p.Annotations = map[string]string{AnnotationDNSProxy: "true"} }, cfg: func(c *config.Config) { c.DNSProxy.Enabled = false }, skip: SkipDNSProxyDisabled, warning: "dnsProxy.enabled is false"},
		"hostNetwork pod": {
			pod: func(p *corev1.Pod) {
				nginx(p)
				p.Spec.HostNetwork = true
				p.Spec.DNSPolicy = corev1.DNSClusterFirstWithHostNet
			},
			skip: SkipDNSProxyHostNetwork, warning: "hostNetwork",
		},
		"istio DNS capture": {
			pod: func(p *corev1.Pod) {
				nginx(p)
				p.Annotations = map[string]string{"proxy.istio.io/config": "proxyMetadata:\n  ISTIO_META_DNS_CAPTURE: \"true\"\n"}
			},
			skip: SkipIstioDNSCapture, warning: "Istio's DNS proxy already serves the pod",
		},
		"port conflict with the metrics port": {
			pod: func(p *corev1.Pod) {
				nginx(p)
				p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 9153}}
			},
			skip: SkipDNSProxyPortConflict, warning: `container "app" declares port 9153`,
		},
		"already injected by name": {
			pod: func(p *corev1.Pod) {
				nginx(p)
				p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: DNSProxyContainerName, Image: "example/dns:1"})
			},
		},
		"configured port appears in the hint": {
			pod: nginx, cfg: func(c *config.Config) { c.DNSProxy.Port = 5353 }, mode: config.DNSProxyModePort, native: true,
			warning: `"resolver 127.0.0.1:5353 valid=10s ipv6=off;"`,
		},
		"IPv6 cluster: no ipv6=off in the hint": {
			pod: nginx, env: func(e *Env) { e.ClusterDNS = "fd00::10" }, mode: config.DNSProxyModePort, native: true,
			warning: `"resolver 127.0.0.1:8053 valid=10s;"`,
		},
		"resolv mode": {
			pod: nginx, cfg: resolv, mode: config.DNSProxyModeResolv, native: true,
			nameservers: []string{"127.0.0.1"}, sysctl: "53", noWarning: true,
		},
		"resolv mode keeps the pod's nameservers after the sidecar": {
			pod: func(p *corev1.Pod) {
				nginx(p)
				p.Spec.DNSConfig = &corev1.PodDNSConfig{Nameservers: []string{"192.0.2.1"}}
			},
			cfg: resolv, mode: config.DNSProxyModeResolv, native: true, nameservers: []string{"127.0.0.1", "192.0.2.1"}, sysctl: "53",
		},
		"resolv mode leaves a lower sysctl": {
			pod: func(p *corev1.Pod) {
				nginx(p)
				p.Spec.SecurityContext = &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{{Name: sysctlUnprivilegedPortStart, Value: "0"}}}
			},
			cfg: resolv, mode: config.DNSProxyModeResolv, native: true, nameservers: []string{"127.0.0.1"}, sysctl: "0", noWarning: true,
		},
		"resolv mode lowers a higher sysctl": {
			pod: func(p *corev1.Pod) {
				nginx(p)
				p.Spec.SecurityContext = &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{{Name: sysctlUnprivilegedPortStart, Value: "1024"}}}
			},
			cfg: resolv, mode: config.DNSProxyModeResolv, native: true, nameservers: []string{"127.0.0.1"}, sysctl: "53", warning: `lowered from "1024" to 53`,
		},
		"resolv mode without cluster DNS falls back to port": {
			pod: nginx, cfg: resolv, env: func(e *Env) { e.ClusterDNS = "" }, mode: config.DNSProxyModePort, native: true,
			warning: "DNS sidecar uses port mode, not resolv mode: the cluster DNS Service IP is unknown",
		},
		"resolv mode with dnsPolicy Default falls back to port": {
			pod: func(p *corev1.Pod) { nginx(p); p.Spec.DNSPolicy = corev1.DNSDefault }, cfg: resolv, mode: config.DNSProxyModePort, native: true,
			warning: "spec.dnsPolicy Default keeps the pod's own resolv.conf",
		},
		"resolv mode, plain container and init containers falls back to port": {
			pod: func(p *corev1.Pod) {
				nginx(p)
				p.Spec.InitContainers = []corev1.Container{{Name: "migrate", Image: "example/migrate:1"}}
			},
			cfg:  func(c *config.Config) { resolv(c); c.DNSProxy.NativeSidecar = false },
			mode: config.DNSProxyModePort, warning: "init containers would run before the plain netguard-dns container",
		},
		"resolv mode, plain container, no init containers": {
			pod:  nginx,
			cfg:  func(c *config.Config) { resolv(c); c.DNSProxy.NativeSidecar = false },
			mode: config.DNSProxyModeResolv, nameservers: []string{"127.0.0.1"}, sysctl: "53",
		},
		"resolv mode with a container on port 53 falls back to port": {
			pod: func(p *corev1.Pod) {
				nginx(p)
				p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 53, Protocol: corev1.ProtocolUDP}}
			},
			cfg: resolv, mode: config.DNSProxyModePort, native: true, warning: `resolv mode: container "app" declares port 53`,
		},
		"resolv mode with a conflict on the metrics port is skipped": {
			pod: func(p *corev1.Pod) {
				nginx(p)
				p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 9153}}
			},
			cfg: resolv, skip: SkipDNSProxyPortConflict, warning: "declares port 9153",
		},
		"port conflict with the DNS port": {
			pod: func(p *corev1.Pod) {
				nginx(p)
				p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 8053}}
			},
			skip: SkipDNSProxyPortConflict, warning: `container "app" declares port 8053`,
		},
		"annotation resolv asks for resolv mode": {
			pod:  func(p *corev1.Pod) { p.Annotations = map[string]string{AnnotationDNSProxy: "resolv"} },
			mode: config.DNSProxyModeResolv, native: true, nameservers: []string{"127.0.0.1"}, sysctl: "53", noWarning: true,
		},
		"annotation port beats the configured resolv mode": {
			pod: func(p *corev1.Pod) { nginx(p); p.Annotations = map[string]string{AnnotationDNSProxy: "port"} }, cfg: resolv,
			mode: config.DNSProxyModePort, native: true, warning: "nginx must resolve through the sidecar",
		},
		"annotation resolv without cluster DNS is skipped, not moved to port mode": {
			pod: func(p *corev1.Pod) { p.Annotations = map[string]string{AnnotationDNSProxy: "resolv"} }, env: func(e *Env) { e.ClusterDNS = "" },
			skip: SkipDNSProxyResolvUnavailable, warning: "resolv mode is not possible: the cluster DNS Service IP is unknown",
		},
		"annotation resolv on nginx without cluster DNS falls back to port": {
			pod: func(p *corev1.Pod) { nginx(p); p.Annotations = map[string]string{AnnotationDNSProxy: "resolv"} }, env: func(e *Env) { e.ClusterDNS = "" },
			mode: config.DNSProxyModePort, native: true, warning: "DNS sidecar uses port mode",
		},
		"forMusl: a musl pod gets resolv mode": {
			pod: alpine, cfg: forMusl, mode: config.DNSProxyModeResolv, native: true, nameservers: []string{"127.0.0.1"}, sysctl: "53",
			warning: "resolver musl (image alpine:3.20): ndots stays 5",
		},
		"forMusl: a glibc pod does not": {cfg: forMusl},
		"forMusl: a pod of unknown resolver does not": {
			pod: func(p *corev1.Pod) { p.Spec.Containers[0].Image = "ghcr.io/example/app:1" }, cfg: forMusl,
		},
		"forMusl: annotation false opts out": {
			pod: func(p *corev1.Pod) { alpine(p); p.Annotations = map[string]string{AnnotationDNSProxy: "false"} }, cfg: forMusl, skip: SkipDNSProxyOptedOut,
		},
		"forMusl: nginx on Alpine keeps the configured port mode": {
			pod: func(p *corev1.Pod) { p.Spec.Containers[0].Image = "nginx:1.27-alpine" }, cfg: forMusl,
			mode: config.DNSProxyModePort, native: true, warning: "nginx must resolve through the sidecar",
		},
		"forMusl: off by default": {pod: alpine},
		"resolv mode with the DNS policy disabled keeps ndots:5": {
			pod: nginx, cfg: func(c *config.Config) { resolv(c); c.DNS.Enabled = false }, mode: config.DNSProxyModeResolv, native: true,
			nameservers: []string{"127.0.0.1"}, sysctl: "53",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			pod := testPod("shop")
			if tc.pod != nil {
				tc.pod(pod)
			}
			env := testEnv()
			env.Namespace.Annotations = tc.ns
			if tc.env != nil {
				tc.env(&env)
			}
			cfg := testConfig()
			if tc.cfg != nil {
				tc.cfg(cfg)
			}
			res := Mutate(pod, env, cfg)
			out := res.Pod
			if res.DNSProxySkipped != tc.skip {
				t.Errorf("DNSProxySkipped = %q, want %q", res.DNSProxySkipped, tc.skip)
			}
			if tc.warning != "" && !slices.ContainsFunc(res.Warnings, func(w string) bool { return strings.Contains(w, tc.warning) }) {
				t.Errorf("warnings %q lack %q", res.Warnings, tc.warning)
			}
			if tc.noWarning && len(res.Warnings) > 0 {
				t.Errorf("unexpected warnings %q", res.Warnings)
			}
			checkOutput(t, pod, env, cfg, res)

			injected := slices.Contains(res.Applied, AppliedDNSProxy)
			if injected != (tc.mode != "") {
				t.Fatalf("applied = %q, want the sidecar: %v", res.Applied, tc.mode != "")
			}
			if !injected {
				if n := countContainers(out, DNSProxyContainerName); n != countContainers(pod, DNSProxyContainerName) {
					t.Errorf("sidecar count changed to %d", n)
				}
				if v, ok := out.Labels[LabelDNSSidecar]; ok {
					t.Errorf("pod without an injected sidecar labelled %s=%s", LabelDNSSidecar, v)
				}
				return
			}
			st, _ := ParseStatus(out.Annotations[AnnotationStatus])
			if st.DNSProxy != tc.mode {
				t.Errorf("status dnsProxy = %q, want %q", st.DNSProxy, tc.mode)
			}
			if got := out.Labels[LabelDNSSidecar]; got != string(tc.mode) {
				t.Errorf("label %s = %q, want the sidecar's mode %q (a PodMonitor selects it)", LabelDNSSidecar, got, tc.mode)
			}
			var c corev1.Container
			if tc.native {
				c = out.Spec.InitContainers[0]
				if !isNativeSidecar(c) {
					t.Errorf("first init container is not a native sidecar: %+v", c)
				}
			} else {
				c = out.Spec.Containers[len(out.Spec.Containers)-1]
				if c.RestartPolicy != nil {
					t.Errorf("plain container has restartPolicy %v", *c.RestartPolicy)
				}
			}
			if c.Name != DNSProxyContainerName || c.Image != cfg.DNSProxy.Image {
				t.Errorf("sidecar %s image %s", c.Name, c.Image)
			}
			if c.StartupProbe == nil || c.StartupProbe.HTTPGet == nil || c.StartupProbe.HTTPGet.Path != "/readyz" ||
				c.StartupProbe.HTTPGet.Port.String() != metricsPortName || c.Ports[0].ContainerPort != cfg.DNSProxy.MetricsPort {
				t.Errorf("startup probe %+v, ports %+v", c.StartupProbe, c.Ports)
			}
			args := strings.Join(c.Args, " ")
			wantArgs := "dns-proxy --listen 127.0.0.1:" + itoa(cfg.DNSProxy.Port) + " --metrics-bind-address :9153"
			if tc.mode == config.DNSProxyModeResolv {
				wantArgs = "dns-proxy --listen 127.0.0.1:53 --upstream " + env.ClusterDNS + ":53 --metrics-bind-address :9153"
			}
			if args != wantArgs {
				t.Errorf("args = %q, want %q", args, wantArgs)
			}
			if tc.mode == config.DNSProxyModeResolv {
				if out.Spec.DNSPolicy != corev1.DNSNone || !slices.Equal(out.Spec.DNSConfig.Nameservers, tc.nameservers) {
					t.Errorf("dnsPolicy %s, nameservers %q; want None, %q", out.Spec.DNSPolicy, out.Spec.DNSConfig.Nameservers, tc.nameservers)
				}
				if optionIndex(out.Spec.DNSConfig.Options, "ndots") < 0 {
					t.Errorf("resolv mode lost ndots: %q", optionStrings(out.Spec.DNSConfig))
				}
				if !slices.Contains(out.Spec.DNSConfig.Searches, "shop.svc.cluster.local") {
					t.Errorf("resolv mode lost the cluster search path: %q", out.Spec.DNSConfig.Searches)
				}
			} else if out.Spec.SecurityContext != nil && len(out.Spec.SecurityContext.Sysctls) > 0 {
				t.Errorf("port mode set sysctls %+v", out.Spec.SecurityContext.Sysctls)
			}
			if tc.sysctl != "" {
				if got := sysctlValue(out, sysctlUnprivilegedPortStart); got != tc.sysctl {
					t.Errorf("%s = %q, want %q", sysctlUnprivilegedPortStart, got, tc.sysctl)
				}
			}
		})
	}
}

func TestDNSProxyResources(t *testing.T) {
	cfg := testConfig()
	cfg.DNSProxy.Resources = corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")}}
	pod := testPod("shop")
	pod.Spec.Containers[0].Image = "nginx"
	res := Mutate(pod, testEnv(), cfg)
	c := findContainer(res.Pod, DNSProxyContainerName)
	if c == nil {
		t.Fatal("no sidecar")
	}
	if got := c.Resources.Limits.Memory().String(); got != "128Mi" || len(c.Resources.Requests) != 0 {
		t.Errorf("resources = %+v, want the configured ones only", c.Resources)
	}
	// The configuration is not shared with the pod.
	c.Resources.Limits[corev1.ResourceMemory] = resource.MustParse("1Gi")
	if got := cfg.DNSProxy.Resources.Limits.Memory().String(); got != "128Mi" {
		t.Errorf("config changed through the pod: %s", got)
	}
}

func countContainers(pod *corev1.Pod, name string) int {
	n := 0
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range list {
			if c.Name == name {
				n++
			}
		}
	}
	return n
}

func sysctlValue(pod *corev1.Pod, name string) string {
	if pod.Spec.SecurityContext == nil {
		return ""
	}
	for _, s := range pod.Spec.SecurityContext.Sysctls {
		if s.Name == name {
			return s.Value
		}
	}
	return ""
}

func itoa(n int32) string { return resource.NewQuantity(int64(n), resource.DecimalSI).String() }
