package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	admissionregv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/netguard-io/netguard/test/framework"
)

// The outage replayed: Deployment loki/distributor, 140 pods; a change adds
// gossip_ring_member=true to the pod template and to the Service selector.

func labels(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func installServiceWebhook(t *testing.T, failure admissionregv1.FailurePolicyType) {
	t.Helper()
	if err := cp.InstallServiceWebhook(context.Background(), server, failure, framework.OptIn); err != nil {
		t.Fatal(err)
	}
}

func podTemplate(l map[string]string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: l},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "grafana/loki:3.0"}}},
	}
}

func owner(obj client.Object, kind string) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: "apps/v1", Kind: kind, Name: obj.GetName(), UID: obj.GetUID(), Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}
}

func create(t *testing.T, obj client.Object) {
	t.Helper()
	if err := k8s.Create(context.Background(), obj); err != nil {
		t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
}

func newDeployment(t *testing.T, ns, name string, replicas int32, template map[string]string) *appsv1.Deployment {
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels("app", name)},
			Template: podTemplate(template),
		},
	}
	create(t, d)
	return d
}

// newRevision creates the ReplicaSet of one Deployment revision with n pods,
// as the Deployment controller would.
func newRevision(t *testing.T, d *appsv1.Deployment, hash string, n int) *appsv1.ReplicaSet {
	t.Helper()
	l := labels("pod-template-hash", hash)
	for k, v := range d.Spec.Template.Labels {
		l[k] = v
	}
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: d.Namespace, Name: d.Name + "-" + hash, Labels: l, OwnerReferences: []metav1.OwnerReference{owner(d, "Deployment")}},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: ptr.To(int32(n)),
			Selector: &metav1.LabelSelector{MatchLabels: l},
			Template: podTemplate(l),
		},
	}
	create(t, rs)
	createPods(t, rs.Namespace, rs.Name, l, owner(rs, "ReplicaSet"), 0, n)
	return rs
}

func createPods(t *testing.T, ns, prefix string, l map[string]string, ref metav1.OwnerReference, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		create(t, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("%s-%d", prefix, i), Labels: l, OwnerReferences: []metav1.OwnerReference{ref}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "grafana/loki:3.0"}}},
		})
	}
}

func deletePods(t *testing.T, ns, prefix string, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("%s-%d", prefix, i)}}
		if err := k8s.Delete(context.Background(), pod, client.GracePeriodSeconds(0)); err != nil {
			t.Fatalf("deleting pod %s: %v", pod.Name, err)
		}
	}
}

func setTemplate(t *testing.T, d *appsv1.Deployment, l map[string]string) {
	t.Helper()
	d.Spec.Template.Labels = l
	if err := k8s.Update(context.Background(), d); err != nil {
		t.Fatalf("updating Deployment %s: %v", d.Name, err)
	}
}

func service(ns, name string, selector map[string]string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{
			Selector: selector,
			Ports:    []corev1.ServicePort{{Name: "http", Port: 3100}},
		},
	}
}

