package clusterview_test

import (
	"cmp"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"unsafe"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/netguard-io/netguard/clusterview"
	"github.com/netguard-io/netguard/clusterview/viewtest"
	"github.com/netguard-io/netguard/policies/selectorguard"
)

// summary renders workloads as "Kind name template=REV pods=REV:N,REV:N".
func summary(ws []selectorguard.Workload) []string {
	var out []string
	for _, w := range ws {
		counts := map[string]int{}
		for _, p := range w.Pods {
			counts[p.Revision]++
		}
		var revs []string
		for r, n := range counts {
			revs = append(revs, fmt.Sprintf("%s:%d", r, n))
		}
		slices.Sort(revs)
		out = append(out, fmt.Sprintf("%s %s template=%s(%v) pods=%s", w.Kind, w.Name, w.TemplateRevision, w.TemplateLabels != nil, strings.Join(revs, ",")))
	}
	slices.Sort(out)
	return out
}

func TestClusterViewWorkloads(t *testing.T) {
	app := map[string]string{"app": "distributor"}
	ring := viewtest.With(app, "gossip_ring_member", "true")
	tests := map[string]struct {
		build     func(c *viewtest.Cluster)
		selectors []map[string]string
		want      []string
	}{
		"Deployment mid-rollout, found through its new pods": {
			build:     (*viewtest.Cluster).Incident,
			selectors: []map[string]string{ring},
			want:      []string{"Deployment distributor template=7d9f8c(true) pods=5b6c4d:124,7d9f8c:16"},
		},
		"Deployment found through its template only": {
			build: func(c *viewtest.Cluster) {
				d := c.Deployment("loki", "distributor", ring)
				c.ReplicaSet(d, 1, "5b6c4d", 140, app)
			},
			selectors: []map[string]string{ring},
			// The newest ReplicaSet's labels are not the template's: the
			// template's revision does not exist yet.
			want: []string{"Deployment distributor template=(true) pods=5b6c4d:140"},
		},
		"old and new selector together": {
			build:     (*viewtest.Cluster).Incident,
			selectors: []map[string]string{ring, app},
			want:      []string{"Deployment distributor template=7d9f8c(true) pods=5b6c4d:124,7d9f8c:16"},
		},
		"other namespaces and other apps are left out": {
			build: func(c *viewtest.Cluster) {
				c.Incident()
				d := c.Deployment("mimir", "distributor", ring)
				c.ReplicaSet(d, 1, "aaaaaa", 3, ring)
				o := c.Deployment("loki", "querier", map[string]string{"app": "querier"})
				c.ReplicaSet(o, 1, "bbbbbb", 3, map[string]string{"app": "querier"})
			},
			selectors: []map[string]string{ring},
			want:      []string{"Deployment distributor template=7d9f8c(true) pods=5b6c4d:124,7d9f8c:16"},
		},
		"StatefulSet revisions lose the name prefix": {
			build: func(c *viewtest.Cluster) {
				s := c.StatefulSet("loki", "ingester", ring, "b2")
				c.StatefulSetPod(s, 0, "a1", app)
				c.StatefulSetPod(s, 1, "a1", app)
				c.StatefulSetPod(s, 2, "b2", ring)
			},
			selectors: []map[string]string{app},
			want:      []string{"StatefulSet ingester template=b2(true) pods=a1:2,b2:1"},
		},
		"DaemonSet": {
			build: func(c *viewtest.Cluster) {
				d := c.DaemonSet("loki", "promtail", ring)
				c.Pods("loki", "promtail-x", 2, viewtest.With(app, "controller-revision-hash", "5f7b9c"), viewtest.OwnedBy("apps/v1", "DaemonSet", "promtail", d.UID))
				c.Pods("loki", "promtail-y", 1, viewtest.With(ring, "controller-revision-hash", "6a8c0d"), viewtest.OwnedBy("apps/v1", "DaemonSet", "promtail", d.UID))
			},
			selectors: []map[string]string{ring},
			want:      []string{"DaemonSet promtail template=(true) pods=5f7b9c:2,6a8c0d:1"},
		},
		"Argo Rollout through its ReplicaSets": {
			build: func(c *viewtest.Cluster) {
				c.Rollout("loki", "distributor", ring, "ccc", map[string]int{"aaa": 5, "ccc": 2}, app)
			},
			selectors: []map[string]string{app},
			want:      []string{"Rollout distributor template=ccc(true) pods=aaa:5,ccc:2"},
		},
		"Job, bare ReplicaSet and standalone pods": {
			build: func(c *viewtest.Cluster) {
				c.Job("loki", "migrate", 2, app)
				rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "loki", Name: "bare", UID: c.NextUID()}}
				c.Add(c.Stores.ReplicaSets, clusterview.TransformReplicaSet, rs)
				c.Pods("loki", "bare", 1, app, viewtest.OwnedBy("apps/v1", "ReplicaSet", "bare", rs.UID))
				c.Pods("loki", "debug", 3, app, nil)
			},
			selectors: []map[string]string{app},
			want: []string{
				"Job migrate template=(false) pods=:2",
				"Pod  template=(false) pods=:3",
				"ReplicaSet bare template=(false) pods=:1",
			},
		},
		"selector only on unindexed keys scans the namespace": {
			build:     (*viewtest.Cluster).Incident,
			selectors: []map[string]string{{"pod-template-hash": "7d9f8c"}},
			want:      []string{"Deployment distributor template=7d9f8c(true) pods=5b6c4d:124,7d9f8c:16"},
		},
		"nothing matches": {
			build:     (*viewtest.Cluster).Incident,
			selectors: []map[string]string{{"app": "typo"}},
		},
		"empty selector matches nothing": {
			build:     (*viewtest.Cluster).Incident,
			selectors: []map[string]string{{}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c := viewtest.New(t)
			tc.build(c)
			got := summary(c.View().Workloads("loki", tc.selectors...))
			if !slices.Equal(got, tc.want) {
				t.Errorf("Workloads =\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
}

func TestClusterViewPodState(t *testing.T) {
	c := viewtest.New(t)
	d := c.Deployment("loki", "distributor", map[string]string{"app": "distributor"})
	rs := c.ReplicaSet(d, 1, "5b6c4d", 1, map[string]string{"app": "distributor"})
	owners := viewtest.OwnedBy("apps/v1", "ReplicaSet", rs.Name, rs.UID)
	terminating := viewtest.FullPod("loki", "terminating", c.NextUID(), rs.Spec.Template.Labels, owners)
	terminating.DeletionTimestamp = &metav1.Time{}
	evicted := viewtest.FullPod("loki", "evicted", c.NextUID(), rs.Spec.Template.Labels, owners)
	evicted.Status.Phase = corev1.PodFailed
	c.Add(c.Stores.Pods, clusterview.TransformPod, terminating)
	c.Add(c.Stores.Pods, clusterview.TransformPod, evicted)

	ws := c.View().Workloads("loki", map[string]string{"app": "distributor"})
	if len(ws) != 1 {
		t.Fatalf("workloads = %v", summary(ws))
	}
	state := map[string]string{}
	for _, p := range ws[0].Pods {
		state[p.Name] = fmt.Sprintf("terminating=%v finished=%v live=%v", p.Terminating, p.Finished, p.Live())
	}
	want := map[string]string{
		rs.Name + "-0": "terminating=false finished=false live=true",
		"terminating":  "terminating=true finished=false live=false",
		"evicted":      "terminating=false finished=true live=false",
	}
	for name, s := range want {
		if state[name] != s {
			t.Errorf("pod %s: %s, want %s", name, state[name], s)
		}
	}
}

func TestClusterViewLookups(t *testing.T) {
	c := viewtest.New(t)
	c.Namespace("loki", map[string]string{"netguard.io/inject": "enabled"}, map[string]string{"netguard.io/service-guard": "warn", "other": "x"})
	c.Service("loki", "b", map[string]string{"app": "b"})
	c.Service("loki", "a", map[string]string{"app": "a"})
	c.Service("mimir", "c", map[string]string{"app": "c"})
	v := c.View()
	ns, ok := v.Namespace("loki")
	if !ok || ns.Labels["netguard.io/inject"] != "enabled" || ns.Annotations["netguard.io/service-guard"] != "warn" {
		t.Errorf("Namespace(loki) = %+v, %v", ns, ok)
	}
	if _, ok := ns.Annotations["other"]; ok {
		t.Error("non-netguard annotation kept on a cached Namespace")
	}
	if _, ok := v.Namespace("absent"); ok {
		t.Error("Namespace(absent) found")
	}
	var names []string
	for _, s := range v.Services("loki") {
		names = append(names, s.Name)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"a", "b"}) {
		t.Errorf("Services(loki) = %v", names)
	}
}

func TestTransformPod(t *testing.T) {
	owners := viewtest.OwnedBy("apps/v1", "ReplicaSet", "distributor-5b6c4d", "rs-uid")
	owners = append(owners, metav1.OwnerReference{APIVersion: "v1", Kind: "ConfigMap", Name: "not-a-controller"})
	in := viewtest.FullPod("loki", "distributor-5b6c4d-x", "pod-uid", map[string]string{"app": "distributor", "pod-template-hash": "5b6c4d"}, owners)
	in.DeletionTimestamp = &metav1.Time{}
	in.Status.Phase = corev1.PodPending
	out, err := clusterview.TransformPod(in)
	if err != nil {
		t.Fatal(err)
	}
	p := out.(*clusterview.Pod)
	if p.Namespace != "loki" || p.Name != "distributor-5b6c4d-x" || p.ResourceVersion != "12345" || !p.Terminating || p.Finished {
		t.Errorf("lean pod = %+v", p)
	}
	if !maps.Equal(p.Labels(), map[string]string{"app": "distributor", "pod-template-hash": "5b6c4d"}) {
		t.Errorf("labels = %v", p.Labels())
	}
	wantRef := metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "distributor-5b6c4d", UID: "rs-uid", Controller: ptr.To(true)}
	if ref := p.Controller(); ref == nil || !reflect.DeepEqual(*ref, wantRef) {
		t.Errorf("controller = %+v, want %+v", ref, wantRef)
	}
	// What the informer's key and index functions read.
	if key, err := toolscache.MetaNamespaceKeyFunc(p); err != nil || key != "loki/distributor-5b6c4d-x" {
		t.Errorf("key = %q, %v", key, err)
	}
	if uids, _ := clusterview.PodIndexers()[clusterview.IndexController](p); !slices.Equal(uids, []string{"rs-uid"}) {
		t.Errorf("controller index = %v", uids)
	}
	if refs := p.GetOwnerReferences(); len(refs) != 1 || metav1.GetControllerOfNoCopy(p).UID != "rs-uid" {
		t.Errorf("owner references = %+v", refs)
	}
	again, _ := clusterview.TransformPod(p)
	if again != any(p) {
		t.Error("clusterview.TransformPod changed a lean pod")
	}
	tomb := toolscache.DeletedFinalStateUnknown{Key: "loki/x", Obj: in}
	if got, _ := clusterview.TransformPod(tomb); got != any(tomb) {
		t.Error("a tombstone was transformed")
	}
	for phase, finished := range map[corev1.PodPhase]bool{corev1.PodRunning: false, corev1.PodPending: false, corev1.PodSucceeded: true, corev1.PodFailed: true} {
		in.Status.Phase = phase
		out, _ := clusterview.TransformPod(in)
		if out.(*clusterview.Pod).Finished != finished {
			t.Errorf("phase %s: Finished = %v", phase, !finished)
		}
	}
}

// TestTransformInterns checks that pods of one workload share one label
// map and one controller reference, with interned strings, which is most
// of the saving per pod beyond dropping the spec.
func TestTransformInterns(t *testing.T) {
	owner := func() []metav1.OwnerReference {
		return viewtest.OwnedBy(strings.Clone("apps/v1"), strings.Clone("ReplicaSet"), strings.Clone("distributor-5b6c4d"), "rs-uid")
	}
	labels := func() map[string]string {
		return map[string]string{strings.Clone("app"): strings.Clone("distributor")}
	}
	a, _ := clusterview.TransformPod(viewtest.FullPod(strings.Clone("loki"), "a", "1", labels(), owner()))
	b, _ := clusterview.TransformPod(viewtest.FullPod(strings.Clone("loki"), "b", "2", labels(), owner()))
	other, _ := clusterview.TransformPod(viewtest.FullPod(strings.Clone("tempo"), "c", "3", labels(), nil))
	pa, pb, pc := a.(*clusterview.Pod), b.(*clusterview.Pod), other.(*clusterview.Pod)
	if !pa.SharesLabels(pb) {
		t.Error("pods with equal labels do not share their label map")
	}
	if pa.SharesLabels(pc) {
		t.Error("pods of different namespaces share a label map")
	}
	if unsafe.StringData(pa.Labels()["app"]) != unsafe.StringData(pc.Labels()["app"]) {
		t.Error("label values are not shared")
	}
	if pa.Controller() != pb.Controller() {
		t.Error("pods of one ReplicaSet do not share their controller reference")
	}
	if unsafe.StringData(pa.Namespace) != unsafe.StringData(pb.Namespace) {
		t.Error("namespaces are not shared")
	}
	// A label that names one pod makes the set the pod's own.
	sts := func(name string) *clusterview.Pod {
		l := labels()
		l["statefulset.kubernetes.io/pod-name"] = name
		p, _ := clusterview.TransformPod(viewtest.FullPod("loki", name, "1", l, nil))
		return p.(*clusterview.Pod)
	}
	if s0, s1 := sts("db-0"), sts("db-1"); s0.SharesLabels(s1) || s0.Labels()["statefulset.kubernetes.io/pod-name"] != "db-0" {
		t.Errorf("StatefulSet pods' labels: %v, %v", s0.Labels(), s1.Labels())
	}
}

// TestInternerConcurrent: concurrent transforms of pods with the same
// labels get the same map, and readers see complete maps (run with -race).
func TestInternerConcurrent(t *testing.T) {
	var wg sync.WaitGroup
	got := make([]*clusterview.Pod, 64)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, _ := clusterview.TransformPod(viewtest.FullPod("race", fmt.Sprint(i), "1", map[string]string{"app": "x", "tier": "web"}, nil))
			got[i] = p.(*clusterview.Pod)
			if got[i].Labels()["tier"] != "web" {
				t.Error("incomplete label map")
			}
		}()
	}
	wg.Wait()
	for _, p := range got {
		if !p.SharesLabels(got[0]) {
			t.Fatal("concurrent transforms made two label maps for the same labels")
		}
	}
}

