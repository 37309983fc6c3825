package conflicts

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Metrics of the conflict detector. None has labels: a namespace or a
// Service name would make them unbounded; the Events and the log name the
// Service.
var (
	conflictsTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "netguard_service_conflicts_total",
		Help: "Conflicts detected: a Service whose fields two or more field managers kept taking from each other.",
	})
	servicesInConflict = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "netguard_services_in_conflict",
		Help: "Services in conflict now: fought over within the last window.",
	})
	takeoversTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "netguard_service_field_takeovers_total",
		Help: "Writes in which a field manager took fields of a Service from another field manager.",
	})
	servicesTracked = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "netguard_service_conflict_tracked_services",
		Help: "Services with a takeover within the window, remembered by the detector (at most conflicts.maxTracked).",
	})
	denialsTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "netguard_service_conflict_denials_total",
		Help: "Service writes denied because they took fields of a Service in conflict (conflicts.mode deny).",
	})
	lbControllers = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "netguard_service_load_balancer_controllers",
		Help: "Field managers seen writing the status of LoadBalancer Services without spec.loadBalancerClass.",
	})
)

func init() {
	metrics.Registry.MustRegister(conflictsTotal, servicesInConflict, takeoversTotal, servicesTracked, denialsTotal, lbControllers)
}
