package services

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/netguard-io/netguard/clusterview"
	"github.com/netguard-io/netguard/config"
	"github.com/netguard-io/netguard/policies/selectorguard"
)

// errNotSynced answers reviews that arrive before the cluster view has
// synced: judging a selector against half a cache could deny a good
// Service.
var errNotSynced = errors.New("netguard service guard: the cluster view has not synced yet")

// unavailableUntilSynced answers 503 Service Unavailable, at the HTTP
// level, until the cluster view has synced. The API server counts that
// call as failed and applies the webhook's failurePolicy: Ignore admits
// the Service unchecked, Fail rejects it. An AdmissionReview answer, even
// an errored one, would be a denial whatever the failurePolicy.
func unavailableUntilSynced(synced func() bool, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !synced() {
			reviewsTotal.WithLabelValues(resultErrored).Inc()
			http.Error(w, errNotSynced.Error(), http.StatusServiceUnavailable)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// ServiceHandler reviews Services at CREATE and UPDATE
// (/validate-v1-service). It decodes the request, reads the namespace's
// settings and workloads from the view, and leaves the judgement to
// selectorguard.Check and selectorguard.Decide.
type ServiceHandler struct {
	view    *clusterview.View
	cfg     *config.Config
	decoder admission.Decoder
}

var _ admission.Handler = (*ServiceHandler)(nil)

// NewServiceHandler returns the Service handler. It expects a synced view:
// Setup serves it behind unavailableUntilSynced.
func NewServiceHandler(view *clusterview.View, cfg *config.Config) *ServiceHandler {
	return &ServiceHandler{view: view, cfg: cfg, decoder: admission.NewDecoder(clientgoscheme.Scheme)}
}

// Handle implements admission.Handler.
func (h *ServiceHandler) Handle(ctx context.Context, req admission.Request) admission.Response {
	log := logf.FromContext(ctx)
	if req.Kind.Group != "" || req.Kind.Kind != "Service" || req.SubResource != "" {
		reviewsTotal.WithLabelValues(resultSkipped).Inc()
		return admission.Allowed("not a Service")
	}
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		reviewsTotal.WithLabelValues(resultSkipped).Inc()
		return admission.Allowed("only CREATE and UPDATE are reviewed")
	}

	svc := &corev1.Service{}
	if err := h.decoder.DecodeRaw(req.Object, svc); err != nil {
		reviewsTotal.WithLabelValues(resultErrored).Inc()
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding Service: %w", err))
	}
	// The object of a CREATE may leave its namespace to the request.
	if svc.Namespace == "" {
		svc.Namespace = req.Namespace
	}
	var old *corev1.Service
	if req.Operation == admissionv1.Update {
		old = &corev1.Service{}
		if err := h.decoder.DecodeRaw(req.OldObject, old); err != nil {
			reviewsTotal.WithLabelValues(resultErrored).Inc()
			return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding old Service: %w", err))
		}
	}

	r := selectorguard.ReviewService(h.view, h.cfg, svc, old)
	if r.Skipped != "" {
		reviewsTotal.WithLabelValues(resultSkipped).Inc()
		return admission.Allowed(r.Skipped)
	}
	if r.ModeErr != nil {
		log.Error(r.ModeErr, "ignoring the namespace's service guard mode")
	}
	mode, d := r.Mode, r.Decision
	for _, o := range d.Outcomes {
		findingsTotal.WithLabelValues(string(o.Finding.Rule), string(o.Action)).Inc()
		log.Info("service selector finding", "rule", o.Finding.Rule, "action", o.Action, "mode", mode,
			"workload", o.Finding.Workload, "matched", o.Finding.Matched, "total", o.Finding.Total,
			"message", o.Finding.Message, "dryRun", req.DryRun != nil && *req.DryRun)
	}
	if d.Overridden {
		log.Info("service admitted by override annotation", "annotation", selectorguard.AllowSubsetAnnotation, "reason", d.OverrideReason)
	}
	if !d.Allowed {
		reviewsTotal.WithLabelValues(resultDenied).Inc()
		status := d.Err.Status()
		return admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{
			Allowed:  false,
			Result:   &status,
			Warnings: d.Warnings,
		}}
	}
	reviewsTotal.WithLabelValues(resultAllowed).Inc()
	return admission.Allowed("").WithWarnings(d.Warnings...)
}
