package services

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/netguard-io/netguard/clusterview/viewtest"
	"github.com/netguard-io/netguard/config"
	"github.com/netguard-io/netguard/policies/selectorguard"
)

// serve sends an AdmissionReview body through controller-runtime's HTTP
// admission webhook, as the API server does, and returns the response.
func serve(t *testing.T, h admission.Handler, body []byte) *admissionv1.AdmissionResponse {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, ServicePath, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	(&webhook.Admission{Handler: h}).ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("HTTP %d: %s", rec.Code, rec.Body)
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &review); err != nil {
		t.Fatalf("decoding the AdmissionReview response: %v\n%s", err, rec.Body)
	}
	if review.Response == nil {
		t.Fatalf("no response: %s", rec.Body)
	}
	return review.Response
}

// reviewJSON is an AdmissionReview for obj (and old on UPDATE).
func reviewJSON(t *testing.T, op admissionv1.Operation, kind metav1.GroupVersionKind, namespace, name string, obj, old any) []byte {
	t.Helper()
	raw := func(o any) runtime.RawExtension {
		switch o := o.(type) {
		case nil:
			return runtime.RawExtension{}
		case []byte:
			return runtime.RawExtension{Raw: o}
		default:
			b, err := json.Marshal(o)
			if err != nil {
				t.Fatal(err)
			}
			return runtime.RawExtension{Raw: b}
		}
	}
	b, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: "review-1", Kind: kind, Operation: op, Namespace: namespace, Name: name,
			Object: raw(obj), OldObject: raw(old),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var serviceKind = metav1.GroupVersionKind{Version: "v1", Kind: "Service"}

func svc(selector map[string]string, annotations map[string]string) *corev1.Service {
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "loki", Name: "distributor", Annotations: annotations},
		Spec:       corev1.ServiceSpec{Selector: selector},
	}
}

func defaults(mutate ...func(*config.Config)) *config.Config {
	cfg := config.Default()
	for _, m := range mutate {
		m(cfg)
	}
	return cfg
}

