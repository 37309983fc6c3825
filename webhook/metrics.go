package webhook

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/netguard-io/netguard/config"
)

// Pod webhook metrics, on top of controller-runtime's
// controller_runtime_webhook_* request counters and latency histograms.
// Labels are bounded: policy names, skip reasons and error kinds only.
var (
	podMutations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "netguard_pod_mutations_total",
		Help: "Pod policies applied at admission, by policy.",
	}, []string{"policy"})
	podResolvers = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "netguard_pod_resolvers_total",
		Help: "Pods mutated at admission, by the resolver their DNS rules were chosen for (glibc, musl, go, unknown).",
	}, []string{"resolver"})
	podSkips = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "netguard_pod_skips_total",
		Help: "Pods admitted without changes, by reason.",
	}, []string{"reason"})
	dnsProxySkips = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "netguard_pod_dns_proxy_skips_total",
		Help: "Pods that would have got the DNS sidecar but did not, by reason.",
	}, []string{"reason"})
	webhookErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "netguard_webhook_errors_total",
		Help: "Admission requests netguard could not process, by webhook and kind of error.",
	}, []string{"webhook", "kind"})
)

func init() {
	for _, r := range config.Resolvers {
		podResolvers.WithLabelValues(string(r))
	}
	metrics.Registry.MustRegister(podMutations, podResolvers, podSkips, dnsProxySkips, webhookErrors)
}
