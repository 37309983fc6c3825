package framework

import (
	admissionregv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// NamespaceMode is how the webhook configuration selects namespaces.
type NamespaceMode string

// The two install modes of the chart.
const (
	OptIn       NamespaceMode = "opt-in"
	ClusterWide NamespaceMode = "cluster-wide"
)

// namespaceSelector selects the namespaces netguard acts on: those with
// the opt-in label or, cluster-wide, all but the opted-out ones and
// kube-system and netguard's own.
func namespaceSelector(mode NamespaceMode) *metav1.LabelSelector {
	if mode == ClusterWide {
		return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "netguard.io/inject", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"disabled"}},
			{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"kube-system", "netguard"}},
		}}
	}
	return &metav1.LabelSelector{MatchLabels: map[string]string{"netguard.io/inject": "enabled"}}
}

// PodWebhookName names the pod webhook in its configuration.
const PodWebhookName = "pods.netguard.io"

// PodWebhookConfiguration is the MutatingWebhookConfiguration for pods as
// the chart renders it: Pod CREATE only, failurePolicy Ignore (pods fail
// open), sideEffects None (dry-run works), reinvocationPolicy IfNeeded
// (stable next to other mutating webhooks), a short timeout, the namespace
// opt-in label (or, cluster-wide, every namespace but opted-out ones and
// kube-system), and netguard's own pods left out.
func PodWebhookConfiguration(url string, caBundle []byte, mode NamespaceMode) *admissionregv1.MutatingWebhookConfiguration {
	return &admissionregv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "netguard"},
		Webhooks: []admissionregv1.MutatingWebhook{{
			Name:                    PodWebhookName,
			ClientConfig:            admissionregv1.WebhookClientConfig{URL: &url, CABundle: caBundle},
			AdmissionReviewVersions: []string{"v1"},
			SideEffects:             ptr.To(admissionregv1.SideEffectClassNone),
			FailurePolicy:           ptr.To(admissionregv1.Ignore),
			ReinvocationPolicy:      ptr.To(admissionregv1.IfNeededReinvocationPolicy),
			TimeoutSeconds:          ptr.To[int32](5),
			NamespaceSelector:       namespaceSelector(mode),
			ObjectSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "app.kubernetes.io/name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"netguard"}},
			}},
			Rules: []admissionregv1.RuleWithOperations{{
				Operations: []admissionregv1.OperationType{admissionregv1.Create},
				Rule: admissionregv1.Rule{
					APIGroups:   []string{""},
					APIVersions: []string{"v1"},
					Resources:   []string{"pods"},
					Scope:       ptr.To(admissionregv1.NamespacedScope),
				},
			}},
		}},
	}
}

// ServiceWebhookName names the Service guard webhook in its configuration.
const ServiceWebhookName = "services.netguard.io"

// ServiceWebhookConfiguration is the ValidatingWebhookConfiguration for
// Services as the chart renders it: CREATE and UPDATE, failurePolicy as
// given (the chart's default is Ignore), the namespaces of mode (the
// chart's serviceGuard.namespaceMode).
func ServiceWebhookConfiguration(url string, caBundle []byte, failure admissionregv1.FailurePolicyType, mode NamespaceMode) *admissionregv1.ValidatingWebhookConfiguration {
	return &admissionregv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "netguard"},
		Webhooks: []admissionregv1.ValidatingWebhook{{
			Name:                    ServiceWebhookName,
			ClientConfig:            admissionregv1.WebhookClientConfig{URL: &url, CABundle: caBundle},
			AdmissionReviewVersions: []string{"v1"},
			SideEffects:             ptr.To(admissionregv1.SideEffectClassNone),
			FailurePolicy:           ptr.To(failure),
			TimeoutSeconds:          ptr.To[int32](5),
			NamespaceSelector:       namespaceSelector(mode),
			Rules: []admissionregv1.RuleWithOperations{{
				Operations: []admissionregv1.OperationType{admissionregv1.Create, admissionregv1.Update},
				Rule: admissionregv1.Rule{
					APIGroups:   []string{""},
					APIVersions: []string{"v1"},
					Resources:   []string{"services"},
					Scope:       ptr.To(admissionregv1.NamespacedScope),
				},
			}},
		}},
	}
}
