package clusterview

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

var clusterDNSKnown = prometheus.NewGauge(prometheus.GaugeOpts{
	Name: "netguard_cluster_dns_known",
	Help: "1 when the cluster DNS IP is known (configured or discovered), else 0; search scrubbing needs it.",
})

func init() { metrics.Registry.MustRegister(clusterDNSKnown) }