func TestTransformWorkloads(t *testing.T) {
	tmpl := corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "x"}, Annotations: map[string]string{"big": strings.Repeat("x", 1000)}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "img"}}},
	}
	meta := metav1.ObjectMeta{Namespace: "loki", Name: "x", UID: "u", Generation: 4, Annotations: map[string]string{"deployment.kubernetes.io/revision": "7", "kubectl.kubernetes.io/last-applied-configuration": "{}"}}
	rsOut, _ := clusterview.TransformReplicaSet(&appsv1.ReplicaSet{ObjectMeta: meta, Spec: appsv1.ReplicaSetSpec{Template: tmpl}})
	rs := rsOut.(*appsv1.ReplicaSet)
	if rs.Annotations["deployment.kubernetes.io/revision"] != "7" || len(rs.Annotations) != 1 || rs.Spec.Template.Labels["app"] != "x" || len(rs.Spec.Template.Spec.Containers) != 0 || rs.Spec.Template.Annotations != nil {
		t.Errorf("lean ReplicaSet = %+v", rs)
	}
	dOut, _ := clusterview.TransformDeployment(&appsv1.Deployment{ObjectMeta: meta, Spec: appsv1.DeploymentSpec{Template: tmpl}, Status: appsv1.DeploymentStatus{ObservedGeneration: 4, Replicas: 3}})
	d := dOut.(*appsv1.Deployment)
	if d.Generation != 4 || d.Status.ObservedGeneration != 4 || d.Annotations != nil || len(d.Spec.Template.Spec.Containers) != 0 || d.Spec.Template.Labels["app"] != "x" {
		t.Errorf("lean Deployment = %+v", d)
	}
	sOut, _ := clusterview.TransformStatefulSet(&appsv1.StatefulSet{ObjectMeta: meta, Spec: appsv1.StatefulSetSpec{Template: tmpl}, Status: appsv1.StatefulSetStatus{UpdateRevision: "x-b", CurrentRevision: "x-a"}})
	if s := sOut.(*appsv1.StatefulSet); s.Status.UpdateRevision != "x-b" || s.Status.CurrentRevision != "x-a" || len(s.Spec.Template.Spec.Containers) != 0 {
		t.Errorf("lean StatefulSet = %+v", s)
	}
	r := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
		"metadata": map[string]any{"name": "x", "namespace": "loki", "uid": "u", "annotations": map[string]any{"a": "b"}},
		"spec": map[string]any{
			"template":    map[string]any{"metadata": map[string]any{"labels": map[string]any{"app": "x"}}, "spec": map[string]any{"containers": []any{}}},
			"workloadRef": map[string]any{"kind": "Deployment", "name": "x"},
			"strategy":    map[string]any{"canary": map[string]any{}},
		},
		"status": map[string]any{"currentPodHash": "abc", "conditions": []any{}},
	}}
	rOut, _ := clusterview.TransformRollout(r)
	lean := rOut.(*unstructured.Unstructured)
	if got, _, _ := unstructured.NestedString(lean.Object, "status", "currentPodHash"); got != "abc" {
		t.Errorf("currentPodHash = %q", got)
	}
	if _, found, _ := unstructured.NestedFieldNoCopy(lean.Object, "spec", "strategy"); found {
		t.Error("spec.strategy kept")
	}
	if _, found, _ := unstructured.NestedFieldNoCopy(lean.Object, "spec", "template", "spec"); found {
		t.Error("spec.template.spec kept")
	}
	if lean.GetAnnotations() != nil || lean.GetName() != "x" || lean.GroupVersionKind() != clusterview.RolloutGVK {
		t.Errorf("lean Rollout = %v", lean.Object)
	}
	keys := slices.SortedFunc(func(yield func(string) bool) {
		for k := range lean.Object {
			if !yield(k) {
				return
			}
		}
	}, cmp.Compare[string])
	if !slices.Equal(keys, []string{"apiVersion", "kind", "metadata", "spec", "status"}) {
		t.Errorf("lean Rollout keys = %v", keys)
	}
}
