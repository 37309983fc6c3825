package audit

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/netguard-io/netguard/clusterview"
	"github.com/netguard-io/netguard/config"
	"github.com/netguard-io/netguard/policies/selectorguard"
)

// midRollout adds to stores, in namespace ns, Deployment api with 3 pods
// of revision aaa and 1 of revision bbb, whose template adds v=2.
func midRollout(t *testing.T, stores clusterview.Stores, ns string) {
	t.Helper()
	add := func(store toolscache.Indexer, transform toolscache.TransformFunc, obj any) {
		lean, err := transform(obj)
		if err != nil {
			t.Fatal(err)
		}
		if err := store.Add(lean); err != nil {
			t.Fatal(err)
		}
	}
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "api", UID: types.UID(ns + "-api")}}
	d.Spec.Template.Labels = map[string]string{"app": "api", "v": "2"}
	add(stores.Deployments, clusterview.TransformDeployment, d)
	for hash, n := range map[string]int{"aaa": 3, "bbb": 1} {
		labels := map[string]string{"app": "api", "pod-template-hash": hash}
		if hash == "bbb" {
			labels["v"] = "2"
		}
		rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: "api-" + hash, UID: types.UID(ns + "-rs-" + hash), Labels: labels,
			OwnerReferences: []metav1.OwnerReference{*controller("apps/v1", "Deployment", "api", string(d.UID))},
		}}
		rs.Spec.Template.Labels = labels
		add(stores.ReplicaSets, clusterview.TransformReplicaSet, rs)
		for i := range n {
			p := pod(fmt.Sprintf("api-%s-%d", hash, i), "registry.example/api:1", controller("apps/v1", "ReplicaSet", rs.Name, string(rs.UID)))
			p.Namespace, p.Labels = ns, labels
			add(stores.Pods, clusterview.TransformPod, p)
		}
	}
}

func TestJudgeServices(t *testing.T) {
	enabled := map[string]string{"netguard.io/inject": "enabled"}
	namespaces := []*corev1.Namespace{
		{ObjectMeta: metav1.ObjectMeta{Name: "enforced", Labels: enabled}},
		{ObjectMeta: metav1.ObjectMeta{Name: "warned", Labels: enabled, Annotations: map[string]string{selectorguard.NamespaceModeAnnotation: "warn"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "dry", Labels: enabled, Annotations: map[string]string{selectorguard.NamespaceModeAnnotation: "dry-run"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "typo", Labels: enabled, Annotations: map[string]string{selectorguard.NamespaceModeAnnotation: "strict"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "overridden", Labels: enabled}},
	}
	stores := clusterview.NewStores(false)
	s := &scanner{cfg: config.Default(), stores: stores}
	for _, ns := range namespaces {
		lean, _ := clusterview.TransformNamespace(ns)
		if err := stores.Namespaces.Add(lean); err != nil {
			t.Fatal(err)
		}
		midRollout(t, stores, ns.Name)
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "api", UID: "svc"}}
		svc.Spec.Selector = map[string]string{"app": "api", "v": "2"}
		if ns.Name == "overridden" {
			svc.Annotations = map[string]string{selectorguard.AllowSubsetAnnotation: "migration"}
		}
		for _, obj := range []*corev1.Service{svc,
			// Not judged: no selector, ExternalName.
			{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "manual"}},
			{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "external"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, Selector: svc.Spec.Selector}},
		} {
			lean, _ := clusterview.TransformService(obj)
			if err := stores.Services.Add(lean); err != nil {
				t.Fatal(err)
			}
		}
	}
	s.judgeServices()
	s.report.finish()

	type row struct {
		ns, rule string
		result   Outcome
		verdict  string
		mode     string
		extra    string
	}
	var got []row
	for _, r := range s.report.Results {
		p := r.Properties
		got = append(got, row{r.Namespace(), r.Rule, r.Result, p[PropVerdict], p[PropMode], p[PropMatched] + "/" + p[PropTotal] + " " + p[PropOverrideReason]})
		if !strings.Contains(r.Message, "1 of 4 pods of Deployment "+r.Namespace()+"/api") {
			t.Errorf("%s: message %q lacks the counts", r.Namespace(), r.Message)
		}
	}
	want := []row{
		{"dry", "revision-subset", Fail, "dry-run", "dry-run", "1/4 "},
		{"enforced", "revision-subset", Fail, "deny", "enforce", "1/4 "},
		{"overridden", "revision-subset", Skip, "overridden", "enforce", "1/4 migration"},
		{"typo", "revision-subset", Fail, "deny", "enforce", "1/4 "},
		{"warned", "revision-subset", Fail, "warn", "warn", "1/4 "},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("results:\n%+v\nwant:\n%+v", got, want)
	}
	if s.report.Scanned.ServicesJudged != 5 {
		t.Errorf("%d Services judged, want 5 (not those without a selector or of type ExternalName)", s.report.Scanned.ServicesJudged)
	}
	if len(s.report.Notes) != 1 || !strings.Contains(s.report.Notes[0], `namespace typo: namespace annotation netguard.io/service-guard="strict"`) {
		t.Errorf("notes %q, want one about namespace typo's bad mode", s.report.Notes)
	}
	if s.report.Summary != (Summary{Fail: 4, Skip: 1}) {
		t.Errorf("summary %+v", s.report.Summary)
	}
}
