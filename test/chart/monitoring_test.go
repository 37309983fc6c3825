package chart

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/netguard-io/netguard/policies/podpolicy"
	"github.com/netguard-io/netguard/test/framework"
)

// prometheusOperatorCRDs are the CRDs of the chart's ServiceMonitor,
// PodMonitor and PrometheusRule, as prometheus-operator v0.85.0 ships them
// (example/prometheus-operator-crd in its Go module), so the API server
// checks those objects against the real schemas.
const prometheusOperatorCRDs = "testdata/prometheus-operator-crds"

// installPrometheusOperatorCRDs installs prometheusOperatorCRDs.
func installPrometheusOperatorCRDs(cp *framework.ControlPlane) error {
	if _, err := envtest.InstallCRDs(cp.Config, envtest.CRDInstallOptions{Paths: []string{prometheusOperatorCRDs}, ErrorIfPathMissing: true}); err != nil {
		return fmt.Errorf("installing prometheus-operator's CRDs from %s: %w", prometheusOperatorCRDs, err)
	}
	return nil
}

// monitoringValues turn on everything the chart has for monitoring.
var monitoringValues = map[string]any{"metrics": map[string]any{
	"serviceMonitor": map[string]any{"enabled": true, "labels": map[string]any{"release": "kube-prometheus-stack"}},
	"podMonitor":     map[string]any{"enabled": true, "interval": "15s", "labels": map[string]any{"release": "kube-prometheus-stack"}},
	"prometheusRule": map[string]any{
		"enabled":              true,
		"labels":               map[string]any{"release": "kube-prometheus-stack"},
		"additionalRuleLabels": map[string]any{"team": "platform"},
	},
	"dashboard": map[string]any{"enabled": true, "annotations": map[string]any{"grafana_folder": "netguard"}},
}}

// checkMonitoring is the valueCases check of monitoringValues: the
// monitors scrape what netguard serves, the PodMonitor selects the pods the
// pod webhook gives the sidecar, and the dashboard is the chart's file.
func checkMonitoring(t *testing.T, r rendered) {
	r.wantKinds(t, "ServiceMonitor", "PodMonitor", "PrometheusRule")

	var sm struct {
		Metadata metav1.ObjectMeta
		Spec     struct {
			Selector  metav1.LabelSelector
			Endpoints []struct{ Port string }
		}
	}
	getCustom(t, r, "ServiceMonitor", r.fullname, &sm)
	if !selects(t, &sm.Spec.Selector, r.service.Labels) || len(sm.Spec.Endpoints) != 1 || servicePort(r.service, sm.Spec.Endpoints[0].Port) == nil {
		t.Errorf("ServiceMonitor %+v does not scrape a port of the Service %v", sm.Spec, r.service.Spec.Ports)
	}

	// The PodMonitor selects a pod the pod webhook gave the sidecar, on
	// the sidecar's port, and not a pod without it.
	var pm struct {
		Metadata metav1.ObjectMeta
		Spec     struct {
			Selector            metav1.LabelSelector
			NamespaceSelector   struct{ Any bool }
			PodMetricsEndpoints []struct {
				Port     string
				Interval string
			}
		}
	}
	getCustom(t, r, "PodMonitor", r.fullname+"-dns", &pm)
	web := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", Labels: map[string]string{"app": "web"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "nginx", Image: "nginx:1.27"}}},
	}
	shop := podpolicy.NamespaceInfo{Name: "shop", Labels: map[string]string{podpolicy.LabelInject: podpolicy.LabelInjectEnabled}}
	res := podpolicy.Mutate(web, podpolicy.Env{Namespace: shop, ClusterDNS: "10.96.0.10", Version: "test"}, r.config)
	sidecar := slices.IndexFunc(res.Pod.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == podpolicy.DNSProxyContainerName })
	if sidecar < 0 {
		t.Fatalf("the chart's settings give an nginx pod no sidecar (skipped: %q, sidecar skipped: %q)", res.Skipped, res.DNSProxySkipped)
	}
	if !selects(t, &pm.Spec.Selector, res.Pod.Labels) {
		t.Errorf("PodMonitor selector %+v does not select a pod with the sidecar, labelled %v", pm.Spec.Selector, res.Pod.Labels)
	}
	if selects(t, &pm.Spec.Selector, web.Labels) {
		t.Errorf("PodMonitor selector %+v selects pods without the sidecar", pm.Spec.Selector)
	}
	if !pm.Spec.NamespaceSelector.Any {
		t.Error("PodMonitor does not look in every namespace; sidecars run in the teams' namespaces")
	}
	ports := res.Pod.Spec.InitContainers[sidecar].Ports
	if len(pm.Spec.PodMetricsEndpoints) != 1 || len(ports) != 1 || pm.Spec.PodMetricsEndpoints[0].Port != ports[0].Name {
		t.Errorf("PodMonitor endpoints %+v do not scrape the sidecar's port %+v", pm.Spec.PodMetricsEndpoints, ports)
	} else if pm.Spec.PodMetricsEndpoints[0].Interval != "15s" {
		t.Errorf("PodMonitor interval %q, want the value 15s", pm.Spec.PodMetricsEndpoints[0].Interval)
	}
	for kind, name := range map[string]string{"ServiceMonitor": r.fullname, "PodMonitor": r.fullname + "-dns", "PrometheusRule": r.fullname} {
		if obj := r.objs.find(kind, name); obj != nil && obj.GetLabels()["release"] != "kube-prometheus-stack" {
			t.Errorf("%s lacks the labels of its value: %v", kind, obj.GetLabels())
		}
	}

	var rule struct {
		Spec struct {
			Groups []struct {
				Name  string
				Rules []struct {
					Alert  string
					Labels map[string]string
				}
			}
		}
	}
	getCustom(t, r, "PrometheusRule", r.fullname, &rule)
	alerts := 0
	for _, g := range rule.Spec.Groups {
		for _, a := range g.Rules {
			alerts++
			if a.Labels["team"] != "platform" {
				t.Errorf("alert %s lacks additionalRuleLabels: %v", a.Alert, a.Labels)
			}
		}
	}
	if alerts == 0 {
		t.Error("the PrometheusRule has no alerts")
	}

	cm := dashboardConfigMap(t, r.objs)
	if cm.Annotations["grafana_folder"] != "netguard" {
		t.Errorf("dashboard ConfigMap annotations %v lack the value's", cm.Annotations)
	}
	want, err := os.ReadFile(chartDir + "/dashboards/netguard.json")
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(cm.Data["netguard.json"]) != strings.TrimSpace(string(want)) {
		t.Error("the dashboard ConfigMap does not hold dashboards/netguard.json as it is")
	}
	if !json.Valid([]byte(cm.Data["netguard.json"])) {
		t.Error("the dashboard is not JSON")
	}
}

