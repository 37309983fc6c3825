package main

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/netguard-io/netguard/test/framework"
)

// showServiceGuard replays the outage on a small scale: a Deployment
// mid-rollout, and a Service update that selects only the new revision.
func showServiceGuard(ctx context.Context, cp *framework.ControlPlane) error {
	c := cp.Client
	step("Service guard: Deployment shop/api mid-rollout (8 pods of revision 5b6c4d, 2 of 7d9f8c with tier=gold)")
	if _, err := cp.CreateNamespace(ctx, "shop", map[string]string{"netguard.io/inject": "enabled"}); err != nil {
		return err
	}
	oldLabels := map[string]string{"app": "api"}
	newLabels := map[string]string{"app": "api", "tier": "gold"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "api"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(int32(10)),
			Selector: &metav1.LabelSelector{MatchLabels: oldLabels},
			Template: template(newLabels),
		},
	}
	if err := c.Create(ctx, d); err != nil {
		return err
	}
	// No controller manager runs here: create what the Deployment
	// controller would, ReplicaSets and pods with owner references.
	for _, rev := range []struct {
		hash   string
		labels map[string]string
		pods   int
	}{{"5b6c4d", oldLabels, 8}, {"7d9f8c", newLabels, 2}} {
		l := map[string]string{"pod-template-hash": rev.hash}
		for k, v := range rev.labels {
			l[k] = v
		}
		rs := &appsv1.ReplicaSet{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "api-" + rev.hash, Labels: l, OwnerReferences: []metav1.OwnerReference{owner(d, "Deployment")}},
			Spec:       appsv1.ReplicaSetSpec{Replicas: ptr.To(int32(rev.pods)), Selector: &metav1.LabelSelector{MatchLabels: l}, Template: template(l)},
		}
		if err := c.Create(ctx, rs); err != nil {
			return err
		}
		for i := 0; i < rev.pods; i++ {
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: fmt.Sprintf("api-%s-%d", rev.hash, i), Labels: l, OwnerReferences: []metav1.OwnerReference{owner(rs, "ReplicaSet")}},
				Spec:       template(l).Spec,
			}
			if err := c.Create(ctx, pod); err != nil {
				return err
			}
		}
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "api"},
		Spec:       corev1.ServiceSpec{Selector: oldLabels, Ports: []corev1.ServicePort{{Port: 80}}},
	}
	if err := c.Create(ctx, svc); err != nil {
		return err
	}
	step("Updating Service shop/api's selector to {app: api, tier: gold} in the same change")
	svc.Spec.Selector = newLabels
	// The guard's cache sees the pods within moments; dry runs change
	// nothing while it catches up.
	var err error
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if err = c.Update(ctx, svc.DeepCopy(), client.DryRunAll); apierrors.IsInvalid(err) {
			break
		}
	}
	if err = c.Update(ctx, svc.DeepCopy()); !apierrors.IsInvalid(err) {
		return fmt.Errorf("the Service update was not denied: %v", err)
	}
	fmt.Printf("  denied by the API server:\n%s", indent(err.Error(), "    "))
	return nil
}

func template(l map[string]string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: l, Annotations: map[string]string{"netguard.io/inject": "false"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "api", Image: "registry.example/api:1.4"}}},
	}
}

func owner(obj client.Object, kind string) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: "apps/v1", Kind: kind, Name: obj.GetName(), UID: obj.GetUID(), Controller: ptr.To(true)}
}
