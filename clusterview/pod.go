package clusterview

import (
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/netguard-io/netguard/policies/selectorguard"
)

// Pod is what the cache keeps of a Pod: its identity, labels,
// controller, and whether it is terminating or finished. It is the largest
// store by far (every pod of the cluster), so it keeps no more than the
// rules read, and pods with equal labels, or the same controller, share
// one read-only copy of them (see labelSets and controllers).
//
// Pod implements metav1.Object for the informer's key and index functions:
// the getters of what it does not keep return zero values, and their
// setters do nothing. Objects in the store are never modified.
type Pod struct {
	Namespace       string
	Name            string
	ResourceVersion string
	// labels is shared with every cached pod of the same namespace and
	// labels: read only.
	labels *labelSet
	// controller is shared with every cached pod of the same controller:
	// read only. Nil for a pod without one.
	controller *metav1.OwnerReference
	// Terminating is set when the pod has a deletion timestamp.
	Terminating bool
	// Finished is set when the pod's phase is Succeeded or Failed.
	Finished bool
}

var (
	_ metav1.Object  = (*Pod)(nil)
	_ runtime.Object = (*Pod)(nil)
)

// newPod returns the lean form of p.
func newPod(p *corev1.Pod) *Pod {
	return &Pod{
		Namespace:       intern(p.Namespace),
		Name:            p.Name,
		ResourceVersion: p.ResourceVersion,
		labels:          podLabelSet(p.Namespace, p.Labels),
		controller:      sharedController(metav1.GetControllerOfNoCopy(p)),
		Terminating:     p.DeletionTimestamp != nil,
		Finished:        p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed,
	}
}

// Labels returns the pod's labels. The map is shared: read only.
func (p *Pod) Labels() map[string]string {
	if p.labels == nil {
		return nil
	}
	return p.labels.m
}

// SharesLabels reports whether p and o hold the one interned label set: a
// pointer comparison. Equal labels of one namespace usually share a set,
// but labels that name one pod get a set of their own, so false does not
// mean that the labels differ.
func (p *Pod) SharesLabels(o *Pod) bool { return p.labels == o.labels }

// SameLabels reports whether p and o carry the same labels: at once when
// they share the interned set, else key by key, since the labels that name
// one pod (a StatefulSet's pod-name and pod-index) give every transform of
// the pod, on each of its status updates, a set of its own.
func (p *Pod) SameLabels(o *Pod) bool {
	return p.labels == o.labels || maps.Equal(p.Labels(), o.Labels())
}

// Controller returns the pod's controller reference, or nil. It is shared:
// read only.
func (p *Pod) Controller() *metav1.OwnerReference { return p.controller }

// labelSet is an interned label map.
type labelSet struct{ m map[string]string }

// labelSets interns pods' label maps: the pods of one ReplicaSet,
// StatefulSet revision, DaemonSet or Job carry the same labels, so
// thousands of pods share one map instead of a map each. The key includes
// the namespace so that a set never spans namespaces.
var labelSets interner[labelSet]

// podLabelSet returns the shared label set of a pod in namespace ns with
// labels in. Labels that name one pod (StatefulSet pod names, indexes)
// make the set unique to the pod: such sets are copied, not interned.
func podLabelSet(ns string, in map[string]string) *labelSet {
	if len(in) == 0 {
		return nil
	}
	for _, k := range selectorguard.SinglePodLabels {
		if _, ok := in[k]; ok {
			return &labelSet{m: internLabels(in)}
		}
	}
	keys := make([]string, 0, len(in))
	n := len(ns)
	for k, v := range in {
		keys = append(keys, k)
		n += len(k) + len(v) + 2
	}
	slices.Sort(keys)
	var b strings.Builder
	b.Grow(n)
	b.WriteString(ns)
	for _, k := range keys {
		// Label keys and values cannot contain NUL.
		b.WriteByte(0)
		b.WriteString(k)
		b.WriteByte(0)
		b.WriteString(in[k])
	}
	return labelSets.get(b.String(), func() *labelSet { return &labelSet{m: internLabels(in)} })
}

// controllers interns controller references: every pod of a ReplicaSet
// points at the same one.
var controllers interner[metav1.OwnerReference]

func sharedController(ref *metav1.OwnerReference) *metav1.OwnerReference {
	if ref == nil {
		return nil
	}
	key := ref.APIVersion + "\x00" + ref.Kind + "\x00" + ref.Name + "\x00" + string(ref.UID)
	return controllers.get(key, func() *metav1.OwnerReference {
		return &metav1.OwnerReference{
			APIVersion: intern(ref.APIVersion),
			Kind:       intern(ref.Kind),
			Name:       intern(ref.Name),
			UID:        types.UID(intern(string(ref.UID))),
			Controller: ref.Controller,
		}
	})
}