// checkAlertsOnly is the valueCases check of the PrometheusRule without
// the ServiceMonitor: no NetguardDown, whose scrape job would not exist.
func checkAlertsOnly(t *testing.T, r rendered) {
	r.wantKinds(t, "PrometheusRule")
	r.wantNoKinds(t, "ServiceMonitor", "PodMonitor")
	if cm := findDashboard(r.objs); cm != nil {
		t.Errorf("dashboard ConfigMap %s rendered while off", cm.GetName())
	}
	rule := r.objs.find("PrometheusRule", r.fullname)
	if rule == nil {
		t.Fatalf("no PrometheusRule %s", r.fullname)
	}
	if raw, _ := json.Marshal(rule.Object); strings.Contains(string(raw), "NetguardDown") {
		t.Error("NetguardDown is rendered without the ServiceMonitor whose job it watches")
	}
}

// getCustom converts a rendered object without Go types in this module
// into into, failing t when the chart did not render it.
func getCustom(t *testing.T, r rendered, kind, name string, into any) {
	t.Helper()
	obj := r.objs.find(kind, name)
	if obj == nil {
		t.Fatalf("the chart renders no %s %s; it renders %v", kind, name, r.objs.names())
	}
	raw, err := json.Marshal(obj.Object)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, into); err != nil {
		t.Fatalf("%s %s: %v", kind, name, err)
	}
}

// findDashboard returns the rendered ConfigMap that holds the dashboard.
func findDashboard(objs objects) *unstructured.Unstructured {
	for _, o := range objs.ofKind("ConfigMap") {
		if data, ok := o.Object["data"].(map[string]any); ok && data["netguard.json"] != nil {
			return o
		}
	}
	return nil
}

