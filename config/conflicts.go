package config

import (
	"time"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// ConflictMode says what the detector of controllers fighting over a
// Service does at admission while a conflict lasts.
type ConflictMode string

const (
	// ConflictModeWarn admits every write and adds an admission warning.
	ConflictModeWarn ConflictMode = "warn"
	// ConflictModeDeny denies a write that takes fields of a Service in
	// conflict from another of the managers in the conflict, so the current
	// owner keeps them until the conflict ends.
	ConflictModeDeny ConflictMode = "deny"
)

// Limits on the conflict detector's settings.
const (
	// MinConflictFlips is the fewest takeovers that can make a fight: A took
	// a field from B and B took it back.
	MinConflictFlips = 2
	// MaxConflictFlips bounds the takeovers remembered per Service.
	MaxConflictFlips = 1000
	// MinConflictWindow and MaxConflictWindow bound conflicts.window.
	MinConflictWindow = time.Second
	MaxConflictWindow = 24 * time.Hour
	// MaxConflictTracked bounds conflicts.maxTracked.
	MaxConflictTracked = 1_000_000
)

// ConflictsConfig is the detector of controllers fighting over a Service:
// two or more field managers that keep taking the same fields of one
// Service from each other.
type ConflictsConfig struct {
	// Enabled turns the detector on. Defaults to true.
	Enabled bool `json:"enabled"`
	// Flips is how many takeovers of a Service's fields, between two or
	// more field managers, within Window make a conflict. Defaults to 6.
	Flips int `json:"flips"`
	// Window is how far back takeovers count, as a Go duration ("5m",
	// "90s"). A conflict ends when no takeover has been seen for a whole
	// window. Defaults to 5m.
	Window string `json:"window"`
	// MaxTracked bounds how many Services with recent takeovers are
	// remembered; past it the least recently changed is forgotten.
	// Defaults to 10000.
	MaxTracked int `json:"maxTracked"`
	// Mode is warn or deny. Defaults to warn.
	Mode ConflictMode `json:"mode"`
}

func defaultConflicts() ConflictsConfig {
	return ConflictsConfig{Enabled: true, Flips: 6, Window: "5m", MaxTracked: 10000, Mode: ConflictModeWarn}
}

// WindowDuration is Window parsed. It is only meaningful once the settings
// have been validated; an unparsable window gives 0.
func (c *ConflictsConfig) WindowDuration() time.Duration {
	d, err := time.ParseDuration(c.Window)
	if err != nil {
		return 0
	}
	return d
}

func (c *ConflictsConfig) validate(p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if c.Flips < MinConflictFlips || c.Flips > MaxConflictFlips {
		errs = append(errs, field.Invalid(p.Child("flips"), c.Flips, "must be 2..1000"))
	}
	if d, err := time.ParseDuration(c.Window); err != nil {
		errs = append(errs, field.Invalid(p.Child("window"), c.Window, `must be a duration such as "5m" or "90s"`))
	} else if d < MinConflictWindow || d > MaxConflictWindow {
		errs = append(errs, field.Invalid(p.Child("window"), c.Window, "must be 1s..24h"))
	}
	if c.MaxTracked < 1 || c.MaxTracked > MaxConflictTracked {
		errs = append(errs, field.Invalid(p.Child("maxTracked"), c.MaxTracked, "must be 1..1000000"))
	}
	switch c.Mode {
	case ConflictModeWarn, ConflictModeDeny:
	default:
		errs = append(errs, field.NotSupported(p.Child("mode"), c.Mode, []ConflictMode{ConflictModeWarn, ConflictModeDeny}))
	}
	return errs
}
