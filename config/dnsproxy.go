package config

import corev1 "k8s.io/api/core/v1"

// DNSProxyMode says how a pod reaches the injected forwarder.
type DNSProxyMode string

const (
	// DNSProxyModePort listens on 127.0.0.1:8053; nginx is pointed at it with
	// `resolver 127.0.0.1:8053`. The pod's resolv.conf is unchanged.
	DNSProxyModePort DNSProxyMode = "port"
	// DNSProxyModeResolv listens on 127.0.0.1:53 and the pod's resolv.conf
	// points at it, so every process in the pod uses it.
	DNSProxyModeResolv DNSProxyMode = "resolv"
)

// DNSProxyConfig is the fresh-port DNS forwarder sidecar.
type DNSProxyConfig struct {
	// Enabled turns sidecar injection on. Defaults to true.
	Enabled bool `json:"enabled"`
	// Mode is port or resolv. Defaults to port.
	Mode DNSProxyMode `json:"mode"`
	// NativeSidecar injects an init container with restartPolicy Always
	// (Kubernetes 1.29+); false injects a plain container. Defaults to true.
	NativeSidecar bool `json:"nativeSidecar"`
	// Image is the netguard image that runs `netguard dns-proxy`.
	Image string `json:"image"`
	// ImagePullPolicy for the sidecar. Defaults to IfNotPresent.
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy"`
	// Images lists image name patterns of nginx-based images that get the
	// sidecar. A pattern matches the image's repository path (registry and
	// tag ignored) exactly or, with a leading "*/", as a trailing path.
	Images []string `json:"images"`
	// Port the forwarder listens on in port mode. Defaults to 8053.
	Port int32 `json:"port"`
	// MetricsPort serves the forwarder's /metrics, /healthz and /readyz.
	// Defaults to 9153.
	MetricsPort int32 `json:"metricsPort"`
	// Resources of the sidecar container.
	Resources corev1.ResourceRequirements `json:"resources"`
}

// DefaultNginxImages are the image patterns that get the sidecar by default.
var DefaultNginxImages = []string{
	"nginx",
	"*/nginx",
	"nginxinc/nginx-unprivileged",
	"*/nginx-unprivileged",
	"bitnami/nginx",
	"openresty/openresty",
	"*/openresty",
	"ingress-nginx/controller",
	"*/ingress-nginx/controller",
	"nginxinc/nginx-s3-gateway",
}

func defaultDNSProxy() DNSProxyConfig {
	return DNSProxyConfig{
		Enabled:         true,
		Mode:            DNSProxyModePort,
		NativeSidecar:   true,
		Image:           "ghcr.io/netguard-io/netguard:latest",
		ImagePullPolicy: corev1.PullIfNotPresent,
		Images:          append([]string(nil), DefaultNginxImages...),
		Port:            8053,
		MetricsPort:     9153,
	}
}
