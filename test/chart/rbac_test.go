package chart

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	orv1alpha1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	admissionregv1 "k8s.io/api/admissionregistration/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/netguard-io/netguard/controllers/reports"
	"github.com/netguard-io/netguard/test/framework"
)

// permission is one verb on one resource, granted by one rule of one of
// the chart's (Cluster)Roles.
type permission struct {
	role      string // Kind/namespace/name of the role
	rule      int
	group     string
	resource  string
	verb      string
	namespace string // for a Role; "" for the ClusterRole
	name      string // the rule's only resourceName, if any
}

// short is "verb resource[.group]".
func (p permission) short() string {
	s := p.verb + " " + p.resource
	if p.group != "" {
		s += "." + p.group
	}
	return s
}

func (p permission) String() string {
	s := p.short()
	if p.name != "" {
		s += "/" + p.name
	}
	return s + " (" + p.role + ")"
}

// forbidden is what the API server says when netguard lacks p, as it
// appears in netguard's JSON log.
func (p permission) forbidden() string {
	return fmt.Sprintf(`cannot %s resource \"%s\"`, p.verb, p.resource)
}

// unexercised are permissions no run here can show missing, with why
// netguard holds them anyway. The test checks the chart still grants each.
var unexercised = map[string]string{
	"get namespaces": "read live when a pod's namespace is not in the cache yet (created moments ago, or after the API server was away); " +
		"test/integration TestAPIServerRestart covers that path",
	"patch events.events.k8s.io": "the events.k8s.io recorder patches the series of an Event that repeats within minutes",
}

// rbacValues: self-managed TLS (the most permissions), the conflict
// detector reporting after two takeovers so a run can make it write an
// Event.
var rbacValues = map[string]any{
	"certManager": map[string]any{"enabled": false},
	"config":      map[string]any{"conflicts": map[string]any{"flips": 2}},
	"reports":     map[string]any{"enabled": true, "interval": "1s"},
}

// TestEachRBACPermissionIsNeeded proves the chart's RBAC least privilege:
// for every verb on every resource the chart grants, netguard runs with
// exactly the chart's RBAC minus that one permission, on a real API server
// with RBAC on, and must run into the API server's "forbidden" for it. A
// permission no run misses would be one netguard does not need. A first
// run with all of them must meet no "forbidden" at all.
func TestEachRBACPermissionIsNeeded(t *testing.T) {
	needControlPlane(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	if _, err := envtest.InstallCRDs(cp.Config, envtest.CRDInstallOptions{Paths: []string{"testdata/crds"}, ErrorIfPathMissing: true}); err != nil {
		t.Fatalf("installing the Argo Rollouts CRD: %v", err)
	}
	r := localInstall(t, ctx, "rbac", rbacValues, nil)
	kubeconfig := serviceAccountKubeconfig(t, r)
	args := append(serverArgs(r), "--kubeconfig", kubeconfig, "--webhook-dns-names=localhost")
	config := configFile(t, r)
	roles := r.objs.ofKind("ClusterRole")
	roles = append(roles, r.objs.ofKind("Role")...)
	perms := permissions(t, roles)
	sa := r.deployment.Spec.Template.Spec.ServiceAccountName
	user := "system:serviceaccount:" + serverNamespace + ":" + sa

	for key := range unexercised {
		if !slices.ContainsFunc(perms, func(p permission) bool { return p.short() == key }) {
			t.Errorf("unexercised permission %q is no longer granted by the chart: drop it from the list", key)
		}
	}

	run := func(t *testing.T, missing *permission) string {
		applyRoles(t, ctx, roles, missing)
		waitRBAC(t, ctx, user, perms, missing)
		prepareCASecret(t, ctx, r, missing)
		deleteLease(t, ctx, r)
		prepareReports(t, ctx)
		s := launchServer(t, ctx, r, config, args...)
		if missing == nil || needsReadyServer(*missing) {
			framework.Eventually(t, time.Minute, "netguard ready", func() (bool, string) {
				return s.Probe("/readyz") == http.StatusOK, tail(s.Log(), 20)
			})
			// Only the leader records Events.
			if err := s.WaitLeader(ctx); err != nil {
				t.Fatal(err)
			}
			exercise(t, ctx)
		}
		if missing == nil {
			// Give late errors (watches, Events) a moment to show.
			time.Sleep(2 * time.Second)
			return s.Log()
		}
		framework.Eventually(t, 30*time.Second, "netguard missing "+missing.String(), func() (bool, string) {
			return strings.Contains(s.Log(), missing.forbidden()), "log:\n" + tail(s.Log(), 20)
		})
		return s.Log()
	}

	t.Run("all", func(t *testing.T) {
		if log := run(t, nil); strings.Contains(log, "forbidden") {
			t.Fatalf("netguard met a forbidden with all of the chart's permissions:\n%s", grep(log, "forbidden"))
		}
	})
	for _, p := range perms {
		if _, skip := unexercised[p.short()]; skip {
			continue
		}
		t.Run(p.String(), func(t *testing.T) {
			log := run(t, &p)
			t.Logf("without it: %s", firstLine(grep(log, p.forbidden())))
		})
	}
	applyRoles(t, ctx, roles, nil)
}

// permissions lists every verb on every resource the roles grant.
func permissions(t *testing.T, roles objects) []permission {
	t.Helper()
	var out []permission
	for _, obj := range roles {
		rules := roleRules(t, obj)
		for i, rule := range rules {
			name := ""
			if len(rule.ResourceNames) == 1 {
				name = rule.ResourceNames[0]
			}
			for _, g := range rule.APIGroups {
				for _, res := range rule.Resources {
					for _, v := range rule.Verbs {
						out = append(out, permission{
							role: obj.GetKind() + "/" + strings.TrimPrefix(obj.GetNamespace()+"/", "/") + obj.GetName(),
							rule: i, group: g, resource: res, verb: v, namespace: obj.GetNamespace(), name: name,
						})
					}
				}
			}
		}
	}
	return out
}

func roleRules(t *testing.T, obj *unstructured.Unstructured) []rbacv1.PolicyRule {
	t.Helper()
	var role rbacv1.ClusterRole // a Role's rules have the same shape
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, &role); err != nil {
		t.Fatal(err)
	}
	return role.Rules
}

