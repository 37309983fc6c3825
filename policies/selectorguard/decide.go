package selectorguard

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/netguard-io/netguard/config"
)

// Action is what the guard did with a finding. The values are the action
// label of netguard_serviceguard_findings_total.
type Action string

// Actions.
const (
	// ActionDenied: the finding denied the Service (enforce mode).
	ActionDenied Action = "denied"
	// ActionWarned: the finding became an admission warning.
	ActionWarned Action = "warned"
	// ActionOverridden: a denying finding was admitted, with a warning,
	// because of the allow-subset-selector annotation.
	ActionOverridden Action = "overridden"
	// ActionDryRun: the finding was only logged and counted (dry-run mode).
	ActionDryRun Action = "dry-run"
)

// Actions lists every action, for metrics that want to report zeros.
var Actions = []Action{ActionDenied, ActionWarned, ActionOverridden, ActionDryRun}

// Outcome is a finding with what was done about it.
type Outcome struct {
	Finding Finding
	Action  Action
}

// Decision is the guard's answer for one Service.
type Decision struct {
	// Allowed is false when at least one finding denies the Service.
	Allowed bool
	// Mode the decision was made in.
	Mode config.GuardMode
	// Outcomes has one entry per finding, in the findings' order.
	Outcomes []Outcome
	// Warnings are the admission warnings to return.
	Warnings []string
	// Overridden is true when the allow-subset-selector annotation admitted a
	// Service that a rule denies; OverrideReason is the annotation's value.
	Overridden     bool
	OverrideReason string
	// Err is the denial, a 422 Invalid error on spec.selector naming the
	// Service, with one cause per denying finding; nil when Allowed.
	Err *apierrors.StatusError
}

// Decide turns the findings of Check into a decision for the given mode:
//
//	mode     | deny finding                  | warn finding
//	---------+-------------------------------+-------------
//	enforce  | denied                        | warning
//	         | (annotated: warning, admitted)|
//	warn     | warning                       | warning
//	dry-run  | logged and counted only       | logged and counted only
//
// "annotated" is a Service carrying netguard.io/allow-subset-selector; in
// warn mode the annotation also marks the warning as overridden. An unknown
// mode is treated as enforce.
func Decide(findings []Finding, mode config.GuardMode, svc *corev1.Service) Decision {
	switch mode {
	case config.GuardModeEnforce, config.GuardModeWarn, config.GuardModeDryRun:
	default:
		mode = config.GuardModeEnforce
	}
	reason, annotated := svc.Annotations[AllowSubsetAnnotation]
	d := Decision{Allowed: true, Mode: mode}
	name := fmt.Sprintf("Service %s/%s", svc.Namespace, svc.Name)
	var denials field.ErrorList
	for _, f := range findings {
		var a Action
		switch {
		case mode == config.GuardModeDryRun:
			a = ActionDryRun
		case !f.Deny:
			a = ActionWarned
			d.Warnings = append(d.Warnings, fmt.Sprintf("%s: %s", name, f.Message))
		case annotated:
			a = ActionOverridden
			d.Overridden, d.OverrideReason = true, reason
			// The message's advice to annotate is done already.
			msg := strings.TrimSuffix(f.Message, ", or annotate "+AllowSubsetAnnotation)
			d.Warnings = append(d.Warnings, fmt.Sprintf("%s admitted by %s (%s): %s", name, AllowSubsetAnnotation, reasonText(reason), msg))
		case mode == config.GuardModeWarn:
			a = ActionWarned
			d.Warnings = append(d.Warnings, fmt.Sprintf("%s would be denied (service guard in warn mode): %s", name, f.Message))
		default:
			a = ActionDenied
			denials = append(denials, f.FieldError())
		}
		d.Outcomes = append(d.Outcomes, Outcome{Finding: f, Action: a})
	}
	if len(denials) > 0 {
		d.Allowed = false
		d.Err = apierrors.NewInvalid(schema.GroupKind{Kind: "Service"}, svc.Name, denials)
	}
	return d
}

func reasonText(reason string) string {
	if reason == "" {
		return "no reason given"
	}
	return fmt.Sprintf("reason: %q", reason)
}

// ModeFor returns the mode for Services in a namespace: the namespace's
// netguard.io/service-guard annotation if set, else the configured mode. An
// annotation with a bad value is ignored, and reported as an error.
func ModeFor(configured config.GuardMode, namespaceAnnotations map[string]string) (config.GuardMode, error) {
	v, ok := namespaceAnnotations[NamespaceModeAnnotation]
	if !ok {
		return configured, nil
	}
	switch m := config.GuardMode(v); m {
	case config.GuardModeEnforce, config.GuardModeWarn, config.GuardModeDryRun:
		return m, nil
	}
	return configured, fmt.Errorf("namespace annotation %s=%q is not one of %s, %s, %s; using %s",
		NamespaceModeAnnotation, v, config.GuardModeEnforce, config.GuardModeWarn, config.GuardModeDryRun, configured)
}
