package services

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/netguard-io/netguard/clusterview"
	"github.com/netguard-io/netguard/config"
	"github.com/netguard-io/netguard/policies/selectorguard"
)

// WorkloadHandler reviews Deployment, StatefulSet and DaemonSet UPDATEs
// (/validate-apps-v1-workload) and warns when the new pod template drops a
// label that a Service of the namespace selects. It never denies.
type WorkloadHandler struct {
	view   *clusterview.View
	cfg    *config.Config
	synced func() bool
}

var _ admission.Handler = (*WorkloadHandler)(nil)

// NewWorkloadHandler returns the workload handler. synced reports whether
// the informers behind view have synced.
func NewWorkloadHandler(view *clusterview.View, cfg *config.Config, synced func() bool) *WorkloadHandler {
	return &WorkloadHandler{view: view, cfg: cfg, synced: synced}
}

// templated is the part of a Deployment, StatefulSet or DaemonSet the
// handler reads.
type templated struct {
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Template struct {
			metav1.ObjectMeta `json:"metadata"`
		} `json:"template"`
	} `json:"spec"`
}

func decodeTemplated(raw runtime.RawExtension) (*templated, error) {
	if len(raw.Raw) == 0 {
		return nil, errors.New("there is no content to decode")
	}
	var t templated
	if err := json.Unmarshal(raw.Raw, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// Handle implements admission.Handler.
func (h *WorkloadHandler) Handle(ctx context.Context, req admission.Request) admission.Response {
	log := logf.FromContext(ctx)
	var kind selectorguard.Kind
	switch {
	case req.Kind.Group != appsv1.GroupName || req.SubResource != "":
	case req.Kind.Kind == "Deployment":
		kind = selectorguard.KindDeployment
	case req.Kind.Kind == "StatefulSet":
		kind = selectorguard.KindStatefulSet
	case req.Kind.Kind == "DaemonSet":
		kind = selectorguard.KindDaemonSet
	}
	if kind == "" || req.Operation != admissionv1.Update {
		reviewsTotal.WithLabelValues(resultSkipped).Inc()
		return admission.Allowed("only UPDATEs of Deployments, StatefulSets and DaemonSets are reviewed")
	}
	obj, err := decodeTemplated(req.Object)
	if err != nil {
		reviewsTotal.WithLabelValues(resultErrored).Inc()
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding %s: %w", kind, err))
	}
	old, err := decodeTemplated(req.OldObject)
	if err != nil {
		reviewsTotal.WithLabelValues(resultErrored).Inc()
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding old %s: %w", kind, err))
	}
	newLabels, oldLabels := obj.Spec.Template.Labels, old.Spec.Template.Labels
	if maps.Equal(newLabels, oldLabels) {
		reviewsTotal.WithLabelValues(resultSkipped).Inc()
		return admission.Allowed("pod template labels unchanged")
	}
	if !h.synced() {
		// Only warnings are at stake: admit rather than fail the update.
		reviewsTotal.WithLabelValues(resultSkipped).Inc()
		return admission.Allowed(errNotSynced.Error())
	}
	namespace := obj.Namespace
	if namespace == "" {
		namespace = req.Namespace
	}
	ns, _ := h.view.Namespace(namespace)
	if !selectorguard.NamespaceSelected(h.cfg.ServiceNamespaces(), namespace, ns) {
		reviewsTotal.WithLabelValues(resultSkipped).Inc()
		return admission.Allowed("namespace not selected")
	}
	var nsAnnotations map[string]string
	if ns != nil {
		nsAnnotations = ns.Annotations
	}
	mode, err := selectorguard.ModeFor(h.cfg.ServiceGuard.Mode, nsAnnotations)
	if err != nil {
		log.Error(err, "ignoring the namespace's service guard mode")
	}

	name := obj.Name
	if name == "" {
		name = req.Name
	}
	w := selectorguard.Workload{Kind: kind, Namespace: namespace, Name: name}
	findings := selectorguard.CheckTemplateChange(w, oldLabels, newLabels, h.view.Services(namespace))
	var warnings []string
	action := selectorguard.ActionWarned
	if mode == config.GuardModeDryRun {
		action = selectorguard.ActionDryRun
	}
	for _, f := range findings {
		findingsTotal.WithLabelValues(string(f.Rule), string(action)).Inc()
		log.Info("workload template finding", "rule", f.Rule, "action", action, "mode", mode, "message", f.Message)
		if action == selectorguard.ActionWarned {
			warnings = append(warnings, f.Message)
		}
	}
	reviewsTotal.WithLabelValues(resultAllowed).Inc()
	return admission.Allowed("").WithWarnings(warnings...)
}