func dashboardConfigMap(t *testing.T, objs objects) corev1.ConfigMap {
	t.Helper()
	obj := findDashboard(objs)
	if obj == nil {
		t.Fatalf("no dashboard ConfigMap; the chart renders %v", objs.names())
	}
	var cm corev1.ConfigMap
	if err := json.Unmarshal(mustJSON(t, obj.Object), &cm); err != nil {
		t.Fatal(err)
	}
	return cm
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestMonitoringIsOffByDefault: without the values, the chart renders none
// of the monitoring objects, so an install without prometheus-operator's
// CRDs works.
func TestMonitoringIsOffByDefault(t *testing.T) {
	objs := render(t, defaultRelease, nil)
	for _, kind := range []string{"ServiceMonitor", "PodMonitor", "PrometheusRule"} {
		if got := objs.ofKind(kind); len(got) > 0 {
			t.Errorf("%s rendered by default: %v", kind, got.names())
		}
	}
	if cm := findDashboard(objs); cm != nil {
		t.Errorf("dashboard ConfigMap %s rendered by default", cm.GetName())
	}
}

// TestDashboardLabelAndNamespace: the ConfigMap carries the label Grafana's
// sidecar is configured to look for, in the namespace it watches.
func TestDashboardLabelAndNamespace(t *testing.T) {
	objs := render(t, defaultRelease, map[string]any{"metrics": map[string]any{"dashboard": map[string]any{
		"enabled": true, "label": "grafana.example/dashboard", "labelValue": "netguard", "namespace": "monitoring",
	}}})
	cm := dashboardConfigMap(t, objs)
	if cm.Labels["grafana.example/dashboard"] != "netguard" || cm.Namespace != "monitoring" {
		t.Errorf("dashboard ConfigMap %s/%s labels %v; want namespace monitoring and grafana.example/dashboard=netguard", cm.Namespace, cm.Name, cm.Labels)
	}
	if _, ok := cm.Labels["grafana_dashboard"]; ok {
		t.Error("the default label is set too")
	}
}

// TestMonitoringSchema: values.schema.json rejects mistakes in the
// monitoring values at install time.
func TestMonitoringSchema(t *testing.T) {
	cases := map[string]struct {
		metrics map[string]any
		want    string // in helm's error
	}{
		"enabled not a boolean":   {map[string]any{"podMonitor": map[string]any{"enabled": "yes"}}, "enabled"},
		"unknown podMonitor key":  {map[string]any{"podMonitor": map[string]any{"port": 9153}}, "port"},
		"bad podMonitor interval": {map[string]any{"podMonitor": map[string]any{"interval": "30 seconds"}}, "interval"},
		"unknown prometheusRule":  {map[string]any{"prometheusRule": map[string]any{"rules": []any{}}}, "rules"},
		"rule label not a string": {map[string]any{"prometheusRule": map[string]any{"additionalRuleLabels": map[string]any{"tier": 1}}}, "tier"},
		"dashboard label invalid": {map[string]any{"dashboard": map[string]any{"label": "grafana dashboard"}}, "label"},
		"dashboard value invalid": {map[string]any{"dashboard": map[string]any{"labelValue": "-1-"}}, "labelValue"},
		"dashboard namespace bad": {map[string]any{"dashboard": map[string]any{"namespace": "Monitoring"}}, "namespace"},
		"unknown metrics sub-key": {map[string]any{"grafanaDashboard": map[string]any{"enabled": true}}, "grafanaDashboard"},
		"labelValue not a string": {map[string]any{"dashboard": map[string]any{"labelValue": 1}}, "labelValue"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := renderRaw(t, defaultRelease, map[string]any{"metrics": tc.metrics})
			if err == nil {
				t.Fatalf("helm template accepted metrics %v", tc.metrics)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error does not name %q: %v", tc.want, err)
			}
		})
	}
}

// TestPrometheusOperatorSchemasAreEnforced makes sure the apply check of
// the monitoring objects can fail: the API server rejects a PrometheusRule
// whose rule has no expr, and a PodMonitor with a field of the wrong type.
func TestPrometheusOperatorSchemasAreEnforced(t *testing.T) {
	needControlPlane(t)
	ctx := context.Background()
	for name, obj := range map[string]map[string]any{
		"rule without expr": {
			"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
			"metadata": map[string]any{"name": "no-expr", "namespace": "default"},
			"spec":     map[string]any{"groups": []any{map[string]any{"name": "g", "rules": []any{map[string]any{"alert": "A"}}}}},
		},
		"endpoint interval not a duration": {
			"apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor",
			"metadata": map[string]any{"name": "bad-interval", "namespace": "default"},
			"spec": map[string]any{
				"selector":            map[string]any{},
				"podMetricsEndpoints": []any{map[string]any{"port": "dns-metrics", "interval": "often"}},
			},
		},
	} {
		t.Run(name, func(t *testing.T) {
			err := cp.Client.Create(ctx, &unstructured.Unstructured{Object: obj})
			if err == nil {
				t.Fatal("the API server accepted it: prometheus-operator's schemas are not in force")
			}
			if !apierrors.IsInvalid(err) {
				t.Fatalf("rejected for another reason: %v", err)
			}
		})
	}
}

// TestServingCertificateMetricsOfCertDir runs netguard serve as the chart
// runs it with cert-manager (a cert-dir) and reads /metrics as Prometheus
// would: the gauges are the validity of the certificate in the cert-dir.
func TestServingCertificateMetricsOfCertDir(t *testing.T) {
	needControlPlane(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := cp.StartServer(ctx, netguardBin, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("stopping netguard serve: %v", err)
		}
	})
	crt, err := os.ReadFile(filepath.Join(cp.CertDir, "tls.crt"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(crt)
	if block == nil {
		t.Fatalf("no certificate in %s/tls.crt", cp.CertDir)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}

	resp, err := http.Get("http://" + s.MetricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]time.Time{
		"netguard_tls_serving_certificate_expiration_timestamp_seconds": cert.NotAfter,
		"netguard_tls_serving_certificate_not_before_timestamp_seconds": cert.NotBefore,
	} {
		got, ok := sampleValue(string(body), name)
		if !ok {
			t.Errorf("/metrics has no %s", name)
		} else if got != float64(want.Unix()) {
			t.Errorf("%s = %v, want %d (%s)", name, got, want.Unix(), want)
		}
	}
}

// sampleValue returns the value of the label-less sample name in a
// Prometheus text exposition.
func sampleValue(exposition, name string) (float64, bool) {
	for _, line := range strings.Split(exposition, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f, err == nil
		}
	}
	return 0, false
}