// settle waits until a dry run of write gives the wanted verdict: the
// guard's cache catches up with the objects the test just wrote. Dry runs
// change nothing, so the real write that follows is judged on a synced view.
func settle(t *testing.T, wantDenied bool, write func(opts ...client.UpdateOption) error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := write(client.DryRunAll)
		if denied := apierrors.IsInvalid(err); denied == wantDenied {
			return
		} else if err != nil && !denied {
			t.Fatalf("dry run: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("dry run still gives denied=%v after 20s (err: %v)", !wantDenied, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func updater(svc *corev1.Service) func(opts ...client.UpdateOption) error {
	return func(opts ...client.UpdateOption) error {
		return k8s.Update(context.Background(), svc.DeepCopy(), opts...)
	}
}

func TestServiceGuardReplaysTheOutage(t *testing.T) {
	installServiceWebhook(t, admissionregv1.Ignore)
	ctx := context.Background()
	ns := newNamespace(t, "loki", optedIn)
	oldLabels := labels("app", "distributor")
	newLabels := labels("app", "distributor", "gossip_ring_member", "true")

	d := newDeployment(t, ns, "distributor", 140, oldLabels)
	oldRS := newRevision(t, d, "5b6c4d", 140)
	svc := service(ns, "distributor", oldLabels)
	create(t, svc)

	// The change: the template gains the label; the rollout has replaced 16
	// of the 140 pods so far.
	setTemplate(t, d, newLabels)
	newRevision(t, d, "7d9f8c", 16)
	deletePods(t, ns, oldRS.Name, 124, 140)

	svc.Spec.Selector = newLabels
	settle(t, true, updater(svc))
	err := k8s.Update(ctx, svc.DeepCopy())
	if !apierrors.IsInvalid(err) {
		t.Fatalf("the outage's Service update was not denied: %v", err)
	}
	msg := err.Error()
	t.Logf("denied: %s", msg)
	for _, want := range []string{"16 of 140 pods of Deployment " + ns + "/distributor", "7d9f8c", "5b6c4d", "gossip_ring_member=true", "spec.selector", "netguard.io/allow-subset-selector"} {
		if !strings.Contains(msg, want) {
			t.Errorf("denial lacks %q", want)
		}
	}
	stored := &corev1.Service{}
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(svc), stored); err != nil || len(stored.Spec.Selector) != 1 {
		t.Fatalf("stored Service changed after the denial: %v %v", stored.Spec.Selector, err)
	}

	// The same update with the override annotation is admitted.
	overridden := svc.DeepCopy()
	overridden.Annotations = map[string]string{"netguard.io/allow-subset-selector": "gossip migration, approved"}
	if err := k8s.Update(ctx, overridden); err != nil {
		t.Fatalf("override annotation did not admit the update: %v", err)
	}

	// Steady state: every pod carries the label; selecting on it is fine.
	deletePods(t, ns, oldRS.Name, 0, 124)
	createPods(t, ns, d.Name+"-7d9f8c", labels("app", "distributor", "gossip_ring_member", "true", "pod-template-hash", "7d9f8c"), owner(oldRS, "ReplicaSet"), 16, 140)
	steady := service(ns, "distributor-steady", newLabels)
	settle(t, false, func(opts ...client.UpdateOption) error {
		return k8s.Create(ctx, steady.DeepCopy(), client.DryRunAll)
	})
	create(t, steady)

	// A selector on the revision label is denied.
	byHash := service(ns, "distributor-pinned", labels("app", "distributor", "pod-template-hash", "7d9f8c"))
	if err := k8s.Create(ctx, byHash); !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "pod-template-hash") {
		t.Fatalf("selector on pod-template-hash not denied: %v", err)
	}
}

// TestServiceGuardDeniesSelectorChangedBeforeRollout: the Service changes
// first, before any pod of the new revision exists. It would have no
// endpoints, then send everything to the first new pod.
func TestServiceGuardDeniesSelectorChangedBeforeRollout(t *testing.T) {
	installServiceWebhook(t, admissionregv1.Ignore)
	ns := newNamespace(t, "reverse", optedIn)
	oldLabels := labels("app", "api")
	newLabels := labels("app", "api", "tier", "gold")
	d := newDeployment(t, ns, "api", 10, oldLabels)
	newRevision(t, d, "aaaa11", 10)
	svc := service(ns, "api", oldLabels)
	create(t, svc)
	setTemplate(t, d, newLabels)

	svc.Spec.Selector = newLabels
	settle(t, true, updater(svc))
	err := k8s.Update(context.Background(), svc.DeepCopy())
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "none of the 10 pods of Deployment "+ns+"/api") {
		t.Fatalf("selector ahead of the rollout not denied as expected: %v", err)
	}
	t.Logf("denied: %v", err)
}

