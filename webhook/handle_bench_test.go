package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/netguard-io/netguard/clusterview"
	"github.com/netguard-io/netguard/config"
)

// BenchmarkHandlePod is the pod handler alone, without HTTP and TLS, on a
// typical two-container pod.
func BenchmarkHandlePod(b *testing.B) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team", Labels: map[string]string{"netguard.io/inject": "enabled"}}}
	scheme := clientgoscheme.Scheme
	reader := fake.NewClientBuilder().WithScheme(scheme).WithObjects(ns).Build()
	cfg := config.Default()
	cfg.DNS.Search.ClusterDNS = "10.96.0.10"
	m := NewPodMutator(cfg, reader, clusterview.NewClusterDNS(cfg, reader), "bench")
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: "api-", Namespace: "team", Labels: map[string]string{"app": "api"}}}
	for _, name := range []string{"api", "nginx"} {
		c := corev1.Container{Name: name, Image: "registry.example/" + name + ":1.4.2"}
		for i := 0; i < 12; i++ {
			c.Env = append(c.Env, corev1.EnvVar{Name: fmt.Sprintf("SETTING_%d", i), Value: strings.Repeat("v", 24)})
		}
		pod.Spec.Containers = append(pod.Spec.Containers, c)
	}
	raw, _ := json.Marshal(pod)
	req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID: "bench", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Operation: admissionv1.Create,
		Namespace: "team", Object: runtime.RawExtension{Raw: raw},
	}}
	for b.Loop() {
		if resp := m.Handle(context.Background(), req); len(resp.Patches) == 0 {
			b.Fatal("no patch")
		}
	}
}
