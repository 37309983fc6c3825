package conflictstest

import (
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	clocktesting "k8s.io/utils/clock/testing"
)

// T0 is when the replayed writes start.
var T0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const (
	specFields       = `{"f:spec":{"f:ports":{".":{},"k:{\"port\":80,\"protocol\":\"TCP\"}":{".":{},"f:port":{}}},"f:type":{}}}`
	annotationFields = `{"f:metadata":{"f:annotations":{".":{},"f:example.com/owner":{}}}}`
	statusFields     = `{"f:status":{"f:loadBalancer":{"f:ingress":{}}}}`
)

func entry(manager, subresource string, sec int, fields string) metav1.ManagedFieldsEntry {
	return metav1.ManagedFieldsEntry{
		Manager: manager, Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1",
		Time:       &metav1.Time{Time: T0.Add(time.Duration(sec) * time.Second)},
		FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(fields)}, Subresource: subresource,
	}
}

// Version is Service ns/name at resourceVersion rv, after write rv by
// annotationOwner and statusOwner ("" for none).
func Version(ns, name string, rv int, annotationOwner, statusOwner string) *corev1.Service {
	managed := []metav1.ManagedFieldsEntry{entry("kubectl", "", 0, specFields)}
	if annotationOwner != "" {
		managed = append(managed, entry(annotationOwner, "", rv, annotationFields))
	}
	if statusOwner != "" {
		managed = append(managed, entry(statusOwner, "status", rv, statusFields))
	}
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + ns + "-" + name), ResourceVersion: strconv.Itoa(rv), ManagedFields: managed},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer},
	}
}

// Fight replays writes alternating between lb-a and lb-b on Service
// ns/name through h, as the informer would call it, each taking the
// annotation and the status, one per second of clk; it returns the last
// version.
func Fight(h toolscache.ResourceEventHandler, clk *clocktesting.FakeClock, ns, name string, from, writes int) *corev1.Service {
	prev := Version(ns, name, from, "lb-a", "lb-a")
	for i := 1; i <= writes; i++ {
		owner := "lb-b"
		if i%2 == 0 {
			owner = "lb-a"
		}
		clk.Step(time.Second)
		cur := Version(ns, name, from+i, owner, owner)
		h.OnUpdate(prev, cur)
		prev = cur
	}
	return prev
}
