package alerts

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/promql/parser"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/netguard-io/netguard/dnsproxy"
	// What `netguard serve` links registers its collectors with
	// controller-runtime's registry: the packages serve wires (the
	// admission handlers, the controllers and the cluster view) and the
	// serving certificate's metrics.
	_ "github.com/netguard-io/netguard/serve"
	_ "github.com/netguard-io/netguard/serving/certs"
)

// notNetguards are the metrics the rules may use that netguard does not
// export, each with the reason. Keep it short: everything else must come
// from netguard's registries.
var notNetguards = map[string]string{
	"up": "Prometheus's own health of a scrape target: NetguardDown watches the ServiceMonitor's job",
	"kube_deployment_status_replicas_unavailable": "kube-state-metrics' view of netguard's Deployment: NetguardReplicasUnavailable",
	"apiserver_admission_webhook_fail_open_count": "the API server's count of calls to a webhook it let through unmade: NetguardWebhookFailedOpen",
}

// targetLabels are the labels Prometheus and prometheus-operator put on
// every scraped series, besides the metric's own, and dns_sidecar, the
// sidecar's mode, which the chart's PodMonitor copies from the pod's
// netguard.io/dns-sidecar label.
var targetLabels = []string{"job", "instance", "namespace", "pod", "container", "service", "endpoint", "dns_sidecar"}

// metric is what a registry says about one exported metric.
type metric struct {
	labels []string
	// kind is the type, from the gathered series; nil when the metric has
	// no series yet (a Vec without children).
	kind *dto.MetricType
}

// exported maps metric names to what the registries say about them.
type exported map[string]metric

var descFields = regexp.MustCompile(`^Desc\{fqName: "([^"]+)", .*variableLabels: \{([^}]*)\}\}$`)

// add describes and gathers reg: Describe names every registered metric,
// also Vecs without children, which Gather leaves out; Gather gives the
// types.
func (e exported) add(t *testing.T, reg prometheus.Gatherer) {
	t.Helper()
	c, ok := reg.(prometheus.Collector)
	if !ok {
		t.Fatalf("registry %T cannot describe its metrics", reg)
	}
	ch := make(chan *prometheus.Desc)
	go func() {
		c.Describe(ch)
		close(ch)
	}()
	for d := range ch {
		// The name and labels of a Desc are unexported; its String is
		// the documented way to read them.
		m := descFields.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("cannot read the name of %s", d)
		}
		var labels []string
		for _, l := range strings.Split(m[2], ",") {
			if l = strings.TrimSuffix(strings.TrimPrefix(l, "c("), ")"); l != "" {
				labels = append(labels, l)
			}
		}
		e[m[1]] = metric{labels: labels}
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("gathering: %v", err)
	}
	for _, f := range families {
		m, ok := e[f.GetName()]
		if !ok {
			t.Fatalf("%s is gathered but not described", f.GetName())
		}
		kind := f.GetType()
		m.kind = &kind
		e[f.GetName()] = m
	}
}

