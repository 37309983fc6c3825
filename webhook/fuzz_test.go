package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	sigsjson "sigs.k8s.io/json"

	"github.com/netguard-io/netguard/clusterview"
	"github.com/netguard-io/netguard/config"
	"github.com/netguard-io/netguard/policies/podpolicy"
)

// FuzzPodAdmission feeds arbitrary objects to the pod handler. Whatever
// comes in, it must not panic; a patch it returns must apply to the object
// and give a pod that decodes, and that pod must need no further patch
// (reinvocation is a no-op). The namespace is read from controller-runtime's
// in-memory client: this target is about decoding and patching, the real
// API server path is covered by test/integration.
func FuzzPodAdmission(f *testing.F) {
	seeds := []string{
		`{"metadata":{"name":"a"},"spec":{"containers":[{"name":"a","image":"nginx"}]}}`,
		`{"metadata":{"name":"a","annotations":{"netguard.io/ndots":"9"}},"spec":{"dnsPolicy":"None","dnsConfig":{"nameservers":["1.1.1.1"]},"containers":[{"name":"a","image":"x"}]}}`,
		`{"metadata":{"name":"a"},"spec":{"dnsConfig":{"options":[{"name":"ndots","value":"3"},{"name":"timeout"}]},"containers":[]}}`,
		`{"metadata":{"name":"a"},"spec":{"hostNetwork":true,"dnsPolicy":"ClusterFirstWithHostNet","containers":[{"name":"a","image":"openresty/openresty"}]}}`,
		`{"spec":{"initContainers":[{"name":"netguard-dns"}],"containers":null}}`,
		`{"metadata":{"annotations":{"netguard.io/status":"{\"version\":\"x\"}"}}}`,
		`{}`, `null`, `[]`, `{"spec":7}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team", Labels: map[string]string{"netguard.io/inject": "enabled"}}}
	scheme := clientgoscheme.Scheme
	reader := fake.NewClientBuilder().WithScheme(scheme).WithObjects(ns).Build()
	nsInfo := podpolicy.NamespaceInfo{Name: ns.Name, Labels: ns.Labels}
	cfg := config.Default()
	cfg.DNS.Search.ClusterDNS = "10.96.0.10"
	m := NewPodMutator(cfg, reader, clusterview.NewClusterDNS(cfg, reader), "fuzz")

	handle := func(raw []byte) admission.Response {
		return m.Handle(context.Background(), admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
			UID:       "fuzz",
			Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Operation: admissionv1.Create,
			Namespace: "team",
			Object:    runtime.RawExtension{Raw: raw},
		}})
	}

	f.Fuzz(func(t *testing.T, raw []byte) {
		resp := handle(raw)
		if len(resp.Patches) == 0 {
			return
		}
		if !resp.Allowed {
			t.Fatalf("a patch on a response that is not allowed: %+v", resp.Result)
		}
		ops, err := json.Marshal(resp.Patches)
		if err != nil {
			t.Fatal(err)
		}
		patch, err := jsonpatch.DecodePatch(ops)
		if err != nil {
			t.Fatalf("patch does not decode: %v\n%s", err, ops)
		}
		mutated, err := patch.Apply(raw)
		if err != nil {
			t.Fatalf("patch does not apply to the object: %v\nobject: %s\npatch: %s", err, raw, ops)
		}
		// Decoded case-sensitively, as the API server and the handler do.
		var pod corev1.Pod
		if err := sigsjson.UnmarshalCaseSensitivePreserveInts(mutated, &pod); err != nil {
			t.Fatalf("patched object is not a pod: %v\n%s", err, mutated)
		}
		// Oracle: the patch must produce exactly the pod the policies return.
		var orig corev1.Pod
		if err := sigsjson.UnmarshalCaseSensitivePreserveInts(raw, &orig); err != nil {
			t.Fatalf("the handler patched an object that is not a pod: %v", err)
		}
		orig.Namespace = "team"
		want := podpolicy.Mutate(&orig, podpolicy.Env{Namespace: nsInfo, ClusterDNS: cfg.DNS.Search.ClusterDNS, Version: "fuzz"}, cfg).Pod
		pod.Namespace = want.Namespace
		if !equality.Semantic.DeepEqual(&pod, want) {
			t.Fatalf("patched pod differs from the policies' pod\nobject: %s\npatch: %s", raw, ops)
		}
		again := handle(mutated)
		if len(again.Patches) > 0 {
			again2, _ := json.Marshal(again.Patches)
			t.Fatalf("second pass patched again (not idempotent):\nfirst: %s\nsecond: %s", ops, again2)
		}
	})
}

// FuzzAdmissionReview posts arbitrary bodies to the pod webhook over HTTP,
// as the API server would. Every answer must be an AdmissionReview with a
// response; nothing may panic, and a body that is not a Pod review never
// gets a patch.
func FuzzAdmissionReview(f *testing.F) {
	f.Add([]byte(review(`{"uid":"1",` + podKind + `,"operation":"CREATE","namespace":"team","object":{"metadata":{"name":"a"},"spec":{"containers":[{"name":"a","image":"nginx"}]}}}`)))
	f.Add([]byte(review(`{"uid":"1",` + podKind + `,"operation":"UPDATE","namespace":"team","object":{}}`)))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`))
	f.Add([]byte(`{`))
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team", Labels: map[string]string{"netguard.io/inject": "enabled"}}}
	scheme := clientgoscheme.Scheme
	reader := fake.NewClientBuilder().WithScheme(scheme).WithObjects(ns).Build()
	cfg := config.Default()
	handler := &webhook.Admission{Handler: NewPodMutator(cfg, reader, clusterview.NewClusterDNS(cfg, reader), "fuzz")}
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, MutatePodPath, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		var out admissionv1.AdmissionReview
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil {
			t.Fatalf("answer is not an AdmissionReview with a response (%v): %s", err, rec.Body.String())
		}
		var in admissionv1.AdmissionReview
		if len(out.Response.Patch) > 0 && (json.Unmarshal(body, &in) != nil || in.Request == nil || in.Request.Kind.Kind != "Pod") {
			t.Fatalf("patched something that is not a Pod review: %s", body)
		}
	})
}
