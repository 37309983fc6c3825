package chart

import (
	"flag"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	admissionregv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/netguard-io/netguard/config"
	"github.com/netguard-io/netguard/internal/memlimit"
	ngwebhook "github.com/netguard-io/netguard/webhook"
	"github.com/netguard-io/netguard/webhook/conflicts"
	"github.com/netguard-io/netguard/webhook/services"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// valueCases are the installs the chart supports; every test over the
// rendered chart runs them all.
var valueCases = map[string]struct {
	values map[string]any
	check  func(t *testing.T, r rendered)
}{
	"defaults": {
		check: func(t *testing.T, r rendered) {
			r.wantKinds(t, "Certificate", "Issuer", "PodDisruptionBudget", "Role", "RoleBinding", "ValidatingWebhookConfiguration")
			r.wantNoKinds(t, "Secret", "ServiceMonitor")
			for _, rule := range r.clusterRole.Rules {
				if slices.Contains(rule.APIGroups, "openreports.io") {
					t.Errorf("RBAC for Reports rendered with reports off: %+v", rule)
				}
			}
			if got := r.deployment.Spec.Replicas; got == nil || *got != 2 {
				t.Errorf("replicas = %v, want 2", got)
			}
			var pdb policyv1.PodDisruptionBudget
			r.objs.get(t, "PodDisruptionBudget", r.fullname, &pdb)
			if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() != 1 {
				t.Errorf("PDB minAvailable = %v, want 1", pdb.Spec.MinAvailable)
			}
			if len(r.deployment.Spec.Template.Spec.TopologySpreadConstraints) == 0 {
				t.Error("no topology spread constraints")
			}
			for _, c := range r.deployment.Spec.Template.Spec.TopologySpreadConstraints {
				if c.LabelSelector == nil || !selects(t, c.LabelSelector, r.deployment.Spec.Template.Labels) {
					t.Errorf("topology spread on %s does not select netguard's pods: %+v", c.TopologyKey, c.LabelSelector)
				}
			}
			r.wantConfig(t, func(c *config.Config) bool {
				return c.Namespaces.Mode == config.NamespaceModeOptIn && c.DNSProxy.Enabled &&
					c.DNSProxy.Image == r.container.Image && c.ServiceGuard.Mode == config.GuardModeEnforce
			})
		},
	},
	"resolvers": {
		values: map[string]any{
			"dns":      map[string]any{"resolver": map[string]any{"default": "glibc", "glibcImages": []string{"team/api"}, "muslImages": []string{"*/in-house/base"}}},
			"dnsProxy": map[string]any{"forMusl": true},
		},
		check: func(t *testing.T, r rendered) {
			r.wantConfig(t, func(c *config.Config) bool {
				rc := c.DNS.Resolver
				return rc.Default == config.ResolverGlibc && slices.Equal(rc.GlibcImages, []string{"team/api"}) &&
					slices.Equal(rc.MuslImages, []string{"*/in-house/base"}) && c.DNSProxy.ForMusl
			})
		},
	},
	"resolver defaults": {
		check: func(t *testing.T, r rendered) {
			r.wantConfig(t, func(c *config.Config) bool {
				rc := c.DNS.Resolver
				return rc.Default == config.ResolverUnknown && slices.Equal(rc.GlibcImages, config.DefaultGlibcImages) && !c.DNSProxy.ForMusl
			})
		},
	},
	"cluster-wide": {
		values: map[string]any{"namespaces": map[string]any{"mode": "cluster-wide", "exclude": []string{"legacy"}}},
		check: func(t *testing.T, r rendered) {
			r.wantConfig(t, func(c *config.Config) bool {
				return c.Namespaces.Mode == config.NamespaceModeClusterWide && slices.Equal(c.Namespaces.Exclude, []string{"legacy"})
			})
		},
	},
	"reports": {
		values: map[string]any{"reports": map[string]any{"enabled": true, "interval": "10m"}},
		check: func(t *testing.T, r rendered) {
			r.wantConfig(t, func(c *config.Config) bool {
				return c.Reports.Enabled && c.Reports.IntervalDuration() == 10*time.Minute
			})
			if !slices.ContainsFunc(r.clusterRole.Rules, func(rule rbacv1.PolicyRule) bool {
				return slices.Equal(rule.APIGroups, []string{"openreports.io"}) && slices.Equal(rule.Verbs, []string{"list", "create", "update", "delete"})
			}) {
				t.Errorf("no RBAC for openreports.io Reports: %+v", r.clusterRole.Rules)
			}
		},
	},
	"service guard in every namespace": {
		values: map[string]any{"serviceGuard": map[string]any{"namespaceMode": "cluster-wide", "mode": "warn"}},
		check: func(t *testing.T, r rendered) {
			r.wantConfig(t, func(c *config.Config) bool {
				return c.Namespaces.Mode == config.NamespaceModeOptIn && c.ServiceNamespaces().Mode == config.NamespaceModeClusterWide
			})
			var m admissionregv1.MutatingWebhookConfiguration
			r.objs.get(t, "MutatingWebhookConfiguration", r.fullname, &m)
			if sel := m.Webhooks[0].NamespaceSelector.MatchExpressions[0]; sel.Operator != metav1.LabelSelectorOpIn {
				t.Errorf("pod webhook selects %v; pods stay opt-in", sel)
			}
			var v admissionregv1.ValidatingWebhookConfiguration
			r.objs.get(t, "ValidatingWebhookConfiguration", r.fullname, &v)
			for _, w := range v.Webhooks {
				if sel := w.NamespaceSelector.MatchExpressions[0]; sel.Operator != metav1.LabelSelectorOpNotIn || sel.Values[0] != "disabled" {
					t.Errorf("%s selects %v, want every namespace not opted out", w.Name, sel)
				}
			}
		},
	},
	"no cert-manager": {
		values: map[string]any{"certManager": map[string]any{"enabled": false}},
		check: func(t *testing.T, r rendered) {
			r.wantNoKinds(t, "Certificate", "Issuer")
			for _, w := range r.webhookMetas() {
				if _, ok := w.Annotations["cert-manager.io/inject-ca-from"]; ok {
					t.Errorf("%s asks cert-manager for its caBundle without cert-manager", w.Name)
				}
			}
			if !slices.Contains(r.container.Args, "--self-managed-tls") {
				t.Fatalf("args %v lack --self-managed-tls", r.container.Args)
			}
			// netguard creates its CA Secret; the release must not own it,
			// or a copy netguard wrote again while the release was being
			// uninstalled would block the next helm install.
			r.wantNoKinds(t, "Secret")
			secret := r.flag(t, "--tls-secret")
			if svc := r.flag(t, "--webhook-service"); svc != r.service.Name {
				t.Errorf("--webhook-service = %s, want the Service %s", svc, r.service.Name)
			}
			// The configurations netguard writes are the chart's, and RBAC
			// allows writing exactly those.
			want := strings.Split(r.flag(t, "--webhook-configurations"), ",")
			for _, w := range r.webhookMetas() {
				if !slices.Contains(want, w.Name) {
					t.Errorf("--webhook-configurations %v misses %s", want, w.Name)
				}
			}
			rule := r.clusterRule(t, "admissionregistration.k8s.io", "mutatingwebhookconfigurations")
			if !slices.Equal(rule.ResourceNames, want) || !slices.Contains(rule.Verbs, "update") {
				t.Errorf("webhook configuration rule = %+v, want update limited to %v", rule, want)
			}
			role := r.role(t, r.release.namespace, "secrets")
			if !slices.Equal(role.ResourceNames, []string{secret}) {
				t.Errorf("Secret rule = %+v, want it limited to %s", role, secret)
			}
			for _, v := range r.container.VolumeMounts {
				if v.Name == "tls" {
					t.Errorf("a TLS Secret is mounted without cert-manager: %+v", v)
				}
			}
		},
	},
	"sidecar off": {
		values: map[string]any{"dnsProxy": map[string]any{"enabled": false}},
		check: func(t *testing.T, r rendered) {
			r.wantConfig(t, func(c *config.Config) bool { return !c.DNSProxy.Enabled })
		},
	},
	"a cluster without native sidecars or the sleep pre-stop hook": {
		values: map[string]any{"dnsProxy": map[string]any{"nativeSidecar": false}, "preStopSleepSeconds": 0},
		check: func(t *testing.T, r rendered) {
			r.wantConfig(t, func(c *config.Config) bool { return c.DNSProxy.Enabled && !c.DNSProxy.NativeSidecar })
			if r.container.Lifecycle != nil {
				t.Errorf("preStopSleepSeconds 0 still renders a lifecycle: %+v", r.container.Lifecycle)
			}
		},
	},
	"custom issuer": {
		values: map[string]any{"certManager": map[string]any{"issuerRef": map[string]any{"name": "corp-ca", "kind": "ClusterIssuer"}}},
		check: func(t *testing.T, r rendered) {
			r.wantNoKinds(t, "Issuer")
			if n := len(r.objs.ofKind("Certificate")); n != 1 {
				t.Fatalf("%d Certificates, want only the serving one", n)
			}
			ref := r.objs.ofKind("Certificate")[0].Object["spec"].(map[string]any)["issuerRef"]
			want := map[string]any{"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}
			if !mapsEqual(ref.(map[string]any), want) {
				t.Errorf("issuerRef = %v, want %v", ref, want)
			}
		},
	},
	"service guard off, static cluster DNS, one replica, extras": {
		values: map[string]any{
			"serviceGuard":      map[string]any{"enabled": false},
			"conflicts":         map[string]any{"mode": "deny"},
			"dns":               map[string]any{"search": map[string]any{"clusterDNS": "10.96.0.10"}},
			"replicaCount":      1,
			"priorityClassName": "system-cluster-critical",
			"metrics":           map[string]any{"serviceMonitor": map[string]any{"enabled": true}},
			"config":            map[string]any{"dns": map[string]any{"search": map[string]any{"allowed": []string{"corp.example"}}}},
		},
		check: func(t *testing.T, r rendered) {
			r.wantNoKinds(t, "PodDisruptionBudget")
			// Only the leader election's: no Service to read, no CA to keep.
			for _, kind := range []string{"Role", "RoleBinding"} {
				if objs := r.objs.ofKind(kind); len(objs) != 1 || objs[0].GetName() != r.fullname+"-leader-election" {
					t.Errorf("%ss rendered: %v, want only %s-leader-election", kind, objs, r.fullname)
				}
			}
			r.wantKinds(t, "ServiceMonitor")
			if got := r.deployment.Spec.Template.Spec.PriorityClassName; got != "system-cluster-critical" {
				t.Errorf("priorityClassName = %q", got)
			}
			for _, rule := range r.clusterRole.Rules {
				if slices.Contains(rule.Resources, "pods") {
					t.Errorf("the Service guard is off but netguard may still %v pods", rule.Verbs)
				}
			}
			r.clusterRule(t, "", "services")            // the conflict detector watches them
			r.clusterRule(t, "events.k8s.io", "events") // and reports with Events
			r.wantConfig(t, func(c *config.Config) bool {
				return !c.ServiceGuard.Enabled && c.Conflicts.Enabled && c.Conflicts.Mode == config.ConflictModeDeny &&
					c.DNS.Search.ClusterDNS == "10.96.0.10" && slices.Equal(c.DNS.Search.Allowed, []string{"corp.example"})
			})
		},
	},
	"monitoring: ServiceMonitor, PodMonitor, alerts, dashboard": {values: monitoringValues, check: checkMonitoring},
	"alerts without the ServiceMonitor": {
		values: map[string]any{"metrics": map[string]any{"prometheusRule": map[string]any{"enabled": true}}},
		check:  checkAlertsOnly,
	},
	"service guard and conflict detector off": {
		values: map[string]any{
			"serviceGuard": map[string]any{"enabled": false},
			"conflicts":    map[string]any{"enabled": false},
		},
		check: func(t *testing.T, r rendered) {
			r.wantNoKinds(t, "ValidatingWebhookConfiguration")
			// Namespaces for the pod webhook; Events for the election's.
			if len(r.clusterRole.Rules) != 2 || !slices.Equal(r.clusterRole.Rules[0].Resources, []string{"namespaces"}) ||
				!slices.Equal(r.clusterRole.Rules[1].APIGroups, []string{"events.k8s.io"}) {
				t.Errorf("with only the pod webhook netguard needs to read namespaces and record Events, nothing else; rules %+v", r.clusterRole.Rules)
			}
			r.wantConfig(t, func(c *config.Config) bool { return !c.ServiceGuard.Enabled && !c.Conflicts.Enabled })
		},
	},
}

// rendered is a rendered chart with its main objects decoded.
type rendered struct {
	release     release
	objs        objects
	fullname    string
	deployment  appsv1.Deployment
	container   corev1.Container
	service     corev1.Service
	clusterRole rbacv1.ClusterRole
	mutating    admissionregv1.MutatingWebhookConfiguration
	validating  *admissionregv1.ValidatingWebhookConfiguration
	config      *config.Config
}

func renderCase(t *testing.T, rel release, values map[string]any) rendered {
	t.Helper()
	r := rendered{release: rel, objs: render(t, rel, values)}
	deployments := r.objs.ofKind("Deployment")
	if len(deployments) != 1 {
		t.Fatalf("%d Deployments rendered, want 1", len(deployments))
	}
	r.fullname = deployments[0].GetName()
	r.objs.get(t, "Deployment", r.fullname, &r.deployment)
	if n := len(r.deployment.Spec.Template.Spec.Containers); n != 1 {
		t.Fatalf("%d containers, want 1", n)
	}
	r.container = r.deployment.Spec.Template.Spec.Containers[0]
	r.objs.get(t, "Service", r.fullname, &r.service)
	r.objs.get(t, "ClusterRole", r.fullname, &r.clusterRole)
	r.objs.get(t, "MutatingWebhookConfiguration", r.fullname, &r.mutating)
	if r.objs.find("ValidatingWebhookConfiguration", r.fullname) != nil {
		r.validating = &admissionregv1.ValidatingWebhookConfiguration{}
		r.objs.get(t, "ValidatingWebhookConfiguration", r.fullname, r.validating)
	}
	var cm corev1.ConfigMap
	r.objs.get(t, "ConfigMap", r.fullname, &cm)
	cfg, err := config.Parse([]byte(cm.Data["config.yaml"]))
	if err != nil {
		t.Fatalf("netguard rejects the rendered config.yaml: %v\n%s", err, cm.Data["config.yaml"])
	}
	r.config = cfg
	return r
}

func (r rendered) wantKinds(t *testing.T, kinds ...string) {
	t.Helper()
	for _, k := range kinds {
		if len(r.objs.ofKind(k)) == 0 {
			t.Errorf("no %s rendered; got %v", k, r.objs.names())
		}
	}
}

func (r rendered) wantNoKinds(t *testing.T, kinds ...string) {
	t.Helper()
	for _, k := range kinds {
		if objs := r.objs.ofKind(k); len(objs) > 0 {
			t.Errorf("%s rendered: %v", k, objs.names())
		}
	}
}

func (r rendered) wantConfig(t *testing.T, ok func(*config.Config) bool) {
	t.Helper()
	if !ok(r.config) {
		t.Errorf("config.yaml does not carry the values: %+v", r.config)
	}
}

// flag returns the value of --name=value in the container's args.
func (r rendered) flag(t *testing.T, name string) string {
	t.Helper()
	for _, a := range r.container.Args {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	t.Fatalf("args %v lack %s", r.container.Args, name)
	return ""
}

func (r rendered) webhookMetas() []metav1.ObjectMeta {
	metas := []metav1.ObjectMeta{r.mutating.ObjectMeta}
	if r.validating != nil {
		metas = append(metas, r.validating.ObjectMeta)
	}
	return metas
}

// webhook is what every webhook of the chart has in common.
type webhook struct {
	name              string
	client            admissionregv1.WebhookClientConfig
	failurePolicy     *admissionregv1.FailurePolicyType
	sideEffects       *admissionregv1.SideEffectClass
	timeoutSeconds    *int32
	namespaceSelector *metav1.LabelSelector
	rules             []admissionregv1.RuleWithOperations
}

func (r rendered) webhooks() []webhook {
	var out []webhook
	for _, w := range r.mutating.Webhooks {
		out = append(out, webhook{w.Name, w.ClientConfig, w.FailurePolicy, w.SideEffects, w.TimeoutSeconds, w.NamespaceSelector, w.Rules})
	}
	if r.validating != nil {
		for _, w := range r.validating.Webhooks {
			out = append(out, webhook{w.Name, w.ClientConfig, w.FailurePolicy, w.SideEffects, w.TimeoutSeconds, w.NamespaceSelector, w.Rules})
		}
	}
	return out
}

func (r rendered) clusterRule(t *testing.T, group, resource string) rbacv1.PolicyRule {
	t.Helper()
	for _, rule := range r.clusterRole.Rules {
		if slices.Contains(rule.APIGroups, group) && slices.Contains(rule.Resources, resource) {
			return rule
		}
	}
	t.Fatalf("ClusterRole has no rule for %s %s: %+v", group, resource, r.clusterRole.Rules)
	return rbacv1.PolicyRule{}
}

func (r rendered) role(t *testing.T, namespace, resource string) rbacv1.PolicyRule {
	t.Helper()
	for _, obj := range r.objs.ofKind("Role") {
		if obj.GetNamespace() != namespace {
			continue
		}
		var role rbacv1.Role
		r.objs.get(t, "Role", obj.GetName(), &role)
		for _, rule := range role.Rules {
			if slices.Contains(rule.Resources, resource) && len(rule.ResourceNames) > 0 {
				return rule
			}
		}
	}
	t.Fatalf("no Role in %s limits %s to names", namespace, resource)
	return rbacv1.PolicyRule{}
}

func selects(t *testing.T, s *metav1.LabelSelector, l map[string]string) bool {
	t.Helper()
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		t.Fatalf("selector %+v: %v", s, err)
	}
	return sel.Matches(labels.Set(l))
}

func mapsEqual(a, b map[string]any) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestTemplate renders every case and checks what holds for any install,
// then what the case is about.
func TestTemplate(t *testing.T) {
	for name, tc := range valueCases {
		t.Run(name, func(t *testing.T) {
			r := renderCase(t, defaultRelease, tc.values)
			checkInvariants(t, r)
			tc.check(t, r)
		})
	}
}

// checkInvariants are the properties every install has.
func checkInvariants(t *testing.T, r rendered) {
	for _, obj := range r.objs {
		if obj.GetLabels()["app.kubernetes.io/name"] != "netguard" || obj.GetLabels()["app.kubernetes.io/instance"] != r.release.name {
			t.Errorf("%s/%s lacks the chart's labels: %v", obj.GetKind(), obj.GetName(), obj.GetLabels())
		}
		ns := obj.GetNamespace()
		switch obj.GetKind() {
		case "ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration":
			if ns != "" {
				t.Errorf("cluster-scoped %s/%s has namespace %q", obj.GetKind(), obj.GetName(), ns)
			}
		case "Role", "RoleBinding":
			if ns != r.release.namespace && ns != "kube-system" {
				t.Errorf("%s/%s in namespace %q", obj.GetKind(), obj.GetName(), ns)
			}
		default:
			if ns != r.release.namespace {
				t.Errorf("%s/%s in namespace %q, want the release namespace %q", obj.GetKind(), obj.GetName(), ns, r.release.namespace)
			}
		}
	}

	pod := r.deployment.Spec.Template
	if !selects(t, r.deployment.Spec.Selector, pod.Labels) {
		t.Errorf("Deployment selector %+v does not select its pods %v", r.deployment.Spec.Selector, pod.Labels)
	}
	if !selects(t, &metav1.LabelSelector{MatchLabels: r.service.Spec.Selector}, pod.Labels) {
		t.Errorf("Service selector %v does not select the pods %v", r.service.Spec.Selector, pod.Labels)
	}
	if r.objs.find("ServiceAccount", pod.Spec.ServiceAccountName) == nil {
		t.Errorf("pods run as ServiceAccount %q, which the chart does not create", pod.Spec.ServiceAccountName)
	}
	checkPodSecurity(t, pod.Spec)
	if !slices.ContainsFunc(r.container.Env, func(e corev1.EnvVar) bool {
		return e.Name == "POD_NAMESPACE" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace"
	}) {
		t.Error("POD_NAMESPACE does not come from the downward API")
	}
	for _, probe := range []*corev1.Probe{r.container.LivenessProbe, r.container.ReadinessProbe} {
		if probe == nil || probe.HTTPGet == nil || !hasPort(r.container, probe.HTTPGet.Port.String()) {
			t.Errorf("probe %+v does not reach a container port", probe)
		}
	}
	if r.container.ReadinessProbe.HTTPGet.Path != "/readyz" || r.container.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Error("readiness must be /readyz and liveness /healthz")
	}
	if r.container.Resources.Requests.Memory().IsZero() || r.container.Resources.Limits.Memory().IsZero() {
		t.Errorf("memory request and limit unset: %+v", r.container.Resources)
	}
	if !mountsConfig(t, r) {
		t.Errorf("--config %s is not the mounted ConfigMap", r.flag(t, "--config"))
	}

	// The webhooks reach the Service's https port, which reaches the
	// server's port.
	https := servicePort(r.service, "https")
	if https == nil || !hasPort(r.container, https.TargetPort.String()) {
		t.Fatalf("Service port https %+v does not reach a container port", https)
	}
	for _, w := range r.webhooks() {
		s := w.client.Service
		if s == nil || s.Name != r.service.Name || s.Namespace != r.release.namespace || s.Port == nil || *s.Port != https.Port {
			t.Errorf("webhook %s calls %+v, not the Service's https port", w.name, s)
		}
		if w.sideEffects == nil || *w.sideEffects != admissionregv1.SideEffectClassNone {
			t.Errorf("webhook %s sideEffects = %v, want None (dry-run requests must work)", w.name, w.sideEffects)
		}
		if w.timeoutSeconds == nil || *w.timeoutSeconds > 10 {
			t.Errorf("webhook %s timeoutSeconds = %v; keep it short", w.name, w.timeoutSeconds)
		}
		if w.failurePolicy == nil || *w.failurePolicy != admissionregv1.Ignore {
			t.Errorf("webhook %s failurePolicy = %v, want the default Ignore", w.name, w.failurePolicy)
		}
		mode := r.config.ServiceNamespaces().Mode // Services, workloads, Service status
		if w.name == "pods.netguard.io" {
			mode = r.config.Namespaces.Mode
		}
		checkNamespaceSelector(t, w.name, w.namespaceSelector, r, mode)
		if len(w.client.CABundle) != 0 {
			t.Errorf("webhook %s has a rendered caBundle; cainjector or netguard writes it", w.name)
		}
	}
	pods := r.mutating.Webhooks[0]
	if pods.Name != "pods.netguard.io" || pods.ClientConfig.Service.Path == nil || *pods.ClientConfig.Service.Path != "/mutate-v1-pod" {
		t.Errorf("pod webhook %s calls %v", pods.Name, pods.ClientConfig.Service.Path)
	}
	if pods.ReinvocationPolicy == nil || *pods.ReinvocationPolicy != admissionregv1.IfNeededReinvocationPolicy {
		t.Errorf("pod webhook reinvocationPolicy = %v, want IfNeeded", pods.ReinvocationPolicy)
	}
	if pods.ObjectSelector == nil || selects(t, pods.ObjectSelector, pod.Labels) {
		t.Errorf("pod webhook objectSelector %+v lets netguard's own pods %v through", pods.ObjectSelector, pod.Labels)
	}
	if !selects(t, pods.ObjectSelector, map[string]string{"app": "web"}) {
		t.Errorf("pod webhook objectSelector %+v leaves out ordinary pods", pods.ObjectSelector)
	}
	if len(pods.Rules) != 1 || !slices.Equal(pods.Rules[0].Operations, []admissionregv1.OperationType{admissionregv1.Create}) ||
		!slices.Equal(pods.Rules[0].Resources, []string{"pods"}) {
		t.Errorf("pod webhook rules %+v, want pods CREATE only", pods.Rules)
	}
	// The validating webhooks call the paths netguard serves them at, and
	// exist exactly when their feature is on.
	wantPaths := map[string]string{}
	if r.config.ServiceGuard.Enabled {
		wantPaths["services.netguard.io"] = services.ServicePath
		wantPaths["workloads.netguard.io"] = services.WorkloadPath
	}
	if r.config.Conflicts.Enabled {
		wantPaths["service-status.netguard.io"] = conflicts.StatusPath
	}
	gotPaths := map[string]string{}
	if r.validating != nil {
		for _, w := range r.validating.Webhooks {
			gotPaths[w.Name] = *w.ClientConfig.Service.Path
		}
	}
	if !maps.Equal(gotPaths, wantPaths) {
		t.Errorf("validating webhooks %v, want %v", gotPaths, wantPaths)
	}
	if path := *pods.ClientConfig.Service.Path; path != ngwebhook.MutatePodPath {
		t.Errorf("pod webhook path %s, netguard serves %s", path, ngwebhook.MutatePodPath)
	}

	// netguard learns its container's memory limit, in bytes, to size
	// Go's soft memory limit from it.
	var limitEnv *corev1.EnvVar
	for i, e := range r.container.Env {
		if e.Name == memlimit.EnvVar {
			limitEnv = &r.container.Env[i]
		}
	}
	if limitEnv == nil || limitEnv.ValueFrom == nil || limitEnv.ValueFrom.ResourceFieldRef == nil {
		t.Errorf("the container has no %s from the downward API: %+v", memlimit.EnvVar, r.container.Env)
	} else if ref := limitEnv.ValueFrom.ResourceFieldRef; ref.Resource != "limits.memory" || ref.ContainerName != r.container.Name || ref.Divisor.String() != "1" {
		t.Errorf("%s = %+v, want limits.memory of %s in bytes (divisor 1)", memlimit.EnvVar, ref, r.container.Name)
	}

	// cert-manager: the mounted Secret is the Certificate's, the
	// Certificate names the Service, cainjector reads that Certificate.
	if slices.Contains(r.container.Args, "--self-managed-tls") {
		return
	}
	var cert unstructured.Unstructured
	if obj := r.objs.find("Certificate", r.fullname); obj != nil {
		cert = *obj
	} else {
		t.Fatalf("no serving Certificate %s", r.fullname)
	}
	spec := cert.Object["spec"].(map[string]any)
	dnsNames, _ := spec["dnsNames"].([]any)
	if !slices.Contains(dnsNames, any(r.service.Name+"."+r.release.namespace+".svc")) {
		t.Errorf("Certificate dnsNames %v lack the name the API server uses", dnsNames)
	}
	if secret := r.flag(t, "--cert-dir"); !mountsSecret(r, secret, spec["secretName"].(string)) {
		t.Errorf("--cert-dir %s is not the Certificate's Secret %s", secret, spec["secretName"])
	}
	for _, w := range r.webhookMetas() {
		if got, want := w.Annotations["cert-manager.io/inject-ca-from"], r.release.namespace+"/"+r.fullname; got != want {
			t.Errorf("%s inject-ca-from = %q, want %q", w.Name, got, want)
		}
	}
}

// checkPodSecurity checks the pod against Pod Security "restricted" (the
// API server's own check runs in TestChartObjectsAreAccepted).
func checkPodSecurity(t *testing.T, spec corev1.PodSpec) {
	t.Helper()
	psc := spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext %+v is not restricted", psc)
	}
	for _, c := range spec.Containers {
		sc := c.SecurityContext
		if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.Capabilities == nil ||
			!slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("container %s securityContext %+v is not restricted with a read-only root", c.Name, sc)
		}
	}
}

