package config

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
}

func defaultServiceGuard() ServiceGuardConfig {
	return ServiceGuardConfig{Enabled: true, Mode: GuardModeEnforce}
}