// GetObjectKind implements runtime.Object: a lean Pod carries no type
// meta.
func (p *Pod) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// DeepCopyObject implements runtime.Object. The shared label set and
// controller are immutable and stay shared.
func (p *Pod) DeepCopyObject() runtime.Object {
	c := *p
	return &c
}

// GetNamespace implements metav1.Object.
func (p *Pod) GetNamespace() string { return p.Namespace }

// SetNamespace implements metav1.Object.
func (p *Pod) SetNamespace(ns string) { p.Namespace = ns }

// GetName implements metav1.Object.
func (p *Pod) GetName() string { return p.Name }

// SetName implements metav1.Object.
func (p *Pod) SetName(name string) { p.Name = name }

// GetResourceVersion implements metav1.Object.
func (p *Pod) GetResourceVersion() string { return p.ResourceVersion }

// SetResourceVersion implements metav1.Object.
func (p *Pod) SetResourceVersion(v string) { p.ResourceVersion = v }

// GetLabels implements metav1.Object. The map is shared: read only.
func (p *Pod) GetLabels() map[string]string { return p.Labels() }

// SetLabels implements metav1.Object.
func (p *Pod) SetLabels(labels map[string]string) { p.labels = podLabelSet(p.Namespace, labels) }

// GetOwnerReferences implements metav1.Object: the controller reference
// only, in a new slice.
func (p *Pod) GetOwnerReferences() []metav1.OwnerReference {
	if p.controller == nil {
		return nil
	}
	return []metav1.OwnerReference{*p.controller}
}

// SetOwnerReferences implements metav1.Object: it keeps the controller
// reference only.
func (p *Pod) SetOwnerReferences(refs []metav1.OwnerReference) {
	p.controller = nil
	for i := range refs {
		if refs[i].Controller != nil && *refs[i].Controller {
			p.controller = sharedController(&refs[i])
			return
		}
	}
}

// GetDeletionTimestamp implements metav1.Object: a terminating pod
// reports the zero time, as the pod's own timestamp is not kept.
func (p *Pod) GetDeletionTimestamp() *metav1.Time {
	if !p.Terminating {
		return nil
	}
	return &metav1.Time{}
}

// SetDeletionTimestamp implements metav1.Object.
func (p *Pod) SetDeletionTimestamp(t *metav1.Time) { p.Terminating = t != nil }

// The rest of metav1.Object: not kept.

// GetGenerateName implements metav1.Object; not kept.
func (p *Pod) GetGenerateName() string { return "" }

// SetGenerateName implements metav1.Object; not kept.
func (p *Pod) SetGenerateName(string) {}

// GetUID implements metav1.Object; not kept.
func (p *Pod) GetUID() types.UID { return "" }

// SetUID implements metav1.Object; not kept.
func (p *Pod) SetUID(types.UID) {}

// GetGeneration implements metav1.Object; not kept.
func (p *Pod) GetGeneration() int64 { return 0 }

// SetGeneration implements metav1.Object; not kept.
func (p *Pod) SetGeneration(int64) {}

// GetSelfLink implements metav1.Object; not kept.
func (p *Pod) GetSelfLink() string { return "" }

// SetSelfLink implements metav1.Object; not kept.
func (p *Pod) SetSelfLink(string) {}

// GetCreationTimestamp implements metav1.Object; not kept.
func (p *Pod) GetCreationTimestamp() metav1.Time { return metav1.Time{} }

// SetCreationTimestamp implements metav1.Object; not kept.
func (p *Pod) SetCreationTimestamp(metav1.Time) {}

// GetDeletionGracePeriodSeconds implements metav1.Object; not kept.
func (p *Pod) GetDeletionGracePeriodSeconds() *int64 { return nil }

// SetDeletionGracePeriodSeconds implements metav1.Object; not kept.
func (p *Pod) SetDeletionGracePeriodSeconds(*int64) {}

// GetAnnotations implements metav1.Object; not kept.
func (p *Pod) GetAnnotations() map[string]string { return nil }

// SetAnnotations implements metav1.Object; not kept.
func (p *Pod) SetAnnotations(map[string]string) {}

// GetFinalizers implements metav1.Object; not kept.
func (p *Pod) GetFinalizers() []string { return nil }

// SetFinalizers implements metav1.Object; not kept.
func (p *Pod) SetFinalizers([]string) {}

// GetManagedFields implements metav1.Object; not kept.
func (p *Pod) GetManagedFields() []metav1.ManagedFieldsEntry { return nil }

// SetManagedFields implements metav1.Object; not kept.
func (p *Pod) SetManagedFields([]metav1.ManagedFieldsEntry) {}