// checkNamespaceSelector evaluates a webhook's namespaceSelector on the
// namespaces that matter, as the API server does.
func checkNamespaceSelector(t *testing.T, webhook string, s *metav1.LabelSelector, r rendered, mode config.NamespaceMode) {
	t.Helper()
	ns := func(name string, l map[string]string) map[string]string {
		out := map[string]string{"kubernetes.io/metadata.name": name}
		for k, v := range l {
			out[k] = v
		}
		return out
	}
	clusterWide := mode == config.NamespaceModeClusterWide
	cases := map[string]struct {
		labels map[string]string
		want   bool
	}{
		"opted in":                       {ns("team", map[string]string{"netguard.io/inject": "enabled"}), true},
		"not labelled":                   {ns("team", nil), clusterWide},
		"opted out":                      {ns("team", map[string]string{"netguard.io/inject": "disabled"}), false},
		"kube-system, even opted in":     {ns("kube-system", map[string]string{"netguard.io/inject": "enabled"}), false},
		"the release namespace":          {ns(r.release.namespace, map[string]string{"netguard.io/inject": "enabled"}), false},
		"excluded by namespaces.exclude": {ns("legacy", map[string]string{"netguard.io/inject": "enabled"}), !slices.Contains(r.config.Namespaces.Exclude, "legacy")},
	}
	for name, c := range cases {
		if got := selects(t, s, c.labels); got != c.want {
			t.Errorf("webhook %s, %s namespace %v: selected = %v, want %v", webhook, name, c.labels, got, c.want)
		}
	}
}

