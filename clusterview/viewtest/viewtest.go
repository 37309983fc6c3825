package viewtest

import (
	"fmt"
	"maps"
	"strconv"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/netguard-io/netguard/clusterview"
)

// Cluster builds real API objects, passes them through the production
// transforms and adds them to stores built like the informers'
// (clusterview.NewStores, with Rollouts).
type Cluster struct {
	t      testing.TB
	Stores clusterview.Stores
	uid    int
}

// New returns an empty cluster.
func New(t testing.TB) *Cluster {
	return &Cluster{t: t, Stores: clusterview.NewStores(true)}
}

// NextUID returns a UID no object of the cluster has yet.
func (c *Cluster) NextUID() types.UID {
	c.uid++
	return types.UID(fmt.Sprintf("00000000-0000-0000-0000-%012d", c.uid))
}

// Add passes obj through transform and adds the result to store.
func (c *Cluster) Add(store toolscache.Indexer, transform toolscache.TransformFunc, obj any) {
	c.t.Helper()
	lean, err := transform(obj)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := store.Add(lean); err != nil {
		c.t.Fatal(err)
	}
}

// View reads the cluster.
func (c *Cluster) View() *clusterview.View { return clusterview.NewView(c.Stores) }

// Namespace adds a Namespace.
func (c *Cluster) Namespace(name string, labels, annotations map[string]string) {
	c.Add(c.Stores.Namespaces, clusterview.TransformNamespace, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, UID: c.NextUID(), Labels: labels, Annotations: annotations}})
}

// Service adds a Service with selector.
func (c *Cluster) Service(ns, name string, selector map[string]string) {
	c.Add(c.Stores.Services, clusterview.TransformService, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: c.NextUID()},
		Spec:       corev1.ServiceSpec{Selector: selector},
	})
}

// OwnedBy is a controller reference to the named owner.
func OwnedBy(apiVersion, kind, name string, uid types.UID) []metav1.OwnerReference {
	return []metav1.OwnerReference{{APIVersion: apiVersion, Kind: kind, Name: name, UID: uid, Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}
}

// Deployment adds a Deployment whose pod template has templateLabels.
func (c *Cluster) Deployment(ns, name string, templateLabels map[string]string) *appsv1.Deployment {
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: c.NextUID(), Generation: 2},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: templateLabels}},
		},
		Status: appsv1.DeploymentStatus{ObservedGeneration: 2},
	}
	c.Add(c.Stores.Deployments, clusterview.TransformDeployment, d)
	return d
}

// ReplicaSet adds revision number rev of Deployment d, with hash, and n
// pods labelled podLabels plus the hash.
func (c *Cluster) ReplicaSet(d *appsv1.Deployment, rev int, hash string, n int, podLabels map[string]string) *appsv1.ReplicaSet {
	labels := With(podLabels, "pod-template-hash", hash)
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: d.Namespace, Name: d.Name + "-" + hash, UID: c.NextUID(),
			Labels:          labels,
			Annotations:     map[string]string{"deployment.kubernetes.io/revision": strconv.Itoa(rev)},
			OwnerReferences: OwnedBy("apps/v1", "Deployment", d.Name, d.UID),
		},
		Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To(int32(n)), Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}}},
	}
	c.Add(c.Stores.ReplicaSets, clusterview.TransformReplicaSet, rs)
	c.Pods(d.Namespace, rs.Name, n, labels, OwnedBy("apps/v1", "ReplicaSet", rs.Name, rs.UID))
	return rs
}

// Pods adds n running pods named prefix-i.
func (c *Cluster) Pods(ns, prefix string, n int, labels map[string]string, owners []metav1.OwnerReference) {
	for i := range n {
		c.Add(c.Stores.Pods, clusterview.TransformPod, FullPod(ns, fmt.Sprintf("%s-%d", prefix, i), c.NextUID(), labels, owners))
	}
}

// StatefulSet adds a StatefulSet rolling out updateRevision.
func (c *Cluster) StatefulSet(ns, name string, templateLabels map[string]string, updateRevision string) *appsv1.StatefulSet {
	s := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: c.NextUID(), Generation: 3},
		Spec:       appsv1.StatefulSetSpec{Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: templateLabels}}},
		Status:     appsv1.StatefulSetStatus{ObservedGeneration: 3, UpdateRevision: name + "-" + updateRevision, CurrentRevision: name + "-old"},
	}
	c.Add(c.Stores.StatefulSets, clusterview.TransformStatefulSet, s)
	return s
}