func TestServiceHandler(t *testing.T) {
	incidentReview, err := os.ReadFile("testdata/incident-update-review.json")
	if err != nil {
		t.Fatal(err)
	}
	app := map[string]string{"app": "distributor"}
	ring := viewtest.With(app, "gossip_ring_member", "true")
	optedIn := map[string]string{"netguard.io/inject": "enabled"}
	steady := func(c *viewtest.Cluster) {
		d := c.Deployment("loki", "distributor", ring)
		c.ReplicaSet(d, 2, "7d9f8c", 140, ring)
	}
	update := func(newSvc, oldSvc any) func(t *testing.T) []byte {
		return func(t *testing.T) []byte {
			return reviewJSON(t, admissionv1.Update, serviceKind, "loki", "distributor", newSvc, oldSvc)
		}
	}
	create := func(s *corev1.Service) func(t *testing.T) []byte {
		return func(t *testing.T) []byte {
			return reviewJSON(t, admissionv1.Create, serviceKind, "loki", s.Name, s, nil)
		}
	}
	tests := map[string]struct {
		cfg          *config.Config
		nsLabels     map[string]string
		nsAnnots     map[string]string
		build        func(*viewtest.Cluster)
		body         func(t *testing.T) []byte
		wantAllowed  bool
		wantCode     int32
		wantMessage  []string
		wantWarnings []string
	}{
		"the incident's Service update is denied with the counts": {
			build:    (*viewtest.Cluster).Incident,
			nsLabels: optedIn,
			body:     func(*testing.T) []byte { return incidentReview },
			wantCode: http.StatusUnprocessableEntity,
			wantMessage: []string{
				`Service "distributor" is invalid: spec.selector: Invalid value: {"app":"distributor","gossip_ring_member":"true"}: selector matches 16 of 140 pods of Deployment loki/distributor (only revision 7d9f8c; 124 pods of revision 5b6c4d lack gossip_ring_member=true; the current selector matches 140)`,
			},
		},
		"the same update with the override annotation is admitted with a warning": {
			build:       (*viewtest.Cluster).Incident,
			nsLabels:    optedIn,
			body:        update(svc(ring, map[string]string{selectorguard.AllowSubsetAnnotation: "canary, JIRA-7"}), svc(app, nil)),
			wantAllowed: true,
			wantWarnings: []string{
				`Service loki/distributor admitted by netguard.io/allow-subset-selector (reason: "canary, JIRA-7"): selector matches 16 of 140 pods`,
			},
		},
		"steady state: every pod labelled": {
			build:       steady,
			nsLabels:    optedIn,
			body:        update(svc(ring, nil), svc(app, nil)),
			wantAllowed: true,
		},
		"selector on pod-template-hash is denied": {
			build:       steady,
			nsLabels:    optedIn,
			body:        create(svc(viewtest.With(app, "pod-template-hash", "7d9f8c"), nil)),
			wantCode:    http.StatusUnprocessableEntity,
			wantMessage: []string{`spec.selector[pod-template-hash]: Invalid value: "7d9f8c": selector key pod-template-hash names a single revision`},
		},
		"Argo Rollouts moving its Service to a new revision": {
			build:       (*viewtest.Cluster).Incident,
			nsLabels:    optedIn,
			body:        update(svc(viewtest.With(app, "rollouts-pod-template-hash", "b"), map[string]string{selectorguard.ArgoManagedAnnotation: "distributor"}), svc(viewtest.With(app, "rollouts-pod-template-hash", "a"), map[string]string{selectorguard.ArgoManagedAnnotation: "distributor"})),
			wantAllowed: true,
		},
		"namespace not opted in": {
			build:       (*viewtest.Cluster).Incident,
			body:        func(*testing.T) []byte { return incidentReview },
			wantAllowed: true,
		},
		"cluster-wide mode needs no label": {
			cfg:         defaults(func(c *config.Config) { c.Namespaces.Mode = config.NamespaceModeClusterWide }),
			build:       (*viewtest.Cluster).Incident,
			body:        func(*testing.T) []byte { return incidentReview },
			wantCode:    http.StatusUnprocessableEntity,
			wantMessage: []string{"16 of 140"},
		},
		"cluster-wide mode, namespace opted out": {
			cfg:         defaults(func(c *config.Config) { c.Namespaces.Mode = config.NamespaceModeClusterWide }),
			nsLabels:    map[string]string{"netguard.io/inject": "disabled"},
			build:       (*viewtest.Cluster).Incident,
			body:        func(*testing.T) []byte { return incidentReview },
			wantAllowed: true,
		},
		"excluded namespace": {
			cfg:         defaults(func(c *config.Config) { c.Namespaces.Exclude = []string{"loki"} }),
			nsLabels:    optedIn,
			build:       (*viewtest.Cluster).Incident,
			body:        func(*testing.T) []byte { return incidentReview },
			wantAllowed: true,
		},
		"namespace in warn mode": {
			build:        (*viewtest.Cluster).Incident,
			nsLabels:     optedIn,
			nsAnnots:     map[string]string{selectorguard.NamespaceModeAnnotation: "warn"},
			body:         func(*testing.T) []byte { return incidentReview },
			wantAllowed:  true,
			wantWarnings: []string{"Service loki/distributor would be denied (service guard in warn mode): selector matches 16 of 140 pods"},
		},
		"namespace with a bad mode keeps the configured one": {
			build:       (*viewtest.Cluster).Incident,
			nsLabels:    optedIn,
			nsAnnots:    map[string]string{selectorguard.NamespaceModeAnnotation: "off"},
			body:        func(*testing.T) []byte { return incidentReview },
			wantCode:    http.StatusUnprocessableEntity,
			wantMessage: []string{"16 of 140"},
		},
		"dry-run mode admits silently": {
			cfg:         defaults(func(c *config.Config) { c.ServiceGuard.Mode = config.GuardModeDryRun }),
			build:       (*viewtest.Cluster).Incident,
			nsLabels:    optedIn,
			body:        func(*testing.T) []byte { return incidentReview },
			wantAllowed: true,
		},
		"selector that matches nothing is admitted with a warning": {
			build:        (*viewtest.Cluster).Incident,
			nsLabels:     optedIn,
			body:         create(svc(map[string]string{"app": "typo"}, nil)),
			wantAllowed:  true,
			wantWarnings: []string{"Service loki/distributor: selector matches no pods"},
		},
		"CREATE whose object leaves the namespace to the request": {
			build:    (*viewtest.Cluster).Incident,
			nsLabels: optedIn,
			body: func(t *testing.T) []byte {
				s := svc(ring, nil)
				s.Namespace = ""
				return reviewJSON(t, admissionv1.Create, serviceKind, "loki", "distributor", s, nil)
			},
			wantCode:    http.StatusUnprocessableEntity,
			wantMessage: []string{"16 of 140 pods of Deployment loki/distributor"},
		},
		"undecodable Service": {
			nsLabels:    optedIn,
			body:        update([]byte(`{"spec":{"selector":"not a map"}}`), svc(app, nil)),
			wantCode:    http.StatusBadRequest,
			wantMessage: []string{"decoding Service"},
		},
		"UPDATE without the old object": {
			nsLabels:    optedIn,
			body:        update(svc(ring, nil), nil),
			wantCode:    http.StatusBadRequest,
			wantMessage: []string{"decoding old Service"},
		},
		"not a Service": {
			body: func(t *testing.T) []byte {
				return reviewJSON(t, admissionv1.Create, metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, "loki", "x", &corev1.Pod{}, nil)
			},
			wantAllowed: true,
		},
		"DELETE": {
			body: func(t *testing.T) []byte {
				return reviewJSON(t, admissionv1.Delete, serviceKind, "loki", "distributor", nil, svc(ring, nil))
			},
			wantAllowed: true,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c := viewtest.New(t)
			c.Namespace("loki", tc.nsLabels, tc.nsAnnots)
			if tc.build != nil {
				tc.build(c)
			}
			cfg := tc.cfg
			if cfg == nil {
				cfg = config.Default()
			}
			h := NewServiceHandler(c.View(), cfg)
			resp := serve(t, h, tc.body(t))

			if resp.Allowed != tc.wantAllowed {
				t.Errorf("Allowed = %v, want %v (result %+v)", resp.Allowed, tc.wantAllowed, resp.Result)
			}
			if !tc.wantAllowed {
				if resp.Result == nil || resp.Result.Code != tc.wantCode {
					t.Fatalf("result = %+v, want code %d", resp.Result, tc.wantCode)
				}
			}
			for _, m := range tc.wantMessage {
				if !strings.Contains(resp.Result.Message, m) {
					t.Errorf("message:\n  %s\nwant it to contain:\n  %s", resp.Result.Message, m)
				}
			}
			if len(resp.Warnings) != len(tc.wantWarnings) {
				t.Fatalf("warnings = %q, want %d", resp.Warnings, len(tc.wantWarnings))
			}
			for i, w := range tc.wantWarnings {
				if !strings.HasPrefix(resp.Warnings[i], w) {
					t.Errorf("warning %d:\n  %s\nwant prefix\n  %s", i, resp.Warnings[i], w)
				}
			}
		})
	}
}

