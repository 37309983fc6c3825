package webhook

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

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
