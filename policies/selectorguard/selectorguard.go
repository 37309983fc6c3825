package selectorguard

import (
	"fmt"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Annotations the guard reads.
const (
	// AllowSubsetAnnotation on a Service admits it even when a rule would
	// deny it. Its value is the reason, which is logged and shown in the
	// admission warning.
	AllowSubsetAnnotation = "netguard.io/allow-subset-selector"
	// NamespaceModeAnnotation on a Namespace sets the guard's mode for the
	// Services in it (enforce, warn or dry-run), overriding the configured
	// mode.
	NamespaceModeAnnotation = "netguard.io/service-guard"
	// ArgoManagedAnnotation is set by Argo Rollouts on the Services whose
	// selectors it rewrites (value: the Rollout's name). Argo pins such
	// selectors to one revision on purpose, with LabelRolloutsPodTemplateHash.
	ArgoManagedAnnotation = "argo-rollouts.argoproj.io/managed-by-rollouts"
)

// Pod labels that identify a revision of a workload.
const (
	// LabelPodTemplateHash is the ReplicaSet hash of a Deployment's pods.
	LabelPodTemplateHash = appsv1.DefaultDeploymentUniqueLabelKey
	// LabelControllerRevisionHash is the ControllerRevision of a
	// StatefulSet's or DaemonSet's pods.
	LabelControllerRevisionHash = appsv1.ControllerRevisionHashLabelKey
	// LabelRolloutsPodTemplateHash is the ReplicaSet hash of an Argo
	// Rollout's pods.
	LabelRolloutsPodTemplateHash = "rollouts-pod-template-hash"
)

// RevisionLabels are the label keys whose value names one revision. A
// Service that selects on one of them follows a single ReplicaSet or
// ControllerRevision and loses its endpoints at the next rollout.
var RevisionLabels = []string{LabelPodTemplateHash, LabelControllerRevisionHash, LabelRolloutsPodTemplateHash}

// SinglePodLabels are the label keys that name one pod. A Service selecting
// on them picks that pod on purpose (a per-replica Service of a
// StatefulSet), so the rules never deny it for matching a subset.
var SinglePodLabels = []string{appsv1.StatefulSetPodNameLabel, appsv1.PodIndexLabel}

// Kind is the kind of a workload that owns pods.
type Kind string

// Workload kinds. Deployments, StatefulSets, DaemonSets and Rollouts roll
// out revisions; the other kinds only group pods for the warnings.
const (
	KindDeployment  Kind = "Deployment"
	KindStatefulSet Kind = "StatefulSet"
	KindDaemonSet   Kind = "DaemonSet"
	// KindRollout is an Argo Rollout (argoproj.io).
	KindRollout Kind = "Rollout"
	// KindReplicaSet is a ReplicaSet that no Deployment or Rollout owns.
	KindReplicaSet Kind = "ReplicaSet"
	KindJob        Kind = "Job"
	// KindPod groups the pods that have no controller. Its Workload has an
	// empty Name.
	KindPod Kind = "Pod"
)

// Rolls reports whether workloads of kind k replace their pods revision by
// revision, the only kind whose pods a selector can split by revision.
func (k Kind) Rolls() bool {
	switch k {
	case KindDeployment, KindStatefulSet, KindDaemonSet, KindRollout:
		return true
	}
	return false
}

// PodInfo is what the rules need to know about one pod.
type PodInfo struct {
	// Name of the pod.
	Name string
	// Labels of the pod. Read-only: views may hand out their cached map.
	Labels map[string]string
	// Revision is the short id of the pod's revision within its workload:
	// the pod-template-hash of a Deployment's pods, the
	// rollouts-pod-template-hash of a Rollout's, the controller-revision-hash
	// (without the workload name prefix) of a StatefulSet's or DaemonSet's.
	Revision string
	// Terminating is true once the pod has a deletion timestamp.
	Terminating bool
	// Finished is true for pods in phase Succeeded or Failed (evicted pods
	// linger in phase Failed).
	Finished bool
}

// Live reports whether the pod is, or will become, an endpoint: neither
// terminating nor finished.
func (p PodInfo) Live() bool { return !p.Terminating && !p.Finished }

// Workload is a set of pods with one controller: what a Service routes to.
type Workload struct {
	// Kind of the workload.
	Kind Kind
	// Namespace and Name of the workload. Name is empty for KindPod.
	Namespace, Name string
	// TemplateLabels are the labels of the pod template the workload rolls
	// out now. Nil when unknown or when the kind has no template.
	TemplateLabels map[string]string
	// TemplateRevision is the revision id of the pods that template creates,
	// or "" when no such revision exists yet or it is unknown.
	TemplateRevision string
	// Pods are the workload's pods, terminating and finished ones included
	// (the rules skip them). For kinds that do not roll, a view may list only
	// the pods that one of the requested selectors matches.
	Pods []PodInfo
}

// String names the workload as messages do: "Deployment loki/distributor".
func (w Workload) String() string {
	if w.Kind == KindPod && w.Name == "" {
		return fmt.Sprintf("standalone pods in %s", w.Namespace)
	}
	return fmt.Sprintf("%s %s/%s", w.Kind, w.Namespace, w.Name)
}

// View is a read-only view of the workloads of a namespace.
type View interface {
	// Workloads returns the workloads in namespace that a Service with one of
	// the selectors may route to. It must include every workload owning a pod
	// that one of the selectors matches and every workload whose pod template
	// one of them matches, each with all its pods; it may return more. The
	// caller owns the returned slice (not the pods' label maps).
	Workloads(namespace string, selectors ...map[string]string) []Workload
}

// StaticView is a View over a fixed list of workloads, such as workloads
// rendered from manifests. It returns every workload of the namespace.
type StaticView []Workload

var _ View = StaticView(nil)

// Workloads returns the workloads of namespace.
func (v StaticView) Workloads(namespace string, _ ...map[string]string) []Workload {
	var out []Workload
	for _, w := range v {
		if w.Namespace == namespace {
			out = append(out, w)
		}
	}
	return out
}

// RuleID names a rule. The values are stable: they appear in logs and as the
// rule label of netguard_serviceguard_findings_total.
type RuleID string

// The rules.
const (
	// RuleRevisionKey denies a selector on a key that names a revision.
	RuleRevisionKey RuleID = "revision-key"
	// RuleRevisionSubset denies a selector that matches some revisions of a
	// workload's live pods and none of the pods of another.
	RuleRevisionSubset RuleID = "revision-subset"
	// RuleTemplateOnly denies a selector that matches a workload's pod
	// template but none of its live pods: the Service would be empty, then
	// send all its traffic to the first new pods.
	RuleTemplateOnly RuleID = "template-only"
	// RuleDropsRevision denies a selector change that drops pods the old
	// selector matched, by revision, while still matching the workload.
	RuleDropsRevision RuleID = "drops-revision"
	// RuleMatchesNothing warns about a selector that matches no live pod and
	// no workload's pod template.
	RuleMatchesNothing RuleID = "matches-nothing"
	// RuleManyWorkloads warns about a selector that matches the pods of more
	// than one workload.
	RuleManyWorkloads RuleID = "many-workloads"
	// RuleTemplateDropsLabel warns about a workload update whose pod
	// template drops a label a Service selects.
	RuleTemplateDropsLabel RuleID = "template-drops-label"
)

// Rules lists every rule, for metrics that want to report zeros.
var Rules = []RuleID{
	RuleRevisionKey, RuleRevisionSubset, RuleTemplateOnly, RuleDropsRevision,
	RuleMatchesNothing, RuleManyWorkloads, RuleTemplateDropsLabel,
}

// Finding is one problem a rule found.
type Finding struct {
	// Rule that found it.
	Rule RuleID
	// Deny is true when the rule denies the Service (in enforce mode);
	// false for warnings.
	Deny bool
	// Message says what is wrong, with the counts, and how to fix it.
	Message string
	// Field is the offending field, e.g. spec.selector or
	// spec.selector[pod-template-hash].
	Field *field.Path
	// Value is the offending value of Field.
	Value any
	// Workload names the workload concerned ("Deployment loki/distributor"),
	// or is empty.
	Workload string
	// Matched and Total are the workload's live pods the selector matches,
	// and all its live pods (zero when no workload is concerned).
	Matched, Total int
}

// FieldError is the finding as a field error, for apierrors.NewInvalid.
func (f Finding) FieldError() *field.Error {
	return field.Invalid(f.Field, f.Value, f.Message)
}

// Matches reports whether labels satisfy the Service selector sel as the
// EndpointSlice controller sees it: every key present, with the same value.
func Matches(sel, labels map[string]string) bool {
	for k, v := range sel {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// Selector is a Service selector prepared for matching many label sets:
// ranging over a slice is much cheaper than over a map.
type Selector []LabelPair

// LabelPair is one key=value of a Selector.
type LabelPair struct{ Key, Value string }

// NewSelector prepares sel, in key order.
func NewSelector(sel map[string]string) Selector {
	out := make(Selector, 0, len(sel))
	for k, v := range sel {
		out = append(out, LabelPair{k, v})
	}
	slices.SortFunc(out, func(a, b LabelPair) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// Matches reports whether labels satisfy the selector, as Matches does.
func (s Selector) Matches(labels map[string]string) bool {
	for _, p := range s {
		if got, ok := labels[p.Key]; !ok || got != p.Value {
			return false
		}
	}
	return true
}