// withoutPermission returns rules with p's verb taken from p's resource
// only: the rule is split so the other resources keep every verb.
func withoutPermission(rules []rbacv1.PolicyRule, p permission) []rbacv1.PolicyRule {
	var out []rbacv1.PolicyRule
	for i, rule := range rules {
		if i != p.rule {
			out = append(out, rule)
			continue
		}
		others := rule.DeepCopy()
		others.Resources = slices.DeleteFunc(slices.Clone(rule.Resources), func(r string) bool { return r == p.resource })
		if len(others.Resources) > 0 {
			out = append(out, *others)
		}
		mine := rule.DeepCopy()
		mine.Resources = []string{p.resource}
		mine.Verbs = slices.DeleteFunc(slices.Clone(rule.Verbs), func(v string) bool { return v == p.verb })
		if len(mine.Verbs) > 0 {
			out = append(out, *mine)
		}
	}
	return out
}

// applyRoles writes the chart's roles, with missing taken away.
func applyRoles(t *testing.T, ctx context.Context, roles objects, missing *permission) {
	t.Helper()
	for _, obj := range roles {
		rules := roleRules(t, obj)
		role := obj.GetKind() + "/" + strings.TrimPrefix(obj.GetNamespace()+"/", "/") + obj.GetName()
		if missing != nil && missing.role == role {
			rules = withoutPermission(rules, *missing)
		}
		current := &unstructured.Unstructured{}
		current.SetGroupVersionKind(obj.GroupVersionKind())
		if err := cp.Client.Get(ctx, client.ObjectKeyFromObject(obj), current); err != nil {
			t.Fatal(err)
		}
		raw, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&rbacv1.ClusterRole{Rules: rules})
		if err != nil {
			t.Fatal(err)
		}
		current.Object["rules"] = raw["rules"]
		if err := cp.Client.Update(ctx, current); err != nil {
			t.Fatalf("updating %s: %v", role, err)
		}
	}
}

// waitRBAC waits until the API server's authorizer gives user every one
// of perms except missing (nil: all of them), so that a run does not race
// the RBAC change before it.
func waitRBAC(t *testing.T, ctx context.Context, user string, perms []permission, missing *permission) {
	t.Helper()
	framework.Eventually(t, 30*time.Second, "RBAC in place", func() (bool, string) {
		for _, p := range perms {
			want := missing == nil || p != *missing
			sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
				User:   user,
				Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + serverNamespace, "system:authenticated"},
				ResourceAttributes: &authorizationv1.ResourceAttributes{
					Namespace: p.namespace, Verb: p.verb, Group: p.group, Resource: p.resource, Name: p.name,
				},
			}}
			if err := cp.Client.Create(ctx, sar); err != nil {
				return false, err.Error()
			}
			if sar.Status.Allowed != want {
				return false, fmt.Sprintf("%s allowed=%v, want %v", p, sar.Status.Allowed, want)
			}
		}
		return true, ""
	})
}