func hasPort(c corev1.Container, port string) bool {
	return slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool {
		return p.Name == port || p.ContainerPort > 0 && port == strconv.Itoa(int(p.ContainerPort))
	})
}

func servicePort(s corev1.Service, name string) *corev1.ServicePort {
	for i := range s.Spec.Ports {
		if s.Spec.Ports[i].Name == name {
			return &s.Spec.Ports[i]
		}
	}
	return nil
}

// mountsConfig reports whether --config is a file of the mounted ConfigMap.
func mountsConfig(t *testing.T, r rendered) bool {
	dir := filepath.Dir(r.flag(t, "--config"))
	for _, m := range r.container.VolumeMounts {
		if m.MountPath != dir {
			continue
		}
		for _, v := range r.deployment.Spec.Template.Spec.Volumes {
			if v.Name == m.Name && v.ConfigMap != nil && v.ConfigMap.Name == r.fullname {
				return true
			}
		}
	}
	return false
}

// mountsSecret reports whether dir is where Secret secret is mounted.
func mountsSecret(r rendered, dir, secret string) bool {
	for _, m := range r.container.VolumeMounts {
		if m.MountPath != dir {
			continue
		}
		for _, v := range r.deployment.Spec.Template.Spec.Volumes {
			if v.Name == m.Name && v.Secret != nil && v.Secret.SecretName == secret {
				return true
			}
		}
	}
	return false
}