// StatefulSetPod adds pod ordinal of s, of revision.
func (c *Cluster) StatefulSetPod(s *appsv1.StatefulSet, ordinal int, revision string, labels map[string]string) {
	l := With(labels, "controller-revision-hash", s.Name+"-"+revision, "statefulset.kubernetes.io/pod-name", fmt.Sprintf("%s-%d", s.Name, ordinal))
	c.Add(c.Stores.Pods, clusterview.TransformPod, FullPod(s.Namespace, fmt.Sprintf("%s-%d", s.Name, ordinal), c.NextUID(), l, OwnedBy("apps/v1", "StatefulSet", s.Name, s.UID)))
}

// DaemonSet adds a DaemonSet.
func (c *Cluster) DaemonSet(ns, name string, templateLabels map[string]string) *appsv1.DaemonSet {
	d := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: c.NextUID()},
		Spec:       appsv1.DaemonSetSpec{Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: templateLabels}}},
	}
	c.Add(c.Stores.DaemonSets, clusterview.TransformDaemonSet, d)
	return d
}

// Job adds the n pods of a Job (the Job itself is not cached).
func (c *Cluster) Job(ns, name string, n int, labels map[string]string) *batchv1.Job {
	j := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: c.NextUID()}}
	c.Pods(ns, name, n, With(labels, "batch.kubernetes.io/controller-uid", string(j.UID), "job-name", name), OwnedBy("batch/v1", "Job", name, j.UID))
	return j
}

// Rollout adds an Argo Rollout with its ReplicaSets, one per hash, n pods
// each.
func (c *Cluster) Rollout(ns, name string, templateLabels map[string]string, currentHash string, revs map[string]int, podLabels map[string]string) *unstructured.Unstructured {
	r := &unstructured.Unstructured{}
	r.SetGroupVersionKind(clusterview.RolloutGVK)
	r.SetNamespace(ns)
	r.SetName(name)
	r.SetUID(c.NextUID())
	labels := map[string]any{}
	for k, v := range templateLabels {
		labels[k] = v
	}
	_ = unstructured.SetNestedField(r.Object, labels, "spec", "template", "metadata", "labels")
	_ = unstructured.SetNestedField(r.Object, int64(3), "spec", "replicas")
	_ = unstructured.SetNestedField(r.Object, currentHash, "status", "currentPodHash")
	c.Add(c.Stores.Rollouts, clusterview.TransformRollout, r)
	i := 0
	for hash, n := range revs {
		i++
		l := With(podLabels, "rollouts-pod-template-hash", hash)
		rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: name + "-" + hash, UID: c.NextUID(), Labels: l,
			Annotations:     map[string]string{"rollout.argoproj.io/revision": strconv.Itoa(i)},
			OwnerReferences: OwnedBy("argoproj.io/v1alpha1", "Rollout", name, r.GetUID()),
		}}
		c.Add(c.Stores.ReplicaSets, clusterview.TransformReplicaSet, rs)
		c.Pods(ns, rs.Name, n, l, OwnedBy("apps/v1", "ReplicaSet", rs.Name, rs.UID))
	}
	return r
}

// FullPod is a pod as the API server returns it, with the spec, status and
// managedFields a real pod carries.
func FullPod(ns, name string, uid types.UID, labels map[string]string, owners []metav1.OwnerReference) *corev1.Pod {
	now := metav1.Now()
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: name, UID: uid, ResourceVersion: "12345",
			Labels:            maps.Clone(labels),
			Annotations:       map[string]string{"kubectl.kubernetes.io/restartedAt": "2025-01-01T00:00:00Z"},
			OwnerReferences:   owners,
			CreationTimestamp: now,
			ManagedFields:     []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1", FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:metadata":{"f:labels":{}}}`)}}},
		},
		Spec: corev1.PodSpec{
			NodeName:   "node-1",
			Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1.0", Env: []corev1.EnvVar{{Name: "A", Value: "b"}}}},
		},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1", Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
	}
}

// With is a copy of base with the key-value pairs kv added.
func With(base map[string]string, kv ...string) map[string]string {
	m := maps.Clone(base)
	if m == nil {
		m = map[string]string{}
	}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// Incident builds the outage in namespace loki: Deployment distributor
// rolling out revision 7d9f8c (16 pods, with gossip_ring_member=true) over
// revision 5b6c4d (124 pods).
func (c *Cluster) Incident() {
	app := map[string]string{"app": "distributor"}
	d := c.Deployment("loki", "distributor", With(app, "gossip_ring_member", "true"))
	c.ReplicaSet(d, 1, "5b6c4d", 124, app)
	c.ReplicaSet(d, 2, "7d9f8c", 16, With(app, "gossip_ring_member", "true"))
}
