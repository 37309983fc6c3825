package clusterview

import (
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/netguard-io/netguard/policies/selectorguard"
)

// The transforms below run on every object before it enters the cache and
// keep only what the view reads: the cache holds every pod of the cluster,
// and a full Pod weighs several KiB (spec, status, managedFields). Pods
// become the lean *Pod, whose label maps and controller references are
// shared between the pods of one workload; strings shared by many objects
// (namespaces, label keys and values, owner names) are interned.
//
// Each transform builds a new object from the fields it keeps, leaves
// objects of other types alone (e.g. tombstones), and is idempotent.

// Annotations kept on ReplicaSets: the revision number orders them.
const (
	deploymentRevisionAnnotation = "deployment.kubernetes.io/revision"
	rolloutRevisionAnnotation    = "rollout.argoproj.io/revision"
)

// internLabels copies labels with interned keys and values; the values of
// keys that name one pod are unique and only copied.
func internLabels(in map[string]string) map[string]string {
	if in == nil {
		return nil
	}
	out := make(map[string]string, len(in))
	for k, v := range in {
		if !slices.Contains(selectorguard.SinglePodLabels, k) {
			v = intern(v)
		}
		out[intern(k)] = v
	}
	return out
}

// keepKeys copies only the given keys of a label or annotation map, interned.
func keepKeys(in map[string]string, keys ...string) map[string]string {
	var out map[string]string
	for _, k := range keys {
		if v, ok := in[k]; ok {
			if out == nil {
				out = make(map[string]string, len(keys))
			}
			out[intern(k)] = intern(v)
		}
	}
	return out
}

// keepAnnotations copies the annotations with one of the prefixes or keys.
func keepAnnotations(in map[string]string, prefixes ...string) map[string]string {
	var out map[string]string
	for k, v := range in {
		for _, p := range prefixes {
			if strings.HasPrefix(k, p) {
				if out == nil {
					out = map[string]string{}
				}
				out[k] = v
				break
			}
		}
	}
	return out
}

// controllerRef keeps only the controller owner reference.
func controllerRef(m metav1.Object) []metav1.OwnerReference {
	ref := metav1.GetControllerOfNoCopy(m)
	if ref == nil {
		return nil
	}
	return []metav1.OwnerReference{{
		APIVersion: intern(ref.APIVersion),
		Kind:       intern(ref.Kind),
		Name:       intern(ref.Name),
		UID:        types.UID(intern(string(ref.UID))),
		Controller: ref.Controller,
	}}
}

func leanMeta(m *metav1.ObjectMeta) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:              m.Name,
		Namespace:         intern(m.Namespace),
		UID:               m.UID,
		ResourceVersion:   m.ResourceVersion,
		Generation:        m.Generation,
		DeletionTimestamp: m.DeletionTimestamp,
		OwnerReferences:   controllerRef(m),
	}
}

// TransformPod turns a Pod into the lean *Pod: name, namespace,
// resourceVersion, labels, controller reference, and whether it is
// terminating or finished. Anything else (a *Pod already, a tombstone) is
// returned as it is.
func TransformPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	return newPod(p), nil
}

// TransformReplicaSet keeps a ReplicaSet's identity, controller reference,
// revision number and hash, and its pod template's labels.
func TransformReplicaSet(obj any) (any, error) {
	rs, ok := obj.(*appsv1.ReplicaSet)
	if !ok {
		return obj, nil
	}
	out := &appsv1.ReplicaSet{ObjectMeta: leanMeta(&rs.ObjectMeta)}
	out.Labels = keepKeys(rs.Labels, selectorguard.LabelPodTemplateHash, selectorguard.LabelRolloutsPodTemplateHash)
	out.Annotations = keepKeys(rs.Annotations, deploymentRevisionAnnotation, rolloutRevisionAnnotation)
	out.Spec.Replicas = rs.Spec.Replicas
	out.Spec.Template.Labels = internLabels(rs.Spec.Template.Labels)
	return out, nil
}

