package serviceguard

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
)

// cluster builds real API objects, passes them through the production
// transforms and adds them to stores built like the informers' (NewStores).
type cluster struct {
	t      testing.TB
	stores Stores
	uid    int
}

func newCluster(t testing.TB) *cluster {
	return &cluster{t: t, stores: NewStores(true)}
}

func (c *cluster) nextUID() types.UID {
	c.uid++
	return types.UID(fmt.Sprintf("00000000-0000-0000-0000-%012d", c.uid))
}

func (c *cluster) add(store toolscache.Indexer, transform toolscache.TransformFunc, obj any) {
	c.t.Helper()
	lean, err := transform(obj)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := store.Add(lean); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cluster) view() *ClusterView { return NewClusterView(c.stores) }

func (c *cluster) namespace(name string, labels, annotations map[string]string) {
	c.add(c.stores.Namespaces, TransformNamespace, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, UID: c.nextUID(), Labels: labels, Annotations: annotations}})
}

func (c *cluster) service(ns, name string, selector map[string]string) {
	c.add(c.stores.Services, TransformService, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: c.nextUID()},
		Spec:       corev1.ServiceSpec{Selector: selector},
	})
}

func ownedBy(apiVersion, kind, name string, uid types.UID) []metav1.OwnerReference {
	return []metav1.OwnerReference{{APIVersion: apiVersion, Kind: kind, Name: name, UID: uid, Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}
}

// deployment adds a Deployment whose pod template has templateLabels.
func (c *cluster) deployment(ns, name string, templateLabels map[string]string) *appsv1.Deployment {
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: c.nextUID(), Generation: 2},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: templateLabels}},
		},
		Status: appsv1.DeploymentStatus{ObservedGeneration: 2},
	}
	c.add(c.stores.Deployments, TransformDeployment, d)
	return d
}

// replicaSet adds revision number rev of Deployment d, with hash, and n
// pods labelled podLabels plus the hash.
func (c *cluster) replicaSet(d *appsv1.Deployment, rev int, hash string, n int, podLabels map[string]string) *appsv1.ReplicaSet {
	labels := with(podLabels, "pod-template-hash", hash)
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: d.Namespace, Name: d.Name + "-" + hash, UID: c.nextUID(),
			Labels:          labels,
			Annotations:     map[string]string{"deployment.kubernetes.io/revision": strconv.Itoa(rev)},
			OwnerReferences: ownedBy("apps/v1", "Deployment", d.Name, d.UID),
		},
		Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To(int32(n)), Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}}},
	}
	c.add(c.stores.ReplicaSets, TransformReplicaSet, rs)
	c.pods(d.Namespace, rs.Name, n, labels, ownedBy("apps/v1", "ReplicaSet", rs.Name, rs.UID))
	return rs
}

// pods adds n running pods named prefix-i.
func (c *cluster) pods(ns, prefix string, n int, labels map[string]string, owners []metav1.OwnerReference) {
	for i := range n {
		c.add(c.stores.Pods, TransformPod, fullPod(ns, fmt.Sprintf("%s-%d", prefix, i), c.nextUID(), labels, owners))
	}
}

func (c *cluster) statefulSet(ns, name string, templateLabels map[string]string, updateRevision string) *appsv1.StatefulSet {
	s := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: c.nextUID(), Generation: 3},
		Spec:       appsv1.StatefulSetSpec{Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: templateLabels}}},
		Status:     appsv1.StatefulSetStatus{ObservedGeneration: 3, UpdateRevision: name + "-" + updateRevision, CurrentRevision: name + "-old"},
	}
	c.add(c.stores.StatefulSets, TransformStatefulSet, s)
	return s
}

func (c *cluster) statefulSetPod(s *appsv1.StatefulSet, ordinal int, revision string, labels map[string]string) {
	l := with(labels, "controller-revision-hash", s.Name+"-"+revision, "statefulset.kubernetes.io/pod-name", fmt.Sprintf("%s-%d", s.Name, ordinal))
	c.add(c.stores.Pods, TransformPod, fullPod(s.Namespace, fmt.Sprintf("%s-%d", s.Name, ordinal), c.nextUID(), l, ownedBy("apps/v1", "StatefulSet", s.Name, s.UID)))
}

func (c *cluster) daemonSet(ns, name string, templateLabels map[string]string) *appsv1.DaemonSet {
	d := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: c.nextUID()},
		Spec:       appsv1.DaemonSetSpec{Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: templateLabels}}},
	}
	c.add(c.stores.DaemonSets, TransformDaemonSet, d)
	return d
}

func (c *cluster) job(ns, name string, n int, labels map[string]string) *batchv1.Job {
	j := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: c.nextUID()}}
	c.pods(ns, name, n, with(labels, "batch.kubernetes.io/controller-uid", string(j.UID), "job-name", name), ownedBy("batch/v1", "Job", name, j.UID))
	return j
}

// rollout adds an Argo Rollout with its ReplicaSets, one per hash, n pods
// each.
func (c *cluster) rollout(ns, name string, templateLabels map[string]string, currentHash string, revs map[string]int, podLabels map[string]string) *unstructured.Unstructured {
	r := &unstructured.Unstructured{}
	r.SetGroupVersionKind(RolloutGVK)
	r.SetNamespace(ns)
	r.SetName(name)
	r.SetUID(c.nextUID())
	labels := map[string]any{}
	for k, v := range templateLabels {
		labels[k] = v
	}
	_ = unstructured.SetNestedField(r.Object, labels, "spec", "template", "metadata", "labels")
	_ = unstructured.SetNestedField(r.Object, int64(3), "spec", "replicas")
	_ = unstructured.SetNestedField(r.Object, currentHash, "status", "currentPodHash")
	c.add(c.stores.Rollouts, TransformRollout, r)
	i := 0
	for hash, n := range revs {
		i++
		l := with(podLabels, "rollouts-pod-template-hash", hash)
		rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: name + "-" + hash, UID: c.nextUID(), Labels: l,
			Annotations:     map[string]string{"rollout.argoproj.io/revision": strconv.Itoa(i)},
			OwnerReferences: ownedBy("argoproj.io/v1alpha1", "Rollout", name, r.GetUID()),
		}}
		c.add(c.stores.ReplicaSets, TransformReplicaSet, rs)
		c.pods(ns, rs.Name, n, l, ownedBy("apps/v1", "ReplicaSet", rs.Name, rs.UID))
	}
	return r
}

// fullPod is a pod as the API server returns it, with the spec, status and
// managedFields a real pod carries.
func fullPod(ns, name string, uid types.UID, labels map[string]string, owners []metav1.OwnerReference) *corev1.Pod {
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

func with(base map[string]string, kv ...string) map[string]string {
	m := maps.Clone(base)
	if m == nil {
		m = map[string]string{}
	}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// incident builds the outage in namespace loki: Deployment distributor
// rolling out revision 7d9f8c (16 pods, with gossip_ring_member=true) over
// revision 5b6c4d (124 pods).
func (c *cluster) incident() {
	app := map[string]string{"app": "distributor"}
	d := c.deployment("loki", "distributor", with(app, "gossip_ring_member", "true"))
	c.replicaSet(d, 1, "5b6c4d", 124, app)
	c.replicaSet(d, 2, "7d9f8c", 16, with(app, "gossip_ring_member", "true"))
}