// prepareCASecret makes every run issue a new CA, so that netguard creates
// its Secret and writes caBundle, except the run without secrets update,
// which finds an empty Secret it must update.
func prepareCASecret(t *testing.T, ctx context.Context, r rendered, missing *permission) {
	t.Helper()
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: serverNamespace, Name: r.flag(t, "--tls-secret")}}
	if err := cp.Client.Delete(ctx, secret); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	framework.Eventually(t, 10*time.Second, "CA Secret deleted", func() (bool, string) {
		err := cp.Client.Get(ctx, client.ObjectKeyFromObject(secret), &corev1.Secret{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
	if missing != nil && missing.resource == "secrets" && missing.verb == "update" {
		if err := cp.Client.Create(ctx, secret); err != nil {
			t.Fatal(err)
		}
	}
}

// deleteLease removes the leader-election Lease, so that every run makes it
// anew (create) and renews it (update).
func deleteLease(t *testing.T, ctx context.Context, r rendered) {
	t.Helper()
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: serverNamespace, Name: r.flag(t, "--leader-elect-id")}}
	if err := cp.Client.Delete(ctx, lease); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
}

// needsReadyServer: permissions used only once netguard serves, by the
// requests exercise makes.
func needsReadyServer(p permission) bool {
	return p.resource == "events" || p.resource == "reports" || (p.resource == "services" && p.verb == "get")
}

// prepareReports leaves netguard a Report to update (stale results in a
// namespace it acts on) and one to delete (in a namespace it does not act
// on); the run's opted-in namespace gets one created.
func prepareReports(t *testing.T, ctx context.Context) {
	t.Helper()
	rc, err := client.New(cp.Config, client.Options{Scheme: reports.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	for _, labels := range []map[string]string{{"netguard.io/inject": "enabled"}, nil} {
		ns := "rbac-reports-" + utilrand.String(5)
		if _, err := cp.CreateNamespace(ctx, ns, labels); err != nil {
			t.Fatal(err)
		}
		stale := &orv1alpha1.Report{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: reports.Name, Labels: map[string]string{reports.ManagedByLabel: "netguard"}},
			Source:     "netguard",
			Results:    []orv1alpha1.ReportResult{{Source: "netguard", Policy: "stale", Result: "fail"}},
		}
		if err := rc.Create(ctx, stale); err != nil {
			t.Fatal(err)
		}
	}
}

// exercise makes netguard use what it only uses while serving: a pod in
// an opted-in namespace (the cluster DNS Service is read) and two field
// managers taking an annotation of a Service from each other (the conflict
// detector writes an Event).
func exercise(t *testing.T, ctx context.Context) {
	t.Helper()
	ns := "rbac-" + utilrand.String(5)
	if _, err := cp.CreateNamespace(ctx, ns, map[string]string{"netguard.io/inject": "enabled"}); err != nil {
		t.Fatal(err)
	}
	assertPodMutated(t, ctx, "while serving")
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "gateway"},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "gateway"}, Ports: []corev1.ServicePort{{Port: 80}}},
	}
	if err := cp.Client.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	for i, manager := range []string{"lb-a", "lb-b", "lb-a", "lb-b"} {
		if err := cp.Client.Get(ctx, client.ObjectKeyFromObject(svc), svc); err != nil {
			t.Fatal(err)
		}
		svc.Annotations = map[string]string{"example.com/owner": fmt.Sprintf("%s-%d", manager, i)}
		if err := cp.Client.Update(ctx, svc, client.FieldOwner(manager)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond) // one takeover per informer event
	}
}

func grep(s, substr string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	if len(line) > 300 {
		line = line[:300] + "..."
	}
	return line
}