// TestLint runs helm lint --strict on every case.
func TestLint(t *testing.T) {
	for name, tc := range valueCases {
		t.Run(name, func(t *testing.T) {
			args := []string{"lint", "--strict", chartDir, "--namespace", defaultRelease.namespace}
			if f := valuesFile(t, tc.values); f != "" {
				args = append(args, "--values", f)
			}
			if _, err := helm(args...); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestKubeVersionFloor: the chart declares the oldest Kubernetes netguard
// supports, so that helm refuses an older cluster with a message that says
// so, instead of an install that half works; provider builds of a
// supported version (a pre-release suffix) are accepted.
func TestKubeVersionFloor(t *testing.T) {
	for version, ok := range map[string]bool{
		"v1.29.15": false, "v1.30.0": true, "v1.30.4-eks-a737599": true, "v1.37.2": true,
	} {
		t.Run(version, func(t *testing.T) {
			_, err := helm(append(templateArgs(t, defaultRelease, nil), "--kube-version", version)...)
			switch {
			case ok && err != nil:
				t.Fatalf("helm template for Kubernetes %s: %v", version, err)
			case !ok && err == nil:
				t.Fatalf("helm template accepted Kubernetes %s, older than the chart's floor", version)
			case !ok && !strings.Contains(err.Error(), ">=1.30.0-0"):
				t.Fatalf("helm's error for Kubernetes %s does not name the floor: %v", version, err)
			}
		})
	}
}

// TestSchemaRejectsBadValues: values.schema.json turns typos and
// unsupported settings into install errors instead of a netguard that
// fails at startup.
func TestSchemaRejectsBadValues(t *testing.T) {
	cases := map[string]struct {
		values map[string]any
		want   string // in helm's error
	}{
		"unknown namespace mode": {map[string]any{"namespaces": map[string]any{"mode": "everywhere"}}, "mode"},
		"unknown top-level key":  {map[string]any{"replicas": 3}, "replicas"},
		"failurePolicy typo":     {map[string]any{"webhook": map[string]any{"pods": map[string]any{"failurePolicy": "ignore"}}}, "failurePolicy"},
		"dnsProxy mode":          {map[string]any{"dnsProxy": map[string]any{"mode": "sidecar"}}, "mode"},
		"serviceGuard mode":      {map[string]any{"serviceGuard": map[string]any{"mode": "block"}}, "mode"},
		"ndots 0":                {map[string]any{"dns": map[string]any{"ndots": 0}}, "ndots"},
		"timeout too long":       {map[string]any{"webhook": map[string]any{"services": map[string]any{"timeoutSeconds": 31}}}, "timeoutSeconds"},
		"bad duration":           {map[string]any{"certManager": map[string]any{"duration": "90 days"}}, "duration"},
		"cluster DNS not an IP":  {map[string]any{"dns": map[string]any{"search": map[string]any{"clusterDNS": "kube-dns"}}}, "clusterDNS"},
		"unknown resolver":       {map[string]any{"dns": map[string]any{"resolver": map[string]any{"default": "bionic"}}}, "default"},
		"image with a tag":       {map[string]any{"dns": map[string]any{"resolver": map[string]any{"glibcImages": []string{"debian:12"}}}}, "glibcImages"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := renderRaw(t, defaultRelease, tc.values)
			if err == nil {
				t.Fatalf("helm template accepted %v", tc.values)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error does not name %q: %v", tc.want, err)
			}
		})
	}
}

// TestGolden compares the default render with testdata/default.yaml
// (go test ./test/chart -run TestGolden -update rewrites it). Blank lines
// are ignored: Helm 3 and 4 separate documents differently.
func TestGolden(t *testing.T) {
	out, err := renderRaw(t, defaultRelease, nil)
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "default.yaml")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, out, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got, want := withoutBlankLines(string(out)), withoutBlankLines(string(want)); got != want {
		t.Errorf("the default render differs from %s (rerun with -update if the change is intended):\n%s", golden, diff(want, got))
	}
}

func withoutBlankLines(s string) string {
	var kept []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			kept = append(kept, l)
		}
	}
	return strings.Join(kept, "\n")
}

// diff shows the first lines where want and got differ.
func diff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	shown := 0
	for i := 0; i < max(len(w), len(g)) && shown < 20; i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			b.WriteString("line " + strconv.Itoa(i+1) + ":\n  - " + wl + "\n  + " + gl + "\n")
			shown++
		}
	}
	return b.String()
}
