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
	// NamespaceMode is which namespaces the Service guard, the conflict
	// detector and the reports act on: opt-in or cluster-wide, with the
	// exclusions of namespaces. Empty follows namespaces.mode, the pods'
	// setting; cluster-wide here with opt-in pods checks every namespace's
	// Services (warn or dry-run first, typically) while pods are changed
	// only where teams opted in.
	NamespaceMode NamespaceMode `json:"namespaceMode,omitempty"`
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
	return ServiceGuardConfig{Enabled: true, Mode: GuardModeEnforce}
}