func TestServiceHandlerDenialDetailsAndMetrics(t *testing.T) {
	c := viewtest.New(t)
	c.Namespace("loki", map[string]string{"netguard.io/inject": "enabled"}, nil)
	c.Incident()
	h := NewServiceHandler(c.View(), config.Default())
	body, err := os.ReadFile("testdata/incident-update-review.json")
	if err != nil {
		t.Fatal(err)
	}
	denied := findingsTotal.WithLabelValues(string(selectorguard.RuleDropsRevision), string(selectorguard.ActionDenied))
	reviews := reviewsTotal.WithLabelValues(resultDenied)
	beforeFindings, beforeReviews := counterValue(t, denied), counterValue(t, reviews)

	resp := serve(t, h, body)
	if resp.UID != "0f5b3c8e-6a4e-4d55-9a0c-3c1b8d2f7e11" {
		t.Errorf("response UID = %q", resp.UID)
	}
	st := resp.Result
	if st == nil || st.Reason != metav1.StatusReasonInvalid || st.Details == nil || st.Details.Kind != "Service" || st.Details.Name != "distributor" {
		t.Fatalf("result = %+v", st)
	}
	if len(st.Details.Causes) != 1 || st.Details.Causes[0].Field != "spec.selector" || st.Details.Causes[0].Type != metav1.CauseTypeFieldValueInvalid {
		t.Errorf("causes = %+v", st.Details.Causes)
	}
	if got := counterValue(t, denied) - beforeFindings; got != 1 {
		t.Errorf("findings_total{rule=drops-revision,action=denied} grew by %v, want 1", got)
	}
	if got := counterValue(t, reviews) - beforeReviews; got != 1 {
		t.Errorf("reviews_total{result=denied} grew by %v, want 1", got)
	}
}

