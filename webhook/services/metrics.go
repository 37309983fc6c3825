package services

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/netguard-io/netguard/policies/selectorguard"
)

// Review results, the result label of netguard_serviceguard_reviews_total.
const (
	resultAllowed = "allowed"
	resultDenied  = "denied"
	resultSkipped = "skipped"
	resultErrored = "errored"
)

var (
	findingsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "netguard_serviceguard_findings_total",
		Help: "Findings of the Service selector guard, by rule and by what was done about them (denied, warned, overridden, dry-run).",
	}, []string{"rule", "action"})
	reviewsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "netguard_serviceguard_reviews_total",
		Help: "Admission reviews of Services and workloads by the selector guard, by result (allowed, denied, skipped, errored).",
	}, []string{"result"})
)

func init() {
	metrics.Registry.MustRegister(findingsTotal, reviewsTotal)
	// Start every series at zero so that rate() and alerts see them.
	for _, r := range selectorguard.Rules {
		for _, a := range selectorguard.Actions {
			findingsTotal.WithLabelValues(string(r), string(a))
		}
	}
	for _, r := range []string{resultAllowed, resultDenied, resultSkipped, resultErrored} {
		reviewsTotal.WithLabelValues(r)
	}
}
