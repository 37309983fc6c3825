package config

import (
	"time"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// ReportsConfig publishes what netguard finds, per namespace it acts on, as
// OpenReports Reports (openreports.io/v1alpha1), which Policy Reporter and
// `kubectl get reports` show: a result per Service (the selector guard's
// rules) and per pod worth showing (created without netguard's changes, or
// nginx without the DNS sidecar). Without the OpenReports API installed
// nothing is written.
type ReportsConfig struct {
	// Enabled turns the Reports on. Defaults to false.
	Enabled bool `json:"enabled"`
	// Interval is how often the leader re-judges the cluster and writes the
	// Reports that changed, as a Go duration. Defaults to 5m.
	Interval string `json:"interval"`
}

func defaultReports() ReportsConfig {
	return ReportsConfig{Interval: "5m"}
}

// IntervalDuration is Interval parsed; 0 before validation passed.
func (r *ReportsConfig) IntervalDuration() time.Duration {
	d, _ := time.ParseDuration(r.Interval)
	return d
}

func (r *ReportsConfig) validate(p *field.Path) field.ErrorList {
	if d, err := time.ParseDuration(r.Interval); err != nil {
		return field.ErrorList{field.Invalid(p.Child("interval"), r.Interval, `must be a duration such as "5m"`)}
	} else if d < time.Second || d > 24*time.Hour {
		return field.ErrorList{field.Invalid(p.Child("interval"), r.Interval, "must be 1s..24h")}
	}
	return nil
}
