package alerts

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// dashboard is the part of a Grafana dashboard this package checks.
type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string `json:"name"`
			Type       string `json:"type"`
			Query      any    `json:"query"`
			Definition string `json:"definition"`
			Datasource *struct {
				UID string `json:"uid"`
			} `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		RefID      string `json:"refId"`
		Expr       string `json:"expr"`
		Datasource *struct {
			UID string `json:"uid"`
		} `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // of a collapsed row
}

// allPanels returns the panels, with those inside collapsed rows.
func (d dashboard) allPanels() []panel {
	var out []panel
	for _, p := range d.Panels {
		out = append(out, p)
		out = append(out, p.Panels...)
	}
	return out
}

// labelValues reads the metric of a Grafana label_values(metric, label) query.
var labelValues = regexp.MustCompile(`^label_values\(([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?),\s*[a-zA-Z_][a-zA-Z0-9_]*\)$`)

const dashboardFile = "../../charts/netguard/dashboards/netguard.json"

// renderedDashboard returns the dashboard of the ConfigMap the chart
// renders; it must be dashboards/netguard.json as it is.
func renderedDashboard(t *testing.T) dashboard {
	t.Helper()
	var cm *unstructured.Unstructured
	for _, o := range render(t) {
		if o.GetKind() == "ConfigMap" && o.GetLabels()["grafana_dashboard"] == "1" {
			cm = o
		}
	}
	if cm == nil {
		t.Fatal("the chart renders no ConfigMap labelled grafana_dashboard=1")
	}
	data, _ := cm.Object["data"].(map[string]any)
	raw, _ := data["netguard.json"].(string)
	file, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(raw) != strings.TrimSpace(string(file)) {
		t.Fatalf("the ConfigMap %s does not hold %s as it is", cm.GetName(), dashboardFile)
	}
	var d dashboard
	if err := json.Unmarshal([]byte(raw), &d); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	return d
}

// TestDashboard: the dashboard is one Grafana imports as it is: a uid, a
// Prometheus data source variable every query uses, panels that fit the
// 24-column grid without overlapping; and it shows what netguard is
// watched for.
func TestDashboard(t *testing.T) {
	d := renderedDashboard(t)
	if d.UID != "netguard" || d.Title == "" || d.SchemaVersion < 36 {
		t.Errorf("uid %q, title %q, schemaVersion %d; want uid netguard, a title, schemaVersion 36 or later", d.UID, d.Title, d.SchemaVersion)
	}
	hasDatasource := false
	for _, v := range d.Templating.List {
		if v.Type == "datasource" && v.Name == "datasource" && v.Query == "prometheus" {
			hasDatasource = true
		}
		if v.Type == "query" && (v.Datasource == nil || v.Datasource.UID != "${datasource}") {
			t.Errorf("variable %s does not query the ${datasource} variable", v.Name)
		}
	}
	if !hasDatasource {
		t.Error("no Prometheus data source variable named datasource")
	}

	ids := map[int]bool{}
	type cell struct{ x, y int }
	taken := map[cell]string{}
	queried := map[string]bool{}
	for _, p := range d.allPanels() {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 || g.Y < 0 {
			t.Errorf("panel %q gridPos %+v is off the 24-column grid", p.Title, g)
		}
		for x := g.X; x < g.X+g.W; x++ {
			for y := g.Y; y < g.Y+g.H; y++ {
				if other, ok := taken[cell{x, y}]; ok {
					t.Errorf("panel %q overlaps panel %q at %d,%d", p.Title, other, x, y)
				}
				taken[cell{x, y}] = p.Title
			}
		}
		if p.Type == "row" {
			continue
		}
		if p.Title == "" || p.Datasource == nil || p.Datasource.UID != "${datasource}" || p.Datasource.Type != "prometheus" {
			t.Errorf("panel %q does not use the ${datasource} variable: %+v", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no queries", p.Title)
		}
		refs := map[string]bool{}
		for _, target := range p.Targets {
			if target.Expr == "" || target.RefID == "" || refs[target.RefID] {
				t.Errorf("panel %q has a query without expr or with a missing or repeated refId %q", p.Title, target.RefID)
			}
			refs[target.RefID] = true
			if target.Datasource == nil || target.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q query %s does not use the ${datasource} variable", p.Title, target.RefID)
			}
			sel, err := selectors(grafanaVariables.Replace(target.Expr))
			if err != nil {
				t.Errorf("panel %q query %s: %v", p.Title, target.RefID, err)
			}
			for name := range sel {
				queried[name] = true
			}
		}
	}
	for _, m := range []string{
		"controller_runtime_webhook_requests_total",         // admissions by result
		"controller_runtime_webhook_latency_seconds_bucket", // latency percentiles
		"netguard_serviceguard_reviews_total",
		"netguard_webhook_errors_total",
		"netguard_pod_mutations_total", // mutations and skips by reason
		"netguard_pod_resolvers_total", // which resolver the DNS rules were chosen for
		"netguard_pod_skips_total",
		"netguard_pod_dns_proxy_skips_total",
		"netguard_serviceguard_findings_total", // guard findings
		"netguard_services_in_conflict",        // conflicts
		"netguard_service_conflicts_total",
		"netguard_dnsproxy_queries_total", // sidecar queries, latency, failures
		"netguard_dnsproxy_request_duration_seconds_bucket",
		"netguard_dnsproxy_responses_total",
		"netguard_dnsproxy_upstream_errors_total",
		"netguard_dnsproxy_upstream_attempts_per_query_sum", // attempts per lookup
		"netguard_dnsproxy_error_replies_replaced_total",
		"netguard_dnsproxy_attempts_held_total",
	} {
		if !queried[m] {
			t.Errorf("no panel shows %s", m)
		}
	}
}
