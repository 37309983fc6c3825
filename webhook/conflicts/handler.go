package conflicts

import (
	"context"
	"fmt"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	ctrlconflicts "github.com/netguard-io/netguard/controllers/conflicts"
)

// StatusPath is the ValidatingWebhookConfiguration path for UPDATEs of the
// status subresource of Services, where load-balancer controllers write.
// Updates of the Service itself reach the detector through the Service
// webhook's handler (WrapServiceHandler).
const StatusPath = "/validate-v1-service-status"

// Setup registers the StatusHandler of d at StatusPath on mgr's webhook
// server. A disabled d (the conflict detector off) admits everything.
func Setup(mgr manager.Manager, d *ctrlconflicts.Detector) {
	mgr.GetWebhookServer().Register(StatusPath, &webhook.Admission{Handler: NewStatusHandler(d)})
}

// StatusHandler reviews Service status updates: a warning while the
// Service is in conflict (client-go logs it in the controller that wrote)
// and, in deny mode, the denial of a write that takes the status from
// another manager in the conflict.
type StatusHandler struct {
	detector *ctrlconflicts.Detector
	decoder  admission.Decoder
}

var _ admission.Handler = (*StatusHandler)(nil)

// NewStatusHandler returns the status handler of d.
func NewStatusHandler(d *ctrlconflicts.Detector) *StatusHandler {
	return &StatusHandler{detector: d, decoder: admission.NewDecoder(clientgoscheme.Scheme)}
}

// Handle implements admission.Handler.
func (h *StatusHandler) Handle(ctx context.Context, req admission.Request) admission.Response {
	if req.Kind.Group != "" || req.Kind.Kind != "Service" || req.SubResource != "status" || req.Operation != admissionv1.Update {
		return admission.Allowed("not an update of a Service's status")
	}
	if !h.detector.Enabled() || !h.detector.Selected(req.Namespace) {
		return admission.Allowed("")
	}
	svc, old := &corev1.Service{}, &corev1.Service{}
	if err := h.decoder.DecodeRaw(req.Object, svc); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding Service: %w", err))
	}
	if err := h.decoder.DecodeRaw(req.OldObject, old); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding old Service: %w", err))
	}
	warnings, denied := h.detector.Review(old, svc)
	if denied != nil {
		logf.FromContext(ctx).Info("denied a status write to a Service in conflict", "service", req.Namespace+"/"+req.Name,
			"user", req.UserInfo.Username, "reason", denied.Error(), "dryRun", req.DryRun != nil && *req.DryRun)
		status := denied.Status()
		return admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{Allowed: false, Result: &status, Warnings: warnings}}
	}
	return admission.Allowed("").WithWarnings(warnings...)
}

// WrapServiceHandler returns a wrapper of the Service webhook's handler
// that puts detector d in front: for a CREATE or UPDATE of a Service it
// runs d's Review and, when Review denies (deny mode), answers with the
// denial without calling next; otherwise it calls next and adds Review's
// warnings to its response. Other requests, and everything while the
// detector is disabled, go to next unchanged. A request the wrapper cannot
// decode is left to next, which reports it.
func WrapServiceHandler(d *ctrlconflicts.Detector) func(next admission.Handler) admission.Handler {
	return func(next admission.Handler) admission.Handler { return wrapServiceHandler(d, next) }
}

func wrapServiceHandler(d *ctrlconflicts.Detector, next admission.Handler) admission.Handler {
	decoder := admission.NewDecoder(clientgoscheme.Scheme)
	return admission.HandlerFunc(func(ctx context.Context, req admission.Request) admission.Response {
		if !d.Enabled() || req.Kind.Group != "" || req.Kind.Kind != "Service" || req.SubResource != "" ||
			(req.Operation != admissionv1.Create && req.Operation != admissionv1.Update) {
			return next.Handle(ctx, req)
		}
		svc := &corev1.Service{}
		if err := decoder.DecodeRaw(req.Object, svc); err != nil {
			return next.Handle(ctx, req)
		}
		if svc.Namespace == "" {
			svc.Namespace = req.Namespace
		}
		var old *corev1.Service
		if req.Operation == admissionv1.Update {
			old = &corev1.Service{}
			if err := decoder.DecodeRaw(req.OldObject, old); err != nil {
				return next.Handle(ctx, req)
			}
		}
		warnings, denied := d.Review(old, svc)
		if denied != nil {
			logf.FromContext(ctx).Info("denied a write to a Service in conflict", "service", req.Namespace+"/"+req.Name,
				"user", req.UserInfo.Username, "reason", denied.Error(), "dryRun", req.DryRun != nil && *req.DryRun)
			status := denied.Status()
			return admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{Allowed: false, Result: &status, Warnings: warnings}}
		}
		resp := next.Handle(ctx, req)
		resp.Warnings = append(resp.Warnings, warnings...)
		return resp
	})
}
