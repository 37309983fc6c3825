package serve

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	admissionregv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/netguard-io/netguard/clusterview"
	"github.com/netguard-io/netguard/clusterview/viewtest"
	"github.com/netguard-io/netguard/config"
	"github.com/netguard-io/netguard/serving"
	"github.com/netguard-io/netguard/test/ports"
	"github.com/netguard-io/netguard/webhook/services"
)

// warnings collects the admission warnings the API server relays.
type warnings struct {
	mu   sync.Mutex
	seen []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seen = append(w.seen, text)
}

func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.seen
	w.seen = nil
	return out
}

// TestServiceGuardAgainstAPIServer runs the Service guard's cache, coverage
// check and handlers (setupServiceGuard) behind a real kube-apiserver: the
// informers fill the lean stores, the API server calls the handlers, and
// it relays their denials and warnings.
func TestServiceGuardAgainstAPIServer(t *testing.T) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Skip("KUBEBUILDER_ASSETS is not set (see hack/envtest-assets.sh)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// The webhook server's socket is open before the API server is told
	// its port.
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close()
	env := &envtest.Environment{
		CRDs: []*apiextensionsv1.CustomResourceDefinition{rolloutCRD()},
		WebhookInstallOptions: envtest.WebhookInstallOptions{
			LocalServingHost:   "127.0.0.1",
			LocalServingPort:   listener.Addr().(*net.TCPAddr).Port,
			ValidatingWebhooks: []*admissionregv1.ValidatingWebhookConfiguration{webhookConfiguration()},
		},
	}
	restCfg, releasePorts, err := ports.StartEnvtest(env)
	if err != nil {
		t.Fatalf("starting the control plane: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop(); releasePorts() })

	mgr, err := manager.New(restCfg, manager.Options{
		Scheme:                 clientgoscheme.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		WebhookServer:          serving.NewWebhookServer(listener, env.WebhookInstallOptions.LocalServingCertDir),
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte("namespaces: {mode: cluster-wide}"))
	if err != nil {
		t.Fatal(err)
	}
	g, err := setupServiceGuard(mgr, cfg)
	if err != nil {
		t.Fatalf("setupServiceGuard: %v", err)
	}
	if !g.WatchesRollouts() {
		t.Error("not watching Rollouts although their CRD is installed")
	}
	if g.Ready(nil) == nil {
		t.Error("ready before the cache started")
	}
	mgrCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mgrCtx) }()
	t.Cleanup(func() { stop(); <-done })
	if !g.WaitForSync(ctx) {
		t.Fatal("cache did not sync")
	}
	if err := g.Ready(nil); err != nil {
		t.Errorf("not ready after sync: %v", err)
	}
	for mgr.GetWebhookServer().StartedChecker()(nil) != nil {
		time.Sleep(50 * time.Millisecond)
	}

	seen := &warnings{}
	userCfg := rest.CopyConfig(restCfg)
	userCfg.WarningHandler = seen
	c, err := client.New(userCfg, client.Options{Scheme: clientgoscheme.Scheme})
	if err != nil {
		t.Fatal(err)
	}

	// A Deployment rolling out revision bbbbbb (4 pods, with the new label)
	// over revision aaaaaa (12 pods), created as the controller would.
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	app := map[string]string{"app": "distributor"}
	ring := viewtest.With(app, "gossip_ring_member", "true")
	must(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "loki"}}))
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "loki", Name: "distributor"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: app},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: ring},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "distributor", Image: "grafana/loki:3.2.1"}}},
			},
		},
	}
	must(c.Create(ctx, d))
	// revision creates, in ns, one ReplicaSet of owner's and its n pods, as
	// the owner's controller would.
	revision := func(ns string, owner *metav1.OwnerReference, name string, labels map[string]string, revisionKey string, number, n int) {
		t.Helper()
		rs := &appsv1.ReplicaSet{
			ObjectMeta: metav1.ObjectMeta{
				Namespace: ns, Name: name, Labels: labels,
				Annotations:     map[string]string{revisionKey: fmt.Sprint(number)},
				OwnerReferences: []metav1.OwnerReference{*owner},
			},
			Spec: appsv1.ReplicaSetSpec{
				Replicas: ptr.To(int32(n)),
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: d.Spec.Template.Spec},
			},
		}
		must(c.Create(ctx, rs))
		for p := range n {
			must(c.Create(ctx, &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{
					Namespace: ns, Name: fmt.Sprintf("%s-%d", rs.Name, p), Labels: labels,
					OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(rs, appsv1.SchemeGroupVersion.WithKind("ReplicaSet"))},
				},
				Spec: d.Spec.Template.Spec,
			}))
		}
	}
	for i, rev := range []struct {
		hash   string
		n      int
		labels map[string]string
	}{{"aaaaaa", 12, app}, {"bbbbbb", 4, ring}} {
		revision("loki", metav1.NewControllerRef(d, appsv1.SchemeGroupVersion.WithKind("Deployment")), "distributor-"+rev.hash,
			viewtest.With(rev.labels, "pod-template-hash", rev.hash), "deployment.kubernetes.io/revision", i+1, rev.n)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "loki", Name: "distributor"},
		Spec:       corev1.ServiceSpec{Selector: app, Ports: []corev1.ServicePort{{Port: 3100}}},
	}
	must(c.Create(ctx, svc))
	if w := seen.take(); len(w) != 0 {
		t.Errorf("warnings on a Service that selects the whole Deployment: %q", w)
	}

	// An Argo Rollout rolling out revision bbb (2 pods, tier=v2) over aaa
	// (6 pods).
	must(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}))
	web := &unstructured.Unstructured{Object: map[string]any{
		"spec": map[string]any{
			"replicas": int64(8),
			"selector": map[string]any{"matchLabels": map[string]any{"app": "web"}},
			"template": map[string]any{"metadata": map[string]any{"labels": map[string]any{"app": "web", "tier": "v2"}}},
		},
		"status": map[string]any{"currentPodHash": "bbb"},
	}}
	web.SetGroupVersionKind(clusterview.RolloutGVK)
	web.SetNamespace("shop")
	web.SetName("web")
	must(c.Create(ctx, web))
	for i, rev := range []struct {
		hash   string
		n      int
		labels map[string]string
	}{{"aaa", 6, map[string]string{"app": "web"}}, {"bbb", 2, map[string]string{"app": "web", "tier": "v2"}}} {
		revision("shop", metav1.NewControllerRef(web, clusterview.RolloutGVK), "web-"+rev.hash,
			viewtest.With(rev.labels, "rollouts-pod-template-hash", rev.hash), "rollout.argoproj.io/revision", i+1, rev.n)
	}

	// The informers see every pod, lean.
	deadline := time.Now().Add(30 * time.Second)
	for len(g.Stores().Pods.List()) < 24 || len(g.Stores().Rollouts.List()) < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the cache holds %d of 24 pods and %d of 1 Rollout", len(g.Stores().Pods.List()), len(g.Stores().Rollouts.List()))
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, obj := range g.Stores().Pods.List() {
		if _, ok := obj.(*clusterview.Pod); !ok {
			t.Fatalf("cached pod is not lean: %T", obj)
		}
	}

	// The incident's update is denied, with the counts.
	svc.Spec.Selector = ring
	err = c.Update(ctx, svc)
	if !apierrors.IsInvalid(err) {
		t.Fatalf("update adding the label to the selector: got %v, want Invalid", err)
	}
	want := "selector matches 4 of 16 pods of Deployment loki/distributor (only revision bbbbbb; 12 pods of revision aaaaaa lack gossip_ring_member=true; the current selector matches 16)"
	if !strings.Contains(err.Error(), want) {
		t.Errorf("denial:\n  %v\nwant it to contain:\n  %s", err, want)
	}

	// Annotated, it is admitted with a warning.
	must(c.Get(ctx, client.ObjectKeyFromObject(svc), svc))
	svc.Spec.Selector = ring
	svc.Annotations = map[string]string{"netguard.io/allow-subset-selector": "testing the override"}
	must(c.Update(ctx, svc))
	if w := seen.take(); len(w) != 1 || !strings.Contains(w[0], `admitted by netguard.io/allow-subset-selector (reason: "testing the override")`) {
		t.Errorf("warnings = %q", w)
	}

	// A Service that selects the Rollout's new revision only is denied.
	webSvc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "web", "tier": "v2"}, Ports: []corev1.ServicePort{{Port: 80}}},
	}
	err = c.Create(ctx, webSvc)
	want = "selector matches 2 of 8 pods of Rollout shop/web (only revision bbb; 6 pods of revision aaa lack tier=v2)"
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), want) {
		t.Errorf("Service on the Rollout's new revision: got %v, want a denial containing %q", err, want)
	}
	// Argo's own active Service, pinned to a revision, and Argo moving it.
	active := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-active", Annotations: map[string]string{"argo-rollouts.argoproj.io/managed-by-rollouts": "web"}},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "web", "rollouts-pod-template-hash": "aaa"}, Ports: []corev1.ServicePort{{Port: 80}}},
	}
	must(c.Create(ctx, active))
	active.Spec.Selector["rollouts-pod-template-hash"] = "bbb"
	must(c.Update(ctx, active))
	if w := seen.take(); len(w) != 0 {
		t.Errorf("warnings on Argo's Service: %q", w)
	}

	// A Deployment update that drops the selected label warns: the check
	// reads the Services from the cache, once it has the annotated update.
	deadline = time.Now().Add(30 * time.Second)
	for {
		obj, ok, _ := g.Stores().Services.GetByKey("loki/distributor")
		if cached, _ := obj.(*corev1.Service); ok && cached != nil && cached.Spec.Selector["gossip_ring_member"] == "true" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the cache does not have Service loki/distributor's selector with gossip_ring_member=true")
		}
		time.Sleep(50 * time.Millisecond)
	}
	must(c.Get(ctx, client.ObjectKeyFromObject(d), d))
	d.Spec.Template.Labels = app
	must(c.Update(ctx, d))
	if w := seen.take(); len(w) != 1 || !strings.Contains(w[0], "drops gossip_ring_member=true, which Service distributor selects") {
		t.Errorf("warnings on the Deployment update = %q", w)
	}
}

