package conflicts

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TransformService keeps what the detector reads of a Service: its
// identity (for Events), managedFields (who owns which field), type and
// loadBalancerClass (for the LoadBalancer hint).
func TransformService(obj any) (any, error) {
	s, ok := obj.(*corev1.Service)
	if !ok {
		return obj, nil
	}
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Name:            s.Name,
			Namespace:       s.Namespace,
			UID:             s.UID,
			ResourceVersion: s.ResourceVersion,
			ManagedFields:   s.ManagedFields,
		},
		Spec: corev1.ServiceSpec{Type: s.Spec.Type, LoadBalancerClass: s.Spec.LoadBalancerClass},
	}, nil
}
