package clusterview

import (
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/netguard-io/netguard/policies/selectorguard"
)

// Index names added to the informers' stores. Every store also has
// controller-runtime's namespace index (toolscache.NamespaceIndex).
const (
	// IndexController indexes Pods and ReplicaSets by the UID of their
	// controller, so a workload's ReplicaSets and pods are found without
	// scanning the namespace.
	IndexController = "netguard.io/controller-uid"
	// IndexLabel indexes Pods by "NAMESPACE/KEY=VALUE" for each label, so a
	// selector's candidate pods are found without scanning the namespace.
	// Labels that name one pod or one revision are left out: they only add
	// one small bucket per pod, and selectors on them are judged without
	// the index.
	IndexLabel = "netguard.io/label"
)

// IndexTemplateLabel indexes Deployments, StatefulSets and DaemonSets
// by "NAMESPACE/KEY=VALUE" for each label of their pod template, so the
// workloads whose template a selector matches are found without scanning
// the namespace.
const IndexTemplateLabel = "netguard.io/template-label"

// unindexedLabels are label keys whose values are unique per pod or per
// revision.
var unindexedLabels = append(append([]string{
	"controller-uid", "batch.kubernetes.io/controller-uid",
}, selectorguard.RevisionLabels...), selectorguard.SinglePodLabels...)

// controllerUID indexes an object by its controller's UID.
func controllerUID(obj any) ([]string, error) {
	if p, ok := obj.(*Pod); ok {
		if ref := p.Controller(); ref != nil {
			return []string{string(ref.UID)}, nil
		}
		return nil, nil
	}
	m, ok := obj.(metav1.Object)
	if !ok {
		return nil, nil
	}
	if ref := metav1.GetControllerOfNoCopy(m); ref != nil {
		return []string{string(ref.UID)}, nil
	}
	return nil, nil
}

// podLabels indexes a pod by each of its labels.
func podLabels(obj any) ([]string, error) {
	m, ok := obj.(metav1.Object)
	if !ok {
		return nil, nil
	}
	ns := m.GetNamespace()
	out := make([]string, 0, len(m.GetLabels()))
	for k, v := range m.GetLabels() {
		if slices.Contains(unindexedLabels, k) {
			continue
		}
		out = append(out, labelIndexKey(ns, k, v))
	}
	return out, nil
}

// templateLabels indexes a workload by each label of its pod template.
func templateLabels(obj any) ([]string, error) {
	var meta *metav1.ObjectMeta
	var labels map[string]string
	switch w := obj.(type) {
	case *appsv1.Deployment:
		meta, labels = &w.ObjectMeta, w.Spec.Template.Labels
	case *appsv1.StatefulSet:
		meta, labels = &w.ObjectMeta, w.Spec.Template.Labels
	case *appsv1.DaemonSet:
		meta, labels = &w.ObjectMeta, w.Spec.Template.Labels
	default:
		return nil, nil
	}
	out := make([]string, 0, len(labels))
	for k, v := range labels {
		if labelIndexed(k) {
			out = append(out, labelIndexKey(meta.Namespace, k, v))
		}
	}
	return out, nil
}

func labelIndexKey(ns, k, v string) string { return ns + "/" + k + "=" + v }

func labelIndexed(k string) bool { return !slices.Contains(unindexedLabels, k) }

// PodIndexers are the indexes the view needs on the Pod store, besides the
// namespace index.
func PodIndexers() toolscache.Indexers {
	return toolscache.Indexers{IndexController: controllerUID, IndexLabel: podLabels}
}

// ReplicaSetIndexers are the indexes the view needs on the ReplicaSet
// store, besides the namespace index.
func ReplicaSetIndexers() toolscache.Indexers {
	return toolscache.Indexers{IndexController: controllerUID}
}

// WorkloadIndexers are the indexes the view needs on the Deployment,
// StatefulSet and DaemonSet stores, besides the namespace index.
func WorkloadIndexers() toolscache.Indexers {
	return toolscache.Indexers{IndexTemplateLabel: templateLabels}
}

// NewStores returns empty stores with the same key function and indexes as
// the informers New starts, for tests and benchmarks that fill them
// with objects passed through the same transforms (see Transform).
func NewStores(withRollouts bool) Stores {
	newIndexer := func(extra toolscache.Indexers) toolscache.Indexer {
		idx := toolscache.Indexers{toolscache.NamespaceIndex: toolscache.MetaNamespaceIndexFunc}
		for k, v := range extra {
			idx[k] = v
		}
		return toolscache.NewIndexer(toolscache.DeletionHandlingMetaNamespaceKeyFunc, idx)
	}
	s := Stores{
		Pods:         newIndexer(PodIndexers()),
		ReplicaSets:  newIndexer(ReplicaSetIndexers()),
		Deployments:  newIndexer(WorkloadIndexers()),
		StatefulSets: newIndexer(WorkloadIndexers()),
		DaemonSets:   newIndexer(WorkloadIndexers()),
		Namespaces:   newIndexer(nil),
		Services:     newIndexer(nil),
	}
	if withRollouts {
		s.Rollouts = newIndexer(nil)
	}
	return s
}