// netguardMetrics returns what `netguard serve` and the netguard-dns sidecar
// export, from their registries.
func netguardMetrics(t *testing.T) exported {
	t.Helper()
	// controller-runtime's webhook metrics are Vecs by path: serve one
	// admission request through a webhook server, as the API server
	// would, so that they have a series and so a type.
	srv := ctrlwebhook.NewServer(ctrlwebhook.Options{})
	srv.Register("/netguard-alerts-test", &ctrlwebhook.Admission{Handler: admission.HandlerFunc(
		func(_ context.Context, _ admission.Request) admission.Response { return admission.Allowed("") })})
	review, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request:  &admissionv1.AdmissionRequest{UID: "1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPost, "/netguard-alerts-test", bytes.NewReader(review))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	srv.WebhookMux().ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("admission request: HTTP %d %s", rec.Code, rec.Body)
	}

	e := exported{}
	e.add(t, ctrlmetrics.Registry)

	reg := dnsproxy.NewRegistry()
	if _, err := dnsproxy.New(dnsproxy.Config{Upstreams: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.53:53")}}, logr.Discard(), reg); err != nil {
		t.Fatal(err)
	}
	e.add(t, reg)
	return e
}

// check returns why name, used with the label names in matchers, is not
// an exported metric ("" when it is).
func (e exported) check(name string, matchers []string) string {
	if _, ok := notNetguards[name]; ok {
		return ""
	}
	m, ok := e[name]
	if !ok {
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			base, cut := strings.CutSuffix(name, suffix)
			if !cut {
				continue
			}
			b, found := e[base]
			if !found {
				continue
			}
			if b.kind == nil {
				return fmt.Sprintf("%s: %s has no series, so its type is unknown; give it one in netguardMetrics", name, base)
			}
			if *b.kind == dto.MetricType_HISTOGRAM || *b.kind == dto.MetricType_SUMMARY && suffix != "_bucket" {
				m, ok = b, true
				if suffix == "_bucket" {
					m.labels = append(slices.Clone(m.labels), "le")
				}
				break
			}
			return fmt.Sprintf("%s: %s is a %s, it has no %s series", name, base, b.kind, suffix)
		}
	}
	if !ok {
		return name + " is not a metric netguard or controller-runtime exports"
	}
	for _, l := range matchers {
		if !slices.Contains(m.labels, l) && !slices.Contains(targetLabels, l) {
			return fmt.Sprintf("%s has no label %q (its labels: %v)", name, l, m.labels)
		}
	}
	return ""
}

// selectors returns the metric names an expression selects, each with the
// label names it matches on.
func selectors(expr string) (map[string][]string, error) {
	node, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		var labels []string
		for _, m := range vs.LabelMatchers {
			if m.Name == "__name__" {
				name = m.Value
				continue
			}
			labels = append(labels, m.Name)
		}
		out[name] = append(out[name], labels...)
		return nil
	})
	return out, nil
}

// grafanaVariables are the dashboard's interval variables, replaced by a
// duration before parsing.
var grafanaVariables = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h")

// TestMetricNames: every metric the rules and the dashboard query is one
// netguard's registries hold (histogram series for histograms only), with
// the labels the queries match on, or one of notNetguards.
func TestMetricNames(t *testing.T) {
	e := netguardMetrics(t)

	// The check can fail.
	for name, matchers := range map[string][]string{
		"netguard_pod_mutation_total":               nil,
		"netguard_pod_mutations_total_bucket":       nil,
		"netguard_pod_mutations_total":              {"reason"},
		"controller_runtime_webhook_latency_bucket": nil,
	} {
		if e.check(name, matchers) == "" {
			t.Errorf("the check accepts %s %v", name, matchers)
		}
	}

	exprs := map[string]string{} // where -> PromQL
	for _, a := range renderedRules(t).alerts() {
		exprs["alert "+a.Alert] = a.Expr
	}
	d := renderedDashboard(t)
	for _, p := range d.allPanels() {
		for _, target := range p.Targets {
			exprs[fmt.Sprintf("dashboard panel %q %s", p.Title, target.RefID)] = grafanaVariables.Replace(target.Expr)
		}
	}
	for _, v := range d.Templating.List {
		if m := labelValues.FindStringSubmatch(v.Definition); m != nil {
			exprs["dashboard variable "+v.Name] = m[1]
		}
	}

	used := map[string]bool{}
	var where []string
	for w := range exprs {
		where = append(where, w)
	}
	sort.Strings(where)
	for _, w := range where {
		sel, err := selectors(exprs[w])
		if err != nil {
			t.Errorf("%s: PromQL does not parse: %v\n%s", w, err, exprs[w])
			continue
		}
		if len(sel) == 0 {
			t.Errorf("%s selects no metric: %s", w, exprs[w])
		}
		for name, matchers := range sel {
			if problem := e.check(name, matchers); problem != "" {
				t.Errorf("%s: %s", w, problem)
			}
			used[name] = true
		}
	}
	for name, why := range notNetguards {
		if !used[name] {
			t.Errorf("exception %s (%s) is no longer used: drop it", name, why)
		}
	}
	t.Logf("%d queries use %d metrics; %d metrics exported", len(exprs), len(used), len(e))
}