// TestServiceGuardUntilItsViewSyncs runs netguard with the chart's RBAC
// minus "list pods", so that the Service guard's view cannot sync. netguard
// stays live but not ready, and the API server applies the Service
// webhook's failurePolicy: Fail rejects a Service, Ignore admits it
// unchecked. Once the permission is back the view syncs, readiness
// recovers and the guard judges Services again.
func TestServiceGuardUntilItsViewSyncs(t *testing.T) {
	needControlPlane(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	r := localInstall(t, ctx, "unsynced", nil, cp.CAData)
	roles := append(r.objs.ofKind("ClusterRole"), r.objs.ofKind("Role")...)
	perms := permissions(t, roles)
	i := slices.IndexFunc(perms, func(p permission) bool { return p.short() == "list pods" })
	if i < 0 {
		t.Fatal("the chart does not grant list pods")
	}
	listPods := perms[i]
	applyRoles(t, ctx, roles, &listPods)
	sa := r.deployment.Spec.Template.Spec.ServiceAccountName
	waitRBAC(t, ctx, "system:serviceaccount:"+serverNamespace+":"+sa, perms, &listPods)

	s := launchServer(t, ctx, r, configFile(t, r), append(serverArgs(r), "--kubeconfig", serviceAccountKubeconfig(t, r))...)
	framework.Eventually(t, 30*time.Second, "netguard failing to list pods", func() (bool, string) {
		return strings.Contains(s.Log(), listPods.forbidden()), tail(s.Log(), 10)
	})
	for range 5 {
		if code := s.Probe("/healthz"); code != http.StatusOK {
			t.Fatalf("/healthz = %d, want 200: an unsynced view is no reason to restart", code)
		}
		if code := s.Probe("/readyz"); code == http.StatusOK {
			t.Fatal("/readyz = 200 while the Service guard's view cannot sync")
		}
		time.Sleep(500 * time.Millisecond)
	}

	ns := "unsynced-" + utilrand.String(5)
	if _, err := cp.CreateNamespace(ctx, ns, map[string]string{"netguard.io/inject": "enabled"}); err != nil {
		t.Fatal(err)
	}
	newService := func(name string, sel map[string]string) *corev1.Service {
		return &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec:       corev1.ServiceSpec{Selector: sel, Ports: []corev1.ServicePort{{Port: 80}}},
		}
	}
	// The API server's admission chain picks up a webhook configuration
	// through an informer: until it has the new policy, a request may meet
	// the old one. Dry runs (the webhooks have no side effects) wait for it.
	setServiceFailurePolicy(t, ctx, r.fullname, admissionregv1.Fail)
	var err error
	framework.Eventually(t, 30*time.Second, "a Service refused with failurePolicy Fail before the view synced", func() (bool, string) {
		err = cp.Client.Create(ctx, newService("with-fail", map[string]string{"app": "web"}), client.DryRunAll)
		return err != nil, "admitted"
	})
	if !strings.Contains(err.Error(), "services.netguard.io") {
		t.Fatalf("failurePolicy Fail before the view synced: err = %v, want the webhook call to fail", err)
	}
	t.Logf("failurePolicy Fail, view not synced: %v", err)
	setServiceFailurePolicy(t, ctx, r.fullname, admissionregv1.Ignore)
	framework.Eventually(t, 30*time.Second, "a Service admitted with failurePolicy Ignore before the view synced", func() (bool, string) {
		err := cp.Client.Create(ctx, newService("with-ignore", map[string]string{"app": "web"}), client.DryRunAll)
		return err == nil, fmt.Sprint(err)
	})
	if err := cp.Client.Create(ctx, newService("with-ignore", map[string]string{"app": "web"})); err != nil {
		t.Fatalf("failurePolicy Ignore before the view synced: %v", err)
	}

	// The permission comes back: the view syncs on the informer's next try.
	applyRoles(t, ctx, roles, nil)
	start := time.Now()
	framework.Eventually(t, 90*time.Second, "netguard ready once it may list pods", func() (bool, string) {
		return s.Probe("/readyz") == http.StatusOK, "not ready"
	})
	t.Logf("ready %v after list pods was granted", time.Since(start).Round(100*time.Millisecond))
	// The guard answers again: a selector on the revision label is denied.
	err = cp.Client.Create(ctx, newService("pinned", map[string]string{"app": "web", "pod-template-hash": "7d9f8c"}))
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "pod-template-hash") {
		t.Fatalf("Service selecting on pod-template-hash after the view synced: err = %v, want a denial", err)
	}
}

// setServiceFailurePolicy sets failurePolicy of the Service webhook in the
// release's ValidatingWebhookConfiguration.
func setServiceFailurePolicy(t *testing.T, ctx context.Context, name string, policy admissionregv1.FailurePolicyType) {
	t.Helper()
	// netguard may write the configuration too (its caBundle).
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		v := &admissionregv1.ValidatingWebhookConfiguration{}
		if err := cp.Client.Get(ctx, client.ObjectKey{Name: name}, v); err != nil {
			return err
		}
		for i := range v.Webhooks {
			if v.Webhooks[i].Name == "services.netguard.io" {
				v.Webhooks[i].FailurePolicy = &policy
			}
		}
		return cp.Client.Update(ctx, v)
	})
	if err != nil {
		t.Fatal(err)
	}
}
