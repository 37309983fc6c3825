package audit

import (
	"reflect"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/netguard-io/netguard/clusterview"
	"github.com/netguard-io/netguard/config"
	"github.com/netguard-io/netguard/policies/podpolicy"
)

var team = podpolicy.NamespaceInfo{Name: "team", Labels: map[string]string{podpolicy.LabelInject: podpolicy.LabelInjectEnabled}}

func pod(name, image string, owner *metav1.OwnerReference) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: name, UID: types.UID("uid-" + name)},
		Spec: corev1.PodSpec{
			DNSPolicy:  corev1.DNSClusterFirst,
			Containers: []corev1.Container{{Name: "app", Image: image}},
		},
	}
	if owner != nil {
		p.OwnerReferences = []metav1.OwnerReference{*owner}
	}
	return p
}

func controller(apiVersion, kind, name, uid string) *metav1.OwnerReference {
	return &metav1.OwnerReference{APIVersion: apiVersion, Kind: kind, Name: name, UID: types.UID(uid), Controller: ptr.To(true)}
}

// judged runs the judge on pods and returns its results in report order.
func judged(t *testing.T, cfg *config.Config, rs []*appsv1.ReplicaSet, pods ...*corev1.Pod) []Result {
	t.Helper()
	stores := clusterview.NewStores(false)
	for _, r := range rs {
		lean, err := clusterview.TransformReplicaSet(r)
		if err != nil {
			t.Fatal(err)
		}
		if err := stores.ReplicaSets.Add(lean); err != nil {
			t.Fatal(err)
		}
	}
	j := newPodJudge(cfg, "v1.2.3", stores.ReplicaSets)
	j.env.ClusterDNS = "10.96.0.10"
	for _, p := range pods {
		j.judge(p, team)
	}
	rep := &Report{Results: j.results()}
	rep.finish()
	return rep.Results
}

type podResult struct {
	owner, rule string
	result      Outcome
	pods        int
	changes     string
	msg         string
}

func summarize(rs []Result) []podResult {
	var out []podResult
	for _, r := range rs {
		out = append(out, podResult{r.Properties[PropOwner], r.Rule, r.Result, len(r.Resources), r.Properties[PropChanges], r.Message})
	}
	return out
}

func TestPodJudge(t *testing.T) {
	web := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{
		Namespace: "team", Name: "web-5d7f", UID: "rs-uid",
		OwnerReferences: []metav1.OwnerReference{*controller("apps/v1", "Deployment", "web", "d-uid")},
	}}
	rsRef := controller("apps/v1", "ReplicaSet", "web-5d7f", "rs-uid")
	orphanRS := controller("apps/v1", "ReplicaSet", "batch-1", "other-uid")
	istio := pod("mesh", "nginx:1.27", nil)
	istio.Annotations = map[string]string{"proxy.istio.io/config": "proxyMetadata:\n  ISTIO_META_DNS_CAPTURE: \"true\"\n"}
	optedOut := pod("quiet", "nginx:1.27", nil)
	optedOut.Annotations = map[string]string{podpolicy.AnnotationDNSProxy: "false"}
	skipped := pod("skip", "nginx:1.27", nil)
	skipped.Annotations = map[string]string{podpolicy.AnnotationInject: "false"}
	admitted := podpolicy.Mutate(pod("new", "nginx:1.27", nil), podpolicy.Env{Namespace: team, ClusterDNS: "10.96.0.10"}, config.Default()).Pod
	// Admitted by an earlier netguard, which gave every pod ndots:2 as it
	// now gives glibc pods.
	lossy := pod("lossy", "python:3.12-alpine", nil)
	lossy.Annotations = map[string]string{podpolicy.AnnotationResolver: "glibc"}
	lossy = podpolicy.Mutate(lossy, podpolicy.Env{Namespace: team, ClusterDNS: "10.96.0.10", Version: "v0.3.0"}, config.Default()).Pod
	delete(lossy.Annotations, podpolicy.AnnotationResolver)

	got := summarize(judged(t, config.Default(), []*appsv1.ReplicaSet{web},
		pod("web-5d7f-a", "registry.example/web:1", rsRef),
		pod("web-5d7f-b", "registry.example/web:1", rsRef),
		pod("batch-1-a", "python:3.12", orphanRS),
		pod("gateway", "nginx:1.27", nil),
		istio, optedOut, skipped, admitted, lossy,
	))
	const dns = "dns-options,ndots,search-scrub"
	resolverHint := `container "app": nginx must resolve through the sidecar: set "resolver 127.0.0.1:8053 valid=10s ipv6=off;" in its configuration`
	want := []podResult{
		{"Deployment/web", RuleMutate, Fail, 2, "dns-options,search-scrub", "resolver unknown (image registry.example/web:1 unclassified): ndots stays 5, as under ndots:2 musl would stop resolving names such as svc.ns.svc; annotate netguard.io/resolver: glibc (or go) if the pod's programs use that resolver"},
		{"Pod/gateway", RuleMutate, Fail, 1, dns + ",dns-proxy", resolverHint},
		{"Pod/lossy", RuleNdotsLosesNames, Fail, 1, "", "netguard v0.3.0 set ndots:2, under which musl no longer resolves names with 2 or more dots such as svc.ns.svc, and this pod's resolver is musl (image python:3.12-alpine): pods created by this netguard keep ndots:5, roll the workload out again"},
		{"Pod/mesh", RuleMutate, Fail, 1, dns, "DNS sidecar netguard-dns not injected: Istio's DNS proxy already serves the pod (ISTIO_META_DNS_CAPTURE=true); netguard does not stack a second one"},
		{"Pod/mesh", RuleDNSSidecar, Warn, 1, "", string(podpolicy.SkipIstioDNSCapture)},
		{"Pod/quiet", RuleMutate, Fail, 1, dns, ""},
		{"Pod/quiet", RuleDNSSidecar, Skip, 1, "", string(podpolicy.SkipDNSProxyOptedOut)},
		// A ReplicaSet that is not in the store, or has no controller.
		{"ReplicaSet/batch-1", RuleMutate, Fail, 1, dns, ""},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("results:\n%+v\nwant:\n%+v", got, want)
	}
}

func TestPodJudgeWithSidecarDisabled(t *testing.T) {
	cfg := config.Default()
	cfg.DNSProxy.Enabled = false
	got := summarize(judged(t, cfg, nil, pod("gateway", "nginx:1.27", nil)))
	want := []podResult{
		{"Pod/gateway", RuleMutate, Fail, 1, "dns-options,ndots,search-scrub", ""},
		{"Pod/gateway", RuleDNSSidecar, Skip, 1, "", string(podpolicy.SkipDNSProxyDisabled)},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("results:\n%+v\nwant:\n%+v", got, want)
	}
}
