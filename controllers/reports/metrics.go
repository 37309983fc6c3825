package reports

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	reportSyncs = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "netguard_reports_syncs_total",
		Help: "Times the leader judged the cluster for the OpenReports Reports.",
	})
	reportWrites = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "netguard_reports_writes_total",
		Help: "Reports created, updated or deleted because their results changed.",
	})
)

func init() { metrics.Registry.MustRegister(reportSyncs, reportWrites) }
