package coverage

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	partialRolloutServices = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "netguard_services_partial_rollout",
		Help: "Services whose selector routes to part of a rollout now (the live coverage check; every replica counts).",
	})
	partialRolloutTransitions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "netguard_serviceguard_partial_rollout_transitions_total",
		Help: "Services reported by the live coverage check as starting (partial) or ceasing (covered) to route to part of a rollout.",
	}, []string{"to"})
	coverageChecks = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "netguard_serviceguard_coverage_checks_total",
		Help: "Services re-judged by the live coverage check.",
	})
)

func init() {
	metrics.Registry.MustRegister(partialRolloutServices, partialRolloutTransitions, coverageChecks)
	partialRolloutTransitions.WithLabelValues("partial")
	partialRolloutTransitions.WithLabelValues("covered")
}
