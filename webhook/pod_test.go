package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/netguard-io/netguard/clusterview"
	"github.com/netguard-io/netguard/config"
)

// review wraps a raw request into an AdmissionReview body.
func review(req string) string {
	return `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":` + req + `}`
}

const podKind = `"kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"}`

// TestPodWebhookRejectsBadRequests posts raw AdmissionReviews to the
// handler as the API server would. None of them reaches the cluster, so no
// client is needed: a request that got that far would panic on the nil
// reader and fail the test.
func TestPodWebhookRejectsBadRequests(t *testing.T) {
	mutator := NewPodMutator(config.Default(), nil, nil, "test")
	handler := &webhook.Admission{Handler: mutator}
	tests := map[string]struct {
		contentType string
		body        string
		wantCode    int32  // response.result.code; 0 means allowed
		wantMsg     string // substring of the result message
	}{
		"not JSON":            {body: "{", wantCode: http.StatusBadRequest},
		"wrong content type":  {contentType: "text/plain", body: review(`{"uid":"1"}`), wantCode: http.StatusBadRequest},
		"no object":           {body: review(`{"uid":"1",` + podKind + `,"operation":"CREATE","namespace":"team"}`), wantCode: http.StatusBadRequest, wantMsg: "has no object"},
		"object is not a pod": {body: review(`{"uid":"1",` + podKind + `,"operation":"CREATE","namespace":"team","object":{"spec":5}}`), wantCode: http.StatusBadRequest, wantMsg: "decoding pod"},
		"wrong kind":          {body: review(`{"uid":"1","kind":{"group":"","version":"v1","kind":"Service"},"operation":"CREATE","namespace":"team","object":{}}`), wantCode: http.StatusBadRequest, wantMsg: "handles only v1 Pod"},
		"huge body": {
			body:     review(`{"uid":"1",` + podKind + `,"operation":"CREATE","namespace":"team","object":{"metadata":{"annotations":{"a":"` + strings.Repeat("x", 8<<20) + `"}}}}`),
			wantCode: http.StatusRequestEntityTooLarge, wantMsg: "too large",
		},
		"update is allowed untouched": {body: review(`{"uid":"1",` + podKind + `,"operation":"UPDATE","namespace":"team","object":{"metadata":{"name":"a"}}}`), wantMsg: "only at creation"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ct := tc.contentType
			if ct == "" {
				ct = "application/json"
			}
			req := httptest.NewRequest(http.MethodPost, MutatePodPath, bytes.NewBufferString(tc.body))
			req.Header.Set("Content-Type", ct)
			rec := httptest.NewRecorder()
			handler.ServeHTTP(rec, req)
			var out admissionv1.AdmissionReview
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil {
				t.Fatalf("response is not an AdmissionReview (%v): %s", err, rec.Body.String())
			}
			resp := out.Response
			if len(resp.Patch) > 0 {
				t.Errorf("got a patch for a bad request: %s", resp.Patch)
			}
			if tc.wantCode == 0 {
				if !resp.Allowed {
					t.Errorf("not allowed: %+v", resp.Result)
				}
			} else if resp.Allowed || resp.Result == nil || resp.Result.Code != tc.wantCode {
				t.Errorf("result = allowed %v %+v, want code %d", resp.Allowed, resp.Result, tc.wantCode)
			}
			msg := ""
			if resp.Result != nil {
				msg = resp.Result.Message
			}
			if !strings.Contains(msg, tc.wantMsg) {
				t.Errorf("message %q does not contain %q", msg, tc.wantMsg)
			}
		})
	}
}

// TestPodNamespaceMissingFromCache: a namespace the cache does not have yet
// (created moments ago, or while the cache catches up after losing the API
// server) is read live, so its pods are still mutated. Without a live
// reader the pod is admitted unchanged, with a warning. The readers are
// controller-runtime's in-memory client; test/integration covers the real
// cache after an API server restart.
func TestPodNamespaceMissingFromCache(t *testing.T) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team", Labels: map[string]string{"netguard.io/inject": "enabled"}}}
	emptyCache := fake.NewClientBuilder().WithScheme(clientgoscheme.Scheme).Build()
	live := fake.NewClientBuilder().WithScheme(clientgoscheme.Scheme).WithObjects(ns).Build()
	cfg := config.Default()
	cfg.DNS.Search.ClusterDNS = "10.96.0.10"
	req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID: "1", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Operation: admissionv1.Create, Namespace: "team",
		Object: runtime.RawExtension{Raw: []byte(`{"metadata":{"name":"a"},"spec":{"containers":[{"name":"a","image":"app"}]}}`)},
	}}
	for _, tc := range []struct {
		name        string
		live        client.Reader
		wantPatched bool
	}{
		{"read live", live, true},
		{"no live reader", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := NewPodMutator(cfg, emptyCache, clusterview.NewClusterDNS(cfg, emptyCache), "test")
			m.LiveReader = tc.live
			resp := m.Handle(context.Background(), req)
			if !resp.Allowed {
				t.Fatalf("pod not admitted: %+v", resp.Result)
			}
			if patched := len(resp.Patches) > 0; patched != tc.wantPatched {
				t.Fatalf("patched = %v, want %v (warnings %v)", patched, tc.wantPatched, resp.Warnings)
			}
			if !tc.wantPatched && (len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], `namespace "team"`)) {
				t.Errorf("warnings %v do not name the namespace", resp.Warnings)
			}
		})
	}
}
