package services

import (
	"context"

	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/netguard-io/netguard/clusterview"
	"github.com/netguard-io/netguard/config"
)

// Paths the handlers are served at.
const (
	// ServicePath is the ValidatingWebhookConfiguration path for Services
	// (CREATE, UPDATE).
	ServicePath = "/validate-v1-service"
	// WorkloadPath is the ValidatingWebhookConfiguration path for
	// apps/v1 Deployments, StatefulSets and DaemonSets (UPDATE).
	WorkloadPath = "/validate-apps-v1-workload"
)

// Setup registers the handlers at ServicePath and WorkloadPath on mgr's
// webhook server; they read view, which must come from clusterview.New
// with the same cfg. The Service handler answers 503 until view has
// synced.
//
// With the guard disabled in cfg, Setup registers handlers that admit
// everything.
//
// wrap, if given, wraps the Service handler (in order), so that other
// Service checks, such as the conflict detector, see every Service request,
// including those the guard skips.
func Setup(mgr manager.Manager, view *clusterview.Cache, cfg *config.Config, wrap ...func(admission.Handler) admission.Handler) {
	srv := mgr.GetWebhookServer()
	if !cfg.ServiceGuard.Enabled {
		off := admission.HandlerFunc(func(context.Context, admission.Request) admission.Response {
			return admission.Allowed("service guard disabled")
		})
		srv.Register(ServicePath, &webhook.Admission{Handler: wrapped(off, wrap)})
		srv.Register(WorkloadPath, &webhook.Admission{Handler: off})
		return
	}
	srv.Register(ServicePath, unavailableUntilSynced(view.Synced, &webhook.Admission{Handler: wrapped(NewServiceHandler(view.View(), cfg), wrap)}))
	srv.Register(WorkloadPath, &webhook.Admission{Handler: NewWorkloadHandler(view.View(), cfg, view.Synced)})
}

func wrapped(h admission.Handler, wraps []func(admission.Handler) admission.Handler) admission.Handler {
	for _, w := range wraps {
		h = w(h)
	}
	return h
}
