package config

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

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
	// ForMusl injects the sidecar, in resolv mode, into every pod whose
	// resolver is musl (dns.resolver): musl sends A and AAAA at once from one
	// socket and ignores single-request-reopen, so the sidecar, which sends
	// each upstream query from a new source port, is its fix for the
	// conntrack race. Pods can ask for it alone with the annotation
	// netguard.io/dns-proxy: resolv. Defaults to false.
	ForMusl bool `json:"forMusl"`
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
	// Attempts is the forwarder's upstream attempt policy.
	Attempts DNSProxyAttempts `json:"attempts"`
}

// DNSProxyAttempts is the forwarder's upstream attempt policy: the flags of
// `netguard dns-proxy` of the same names (docs/dns-proxy.md). The sidecar
// is given only the values that differ from the defaults, so that pods
// show what was tuned and a sidecar image older than the webhook still
// starts.
type DNSProxyAttempts struct {
	// Timeout is how long one upstream attempt waits for its answer, as a
	// Go duration. Defaults to 2s.
	Timeout string `json:"timeout"`
	// Deadline bounds all attempts of one query; then the client gets
	// SERVFAIL. At least Timeout. Defaults to 4s.
	Deadline string `json:"deadline"`
	// HedgeDelayMin and HedgeDelayMax bound how long a query waits for an
	// answer before it sends another attempt from a new source port (the
	// upstream's 99th percentile latency in between). Default to 10ms and
	// 500ms.
	HedgeDelayMin string `json:"hedgeDelayMin"`
	HedgeDelayMax string `json:"hedgeDelayMax"`
	// MaxParallel bounds the attempts of one query waiting at once, 1 to
	// 64; 1 turns hedging off. Defaults to 16.
	MaxParallel int `json:"maxParallel"`
	// HedgeBudget is the extra attempts earned by each answered query (on
	// top of 10 per second), which bounds the load on a DNS that stops
	// answering. Defaults to 4.
	HedgeBudget float64 `json:"hedgeBudget"`
	// WarmPortAge is how long after an upstream socket got its source port
	// a query's first attempt may leave from it again, if its last attempt
	// was answered (so that first attempts avoid a silent CoreDNS pod);
	// "0s" sends every attempt from a new port. Defaults to 1s.
	WarmPortAge string `json:"warmPortAge"`
}

// DefaultDNSProxyAttempts is the forwarder's own default policy.
func DefaultDNSProxyAttempts() DNSProxyAttempts {
	return DNSProxyAttempts{
		Timeout:       "2s",
		Deadline:      "4s",
		HedgeDelayMin: "10ms",
		HedgeDelayMax: "500ms",
		MaxParallel:   16,
		HedgeBudget:   4,
		WarmPortAge:   "1s",
	}
}

// MaxDNSProxyParallelAttempts bounds dnsProxy.attempts.maxParallel.
const MaxDNSProxyParallelAttempts = 64

// Flags returns the `netguard dns-proxy` flags for the values that differ
// from the defaults, in a fixed order. Call it on validated settings.
func (a DNSProxyAttempts) Flags() []string {
	def := DefaultDNSProxyAttempts()
	var args []string
	for _, d := range []struct{ flag, value, def string }{
		{"--timeout", a.Timeout, def.Timeout},
		{"--deadline", a.Deadline, def.Deadline},
		{"--hedge-delay-min", a.HedgeDelayMin, def.HedgeDelayMin},
		{"--hedge-delay-max", a.HedgeDelayMax, def.HedgeDelayMax},
		{"--warm-port-age", a.WarmPortAge, def.WarmPortAge},
	} {
		v, _ := time.ParseDuration(d.value)
		if dv, _ := time.ParseDuration(d.def); v != dv {
			args = append(args, d.flag, v.String())
		}
	}
	if a.MaxParallel != def.MaxParallel {
		args = append(args, "--max-parallel-attempts", fmt.Sprint(a.MaxParallel))
	}
	if a.HedgeBudget != def.HedgeBudget {
		args = append(args, "--hedge-budget", fmt.Sprint(a.HedgeBudget))
	}
	return args
}

func (a *DNSProxyAttempts) validate(p *field.Path) field.ErrorList {
	var errs field.ErrorList
	duration := func(name, v string) time.Duration {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			errs = append(errs, field.Invalid(p.Child(name), v, `must be a positive duration such as "2s" or "500ms"`))
			return 0
		}
		return d
	}
	timeout, deadline := duration("timeout", a.Timeout), duration("deadline", a.Deadline)
	if timeout > 0 && deadline > 0 && deadline < timeout {
		errs = append(errs, field.Invalid(p.Child("deadline"), a.Deadline, fmt.Sprintf("must be at least dnsProxy.attempts.timeout (%s)", a.Timeout)))
	}
	hedgeMin, hedgeMax := duration("hedgeDelayMin", a.HedgeDelayMin), duration("hedgeDelayMax", a.HedgeDelayMax)
	if hedgeMin > 0 && hedgeMax > 0 && hedgeMax < hedgeMin {
		errs = append(errs, field.Invalid(p.Child("hedgeDelayMax"), a.HedgeDelayMax, fmt.Sprintf("must be at least dnsProxy.attempts.hedgeDelayMin (%s)", a.HedgeDelayMin)))
	}
	if a.MaxParallel < 1 || a.MaxParallel > MaxDNSProxyParallelAttempts {
		errs = append(errs, field.Invalid(p.Child("maxParallel"), a.MaxParallel, fmt.Sprintf("must be 1..%d", MaxDNSProxyParallelAttempts)))
	}
	if !(a.HedgeBudget > 0) {
		errs = append(errs, field.Invalid(p.Child("hedgeBudget"), a.HedgeBudget, "must be positive"))
	}
	if d, err := time.ParseDuration(a.WarmPortAge); err != nil || d < 0 {
		errs = append(errs, field.Invalid(p.Child("warmPortAge"), a.WarmPortAge, `must be a duration such as "1s", or "0s" for a new port on every attempt`))
	}
	return errs
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
		Attempts:        DefaultDNSProxyAttempts(),
	}
}