// webhookConfiguration points the API server at the two handlers; envtest
// rewrites the service references to the local server.
func webhookConfiguration() *admissionregv1.ValidatingWebhookConfiguration {
	hook := func(name, path string, rule admissionregv1.RuleWithOperations) admissionregv1.ValidatingWebhook {
		return admissionregv1.ValidatingWebhook{
			Name: name,
			ClientConfig: admissionregv1.WebhookClientConfig{Service: &admissionregv1.ServiceReference{
				Namespace: "netguard", Name: "netguard", Path: ptr.To(strings.TrimPrefix(path, "/")),
			}},
			Rules:                   []admissionregv1.RuleWithOperations{rule},
			FailurePolicy:           ptr.To(admissionregv1.Fail),
			SideEffects:             ptr.To(admissionregv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"},
			TimeoutSeconds:          ptr.To[int32](5),
		}
	}
	return &admissionregv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "netguard-serviceguard-test"},
		Webhooks: []admissionregv1.ValidatingWebhook{
			hook("services.netguard.io", services.ServicePath, admissionregv1.RuleWithOperations{
				Operations: []admissionregv1.OperationType{admissionregv1.Create, admissionregv1.Update},
				Rule:       admissionregv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"services"}},
			}),
			hook("workloads.netguard.io", services.WorkloadPath, admissionregv1.RuleWithOperations{
				Operations: []admissionregv1.OperationType{admissionregv1.Update},
				Rule:       admissionregv1.Rule{APIGroups: []string{"apps"}, APIVersions: []string{"v1"}, Resources: []string{"deployments", "statefulsets", "daemonsets"}},
			}),
		},
	}
}

// rolloutCRD is a minimal CustomResourceDefinition for Argo Rollouts.
func rolloutCRD() *apiextensionsv1.CustomResourceDefinition {
	return &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "rollouts.argoproj.io"},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: clusterview.RolloutGVK.Group,
			Names: apiextensionsv1.CustomResourceDefinitionNames{Kind: "Rollout", ListKind: "RolloutList", Plural: "rollouts", Singular: "rollout"},
			Scope: apiextensionsv1.NamespaceScoped,
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
				Name: clusterview.RolloutGVK.Version, Served: true, Storage: true,
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
					Type: "object", XPreserveUnknownFields: ptr.To(true),
				}},
			}},
		},
	}
}
