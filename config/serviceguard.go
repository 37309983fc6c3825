package config

import (
	"time"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// GuardMode says what the Service selector guard does with a finding.
type GuardMode string

const (
	// GuardModeEnforce denies the Service.
	GuardModeEnforce GuardMode = "enforce"
	// GuardModeWarn admits it with an admission warning.
	GuardModeWarn GuardMode = "warn"
	// GuardModeDryRun admits it silently; the finding is logged and counted.
	GuardModeDryRun GuardMode = "dry-run"
)

// ServiceGuardConfig is the Service selector guard.
type ServiceGuardConfig struct {
	// Enabled turns the guard on. Defaults to true.
	Enabled bool `json:"enabled"`
	// Mode is enforce, warn or dry-run. A namespace annotation
	// netguard.io/service-guard overrides it. Defaults to enforce.
	Mode GuardMode `json:"mode"`
	// NamespaceMode is which namespaces the Service guard, the conflict
	// detector and the reports act on: opt-in or cluster-wide, with the
	// exclusions of namespaces. Empty follows namespaces.mode, the pods'
	// setting; cluster-wide here with opt-in pods checks every namespace's
	// Services (warn or dry-run first, typically) while pods are changed
	// only where teams opted in.
	NamespaceMode NamespaceMode `json:"namespaceMode,omitempty"`
	// Coverage is the live check of the Services already in the cluster.
	Coverage CoverageConfig `json:"coverage"`
}

// CoverageConfig is the live coverage check: netguard re-judges a
// Service's selector when the Service, its workloads or their pods change,
// and reports when it starts or stops routing to part of a rollout (an
// Event on the Service, a gauge, a log line).
type CoverageConfig struct {
	// Enabled turns the check on. Defaults to true.
	Enabled bool `json:"enabled"`
	// Settle is how long a Service must stay in (or out of) the state before
	// the change is reported, as a Go duration: a rollout's passing moments
	// make no Events. Defaults to 10s.
	Settle string `json:"settle"`
	// MaxChecksPerSecond bounds the work: re-judged Services per second, on
	// each replica. Changes coming faster wait, coalesced per Service.
	// Defaults to 100.
	MaxChecksPerSecond int `json:"maxChecksPerSecond"`
}

// SettleDuration is Settle parsed; 0 before validation passed.
func (c *CoverageConfig) SettleDuration() time.Duration {
	d, _ := time.ParseDuration(c.Settle)
	return d
}

func (c *CoverageConfig) validate(p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if d, err := time.ParseDuration(c.Settle); err != nil {
		errs = append(errs, field.Invalid(p.Child("settle"), c.Settle, `must be a duration such as "10s" or "1m"`))
	} else if d < 0 || d > time.Hour {
		errs = append(errs, field.Invalid(p.Child("settle"), c.Settle, "must be 0s..1h"))
	}
	if c.MaxChecksPerSecond < 1 || c.MaxChecksPerSecond > 100000 {
		errs = append(errs, field.Invalid(p.Child("maxChecksPerSecond"), c.MaxChecksPerSecond, "must be 1..100000"))
	}
	return errs
}

// ServiceNamespaces selects the namespaces the Service guard, the conflict
// detector and the reports act on: namespaces, with the guard's own mode
// when it sets one.
func (c *Config) ServiceNamespaces() NamespacesConfig {
	n := c.Namespaces
	if c.ServiceGuard.NamespaceMode != "" {
		n.Mode = c.ServiceGuard.NamespaceMode
	}
	return n
}

func defaultServiceGuard() ServiceGuardConfig {
	return ServiceGuardConfig{Enabled: true, Mode: GuardModeEnforce, Coverage: CoverageConfig{Enabled: true, Settle: "10s", MaxChecksPerSecond: 100}}
}