func TestWorkloadHandler(t *testing.T) {
	app := map[string]string{"app": "distributor"}
	ring := viewtest.With(app, "gossip_ring_member", "true")
	deployKind := metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}
	deploy := func(labels map[string]string) *appsv1.Deployment {
		return &appsv1.Deployment{
			TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
			ObjectMeta: metav1.ObjectMeta{Namespace: "loki", Name: "distributor"},
			Spec:       appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}}},
		}
	}
	tests := map[string]struct {
		cfg          *config.Config
		kind         metav1.GroupVersionKind
		op           admissionv1.Operation
		obj, old     any
		wantCode     int32
		wantWarnings []string
	}{
		"template drops a label the Service selects": {
			kind: deployKind, op: admissionv1.Update, obj: deploy(app), old: deploy(ring),
			wantWarnings: []string{"the new pod template of Deployment loki/distributor drops gossip_ring_member=true, which Service ring selects"},
		},
		"template adds a label": {
			kind: deployKind, op: admissionv1.Update, obj: deploy(ring), old: deploy(app),
		},
		"labels unchanged": {
			kind: deployKind, op: admissionv1.Update, obj: deploy(ring), old: deploy(ring),
		},
		"dry-run mode": {
			cfg:  defaults(func(c *config.Config) { c.ServiceGuard.Mode = config.GuardModeDryRun }),
			kind: deployKind, op: admissionv1.Update, obj: deploy(app), old: deploy(ring),
		},
		"StatefulSet": {
			kind: metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "StatefulSet"}, op: admissionv1.Update,
			obj: &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: "loki", Name: "ingester"}}, old: &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: "loki", Name: "ingester"}, Spec: appsv1.StatefulSetSpec{Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: ring}}}},
			wantWarnings: []string{"the new pod template of StatefulSet loki/ingester drops app=distributor, gossip_ring_member=true, which Service ring selects", "the new pod template of StatefulSet loki/ingester drops app=distributor, which Service wide selects"},
		},
		"CREATE is not reviewed": {
			kind: deployKind, op: admissionv1.Create, obj: deploy(app),
		},
		"undecodable": {
			kind: deployKind, op: admissionv1.Update, obj: []byte(`{"spec":{"template":{"metadata":{"labels":["x"]}}}}`), old: deploy(ring),
			wantCode: http.StatusBadRequest,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c := viewtest.New(t)
			c.Namespace("loki", map[string]string{"netguard.io/inject": "enabled"}, nil)
			c.Service("loki", "ring", ring)
			c.Service("loki", "wide", app)
			cfg := tc.cfg
			if cfg == nil {
				cfg = config.Default()
			}
			h := NewWorkloadHandler(c.View(), cfg, func() bool { return true })
			resp := serve(t, h, reviewJSON(t, tc.op, tc.kind, "loki", "distributor", tc.obj, tc.old))
			if tc.wantCode != 0 {
				if resp.Allowed || resp.Result == nil || resp.Result.Code != tc.wantCode {
					t.Fatalf("response = %+v, want code %d", resp, tc.wantCode)
				}
				return
			}
			if !resp.Allowed {
				t.Fatalf("denied: %+v", resp.Result)
			}
			if len(resp.Warnings) != len(tc.wantWarnings) {
				t.Fatalf("warnings = %q, want %q", resp.Warnings, tc.wantWarnings)
			}
			for i, w := range tc.wantWarnings {
				if !strings.HasPrefix(resp.Warnings[i], w) {
					t.Errorf("warning %d:\n  %s\nwant prefix\n  %s", i, resp.Warnings[i], w)
				}
			}
		})
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// TestUnavailableUntilSynced: before the view has synced the Service path
// fails the call itself (HTTP 503), so that the API server applies the
// webhook's failurePolicy; an AdmissionReview answer would be a denial
// even under failurePolicy Ignore. Once synced, reviews go through.
func TestUnavailableUntilSynced(t *testing.T) {
	incidentReview, err := os.ReadFile("testdata/incident-update-review.json")
	if err != nil {
		t.Fatal(err)
	}
	c := viewtest.New(t)
	c.Namespace("loki", map[string]string{"netguard.io/inject": "enabled"}, nil)
	c.Incident()
	synced := false
	h := unavailableUntilSynced(func() bool { return synced }, &webhook.Admission{Handler: NewServiceHandler(c.View(), config.Default())})
	post := func() *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, ServicePath, bytes.NewReader(incidentReview))
		req.Header.Set("Content-Type", "application/json")
		h.ServeHTTP(rec, req)
		return rec
	}
	if rec := post(); rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "has not synced yet") {
		t.Fatalf("before sync: HTTP %d %q, want 503 saying the view has not synced", rec.Code, rec.Body)
	}
	synced = true
	rec := post()
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &review); rec.Code != http.StatusOK || err != nil || review.Response == nil || review.Response.Allowed {
		t.Fatalf("after sync: HTTP %d, response %+v (%v), want the incident denied", rec.Code, review.Response, err)
	}
}