func TestServiceGuardStatefulSet(t *testing.T) {
	installServiceWebhook(t, admissionregv1.Ignore)
	ctx := context.Background()
	ns := newNamespace(t, "sts", optedIn)
	oldLabels := labels("app", "ingester")
	newLabels := labels("app", "ingester", "zone", "a")
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ingester"},
		Spec: appsv1.StatefulSetSpec{
			Replicas: ptr.To(int32(5)),
			Selector: &metav1.LabelSelector{MatchLabels: oldLabels},
			Template: podTemplate(newLabels),
		},
	}
	create(t, sts)
	// The rolling update goes from the highest ordinal down: pod 4 is on
	// the new revision, pods 0-3 still on the old one.
	for i := 0; i < 5; i++ {
		l, rev := labels("app", "ingester"), "ingester-6c8d9f"
		if i == 4 {
			l, rev = labels("app", "ingester", "zone", "a"), "ingester-7f5b8c"
		}
		l["controller-revision-hash"] = rev
		l["statefulset.kubernetes.io/pod-name"] = fmt.Sprintf("ingester-%d", i)
		l["apps.kubernetes.io/pod-index"] = fmt.Sprint(i)
		createPods(t, ns, "ingester", l, owner(sts, "StatefulSet"), i, i+1)
	}
	svc := service(ns, "ingester", oldLabels)
	create(t, svc)
	svc.Spec.Selector = newLabels
	settle(t, true, updater(svc))
	err := k8s.Update(ctx, svc.DeepCopy())
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "1 of 5 pods of StatefulSet "+ns+"/ingester") {
		t.Fatalf("StatefulSet revision subset not denied as expected: %v", err)
	}
	t.Logf("denied: %v", err)

	// A per-replica Service selects one pod on purpose.
	perPod := service(ns, "ingester-0", labels("statefulset.kubernetes.io/pod-name", "ingester-0"))
	if err := k8s.Create(ctx, perPod); err != nil {
		t.Fatalf("per-pod Service denied: %v", err)
	}
}

// TestServiceWebhookFailurePolicy: the Service webhook's failure policy is
// a choice. With netguard down, Ignore admits Services and Fail rejects them.
func TestServiceWebhookFailurePolicy(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, "svcdown", optedIn)
	if err := server.Kill(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		installServiceWebhook(t, admissionregv1.Ignore)
		restartServer(t, "")
	})
	// The API server uses a changed policy moments after the write: wait
	// until a dry run shows it, then create for real.
	failed := func() (bool, error) {
		err := k8s.Create(ctx, service(ns, "probe", labels("app", "a")), client.DryRunAll)
		return err != nil && strings.Contains(err.Error(), framework.ServiceWebhookName), err
	}
	installServiceWebhook(t, admissionregv1.Fail)
	waitFor(t, 30*time.Second, "failurePolicy Fail in use", func() bool { ok, _ := failed(); return ok })
	err := k8s.Create(ctx, service(ns, "with-fail", labels("app", "a")))
	if err == nil || !strings.Contains(err.Error(), framework.ServiceWebhookName) {
		t.Fatalf("failurePolicy Fail with netguard down: create error = %v, want the webhook call to fail", err)
	}
	installServiceWebhook(t, admissionregv1.Ignore)
	waitFor(t, 30*time.Second, "failurePolicy Ignore in use", func() bool { _, err := failed(); return err == nil })
	if err := k8s.Create(ctx, service(ns, "with-ignore", labels("app", "a"))); err != nil {
		t.Fatalf("failurePolicy Ignore with netguard down: %v", err)
	}
}

// TestServiceGuardInEveryNamespace: with serviceGuard.namespaceMode
// cluster-wide (and the chart's Service webhook selecting every namespace)
// the guard judges Services in a namespace that did not opt in, while
// pods there are left alone; opted-out and excluded namespaces stay out.
func TestServiceGuardInEveryNamespace(t *testing.T) {
	ctx := context.Background()
	restartServer(t, writeConfig(t, "serviceGuard:\n  namespaceMode: cluster-wide\n"))
	if err := cp.InstallServiceWebhook(ctx, server, admissionregv1.Ignore, framework.ClusterWide); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		installServiceWebhook(t, admissionregv1.Ignore)
		restartServer(t, "")
	})
	plain := newNamespace(t, "svcwide", nil)
	pinned := service(plain, "pinned", labels("app", "web", "pod-template-hash", "7d9f8c"))
	// The API server uses the wider selector moments after it changed.
	waitFor(t, 30*time.Second, "the guard judging Services in a namespace that did not opt in", func() bool {
		return apierrors.IsInvalid(k8s.Create(ctx, pinned.DeepCopy(), client.DryRunAll))
	})
	err := k8s.Create(ctx, pinned.DeepCopy())
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "pod-template-hash") {
		t.Fatalf("a revision selector in a namespace that did not opt in: err = %v, want a denial", err)
	}
	assertUntouched(t, createPod(t, plainPod(plain, "app", "registry.example/app:1")))

	out := newNamespace(t, "svcout", map[string]string{"netguard.io/inject": "disabled"})
	if err := k8s.Create(ctx, service(out, "pinned", labels("app", "web", "pod-template-hash", "7d9f8c"))); err != nil {
		t.Fatalf("a namespace that opted out is checked: %v", err)
	}
}
