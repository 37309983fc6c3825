package certs

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// caBundle writes of self-managed TLS. Serving-certificate and CA renewals
// are logged; cert-manager's code does not count them.
var (
	caBundleUpdates = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "netguard_tls_cabundle_updates_total",
		Help: "Webhook configurations whose caBundle netguard rewrote (self-managed TLS).",
	})
	caBundleErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "netguard_tls_cabundle_errors_total",
		Help: "Failed passes over netguard's webhook configurations' caBundle (self-managed TLS); retried with backoff.",
	})
)

func init() {
	metrics.Registry.MustRegister(caBundleUpdates, caBundleErrors)
}
