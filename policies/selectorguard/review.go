package selectorguard

import (
	corev1 "k8s.io/api/core/v1"

	"github.com/netguard-io/netguard/config"
)

// InjectLabel on a Namespace opts it in ("enabled") or, in cluster-wide
// mode, out ("disabled").
const InjectLabel = "netguard.io/inject"

// SkipNamespaceNotSelected is Review.Skipped for a Service in a namespace
// the settings leave out (config.Config.ServiceNamespaces).
const SkipNamespaceNotSelected = "namespace not selected"

// NamespaceView is a View that also reads the cluster's Namespaces, for
// their inject label and service guard mode.
type NamespaceView interface {
	View
	// Namespace returns the Namespace called name, if it is known.
	Namespace(name string) (*corev1.Namespace, bool)
}

// Review is the guard's judgement of one Service, made the way the
// Service handler makes it at admission.
type Review struct {
	// Skipped says why the Service was not judged: a SkipReason
	// or SkipNamespaceNotSelected; "" when it was judged.
	Skipped string
	// Mode is the mode the Service was judged in: the namespace's
	// netguard.io/service-guard annotation, else the configured mode.
	Mode config.GuardMode
	// ModeErr reports a namespace annotation with a bad value, which was
	// ignored for the configured mode.
	ModeErr error
	// Decision is the outcome; zero when Skipped.
	Decision Decision
}

// ReviewService judges svc as admission does: old is the Service before an
// UPDATE, nil at CREATE. It skips what Skip skips and Services in
// namespaces the settings leave out, reads the namespace's mode from view,
// and leaves the judgement to Check and Decide. `netguard audit` judges live Services with it, as
// at CREATE.
func ReviewService(view NamespaceView, cfg *config.Config, svc, old *corev1.Service) Review {
	if reason, skip := Skip(svc, old); skip {
		return Review{Skipped: string(reason)}
	}
	ns, _ := view.Namespace(svc.Namespace)
	if !NamespaceSelected(cfg.ServiceNamespaces(), svc.Namespace, ns) {
		return Review{Skipped: SkipNamespaceNotSelected}
	}
	var nsAnnotations map[string]string
	if ns != nil {
		nsAnnotations = ns.Annotations
	}
	mode, err := ModeFor(cfg.ServiceGuard.Mode, nsAnnotations)
	findings := Check(svc, old, view)
	return Review{Mode: mode, ModeErr: err, Decision: Decide(findings, mode, svc)}
}

// NamespaceSelected applies the namespace selection of the settings: the
// excluded namespaces never, opt-in namespaces in opt-in mode, every
// namespace not opted out in cluster-wide mode. ns is the Namespace, nil
// when it is not known. The webhook configuration's namespaceSelector
// should already have filtered; this guards against a configuration that
// does not.
func NamespaceSelected(n config.NamespacesConfig, name string, ns *corev1.Namespace) bool {
	var label string
	if ns != nil {
		label = ns.Labels[InjectLabel]
	}
	return n.Selects(name, label)
}