// TransformDeployment keeps a Deployment's identity, generations and pod
// template labels.
func TransformDeployment(obj any) (any, error) {
	d, ok := obj.(*appsv1.Deployment)
	if !ok {
		return obj, nil
	}
	out := &appsv1.Deployment{ObjectMeta: leanMeta(&d.ObjectMeta)}
	out.Spec.Template.Labels = internLabels(d.Spec.Template.Labels)
	out.Status.ObservedGeneration = d.Status.ObservedGeneration
	return out, nil
}

// TransformStatefulSet keeps a StatefulSet's identity, generations, pod
// template labels and revisions.
func TransformStatefulSet(obj any) (any, error) {
	s, ok := obj.(*appsv1.StatefulSet)
	if !ok {
		return obj, nil
	}
	out := &appsv1.StatefulSet{ObjectMeta: leanMeta(&s.ObjectMeta)}
	out.Spec.Template.Labels = internLabels(s.Spec.Template.Labels)
	out.Status.ObservedGeneration = s.Status.ObservedGeneration
	out.Status.UpdateRevision = s.Status.UpdateRevision
	out.Status.CurrentRevision = s.Status.CurrentRevision
	return out, nil
}

// TransformDaemonSet keeps a DaemonSet's identity, generations and pod
// template labels.
func TransformDaemonSet(obj any) (any, error) {
	d, ok := obj.(*appsv1.DaemonSet)
	if !ok {
		return obj, nil
	}
	out := &appsv1.DaemonSet{ObjectMeta: leanMeta(&d.ObjectMeta)}
	out.Spec.Template.Labels = internLabels(d.Spec.Template.Labels)
	out.Status.ObservedGeneration = d.Status.ObservedGeneration
	return out, nil
}

// TransformNamespace keeps a Namespace's name, labels, netguard.io/
// annotations and whether it is being deleted.
func TransformNamespace(obj any) (any, error) {
	n, ok := obj.(*corev1.Namespace)
	if !ok {
		return obj, nil
	}
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:              n.Name,
		UID:               n.UID,
		ResourceVersion:   n.ResourceVersion,
		DeletionTimestamp: n.DeletionTimestamp,
		Labels:            n.Labels,
		Annotations:       keepAnnotations(n.Annotations, "netguard.io/"),
	}}, nil
}

// TransformService keeps a Service's identity, type, selector and the
// annotations the rules read.
func TransformService(obj any) (any, error) {
	s, ok := obj.(*corev1.Service)
	if !ok {
		return obj, nil
	}
	out := &corev1.Service{ObjectMeta: leanMeta(&s.ObjectMeta)}
	out.Annotations = keepAnnotations(s.Annotations, "netguard.io/", selectorguard.ArgoManagedAnnotation)
	out.Spec.Type = s.Spec.Type
	out.Spec.Selector = s.Spec.Selector
	return out, nil
}

// TransformRollout keeps an Argo Rollout's identity, generations, pod
// template labels, workloadRef and current pod hash.
func TransformRollout(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil
	}
	out := &unstructured.Unstructured{Object: map[string]any{}}
	out.SetAPIVersion(u.GetAPIVersion())
	out.SetKind(u.GetKind())
	out.SetName(u.GetName())
	out.SetNamespace(intern(u.GetNamespace()))
	out.SetUID(u.GetUID())
	out.SetResourceVersion(u.GetResourceVersion())
	out.SetGeneration(u.GetGeneration())
	for _, path := range [][]string{
		{"spec", "template", "metadata", "labels"},
		{"spec", "workloadRef"},
		{"status", "currentPodHash"},
	} {
		if v, found, err := unstructured.NestedFieldNoCopy(u.Object, path...); err == nil && found {
			if err := unstructured.SetNestedField(out.Object, v, path...); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}
