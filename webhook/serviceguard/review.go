package serviceguard

import (
	corev1 "k8s.io/api/core/v1"

	"github.com/netguard-io/netguard/config"
	"github.com/netguard-io/netguard/policies/selectorguard"
)

// SkipNamespaceNotSelected is Review.Skipped for a Service in a namespace
// the settings leave out (config.Config.ServiceNamespaces).
const SkipNamespaceNotSelected = "namespace not selected"

// Review is the guard's judgement of one Service, made the way the
// Service handler makes it at admission.
type Review struct {
	// Skipped says why the Service was not judged: a selectorguard.SkipReason
	// or SkipNamespaceNotSelected; "" when it was judged.
	Skipped string
	// Mode is the mode the Service was judged in: the namespace's
	// netguard.io/service-guard annotation, else the configured mode.
	Mode config.GuardMode
	// ModeErr reports a namespace annotation with a bad value, which was
	// ignored for the configured mode.
	ModeErr error
	// Decision is the outcome; zero when Skipped.
	Decision selectorguard.Decision
}

// ReviewService judges svc as admission does: old is the Service before an
// UPDATE, nil at CREATE. It skips what selectorguard.Skip skips and
// Services in namespaces the settings leave out, reads the namespace's
// mode from view, and leaves the judgement to selectorguard.Check and
// selectorguard.Decide. `netguard audit` judges live Services with it, as
// at CREATE.
func ReviewService(view *ClusterView, cfg *config.Config, svc, old *corev1.Service) Review {
	if reason, skip := selectorguard.Skip(svc, old); skip {
		return Review{Skipped: string(reason)}
	}
	ns, _ := view.Namespace(svc.Namespace)
	if !namespaceSelected(cfg.ServiceNamespaces(), svc.Namespace, ns) {
		return Review{Skipped: SkipNamespaceNotSelected}
	}
	var nsAnnotations map[string]string
	if ns != nil {
		nsAnnotations = ns.Annotations
	}
	mode, err := selectorguard.ModeFor(cfg.ServiceGuard.Mode, nsAnnotations)
	findings := selectorguard.Check(svc, old, view)
	return Review{Mode: mode, ModeErr: err, Decision: selectorguard.Decide(findings, mode, svc)}
}
