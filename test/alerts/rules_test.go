package alerts

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// ruleFile is a Prometheus rule file: what promtool reads, and what a
// PrometheusRule's spec holds.
type ruleFile struct {
	Groups []ruleGroup `json:"groups"`
}

type ruleGroup struct {
	Name  string `json:"name"`
	Rules []rule `json:"rules"`
}

type rule struct {
	Alert       string            `json:"alert,omitempty"`
	Record      string            `json:"record,omitempty"`
	Expr        string            `json:"expr"`
	For         string            `json:"for,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// alerts returns the alerting rules of f.
func (f ruleFile) alerts() []rule {
	var out []rule
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				out = append(out, r)
			}
		}
	}
	return out
}

// renderedRules renders the chart and returns the PrometheusRule's spec
// as a rule file, exactly as the chart ships it.
func renderedRules(t *testing.T, extra ...string) ruleFile {
	t.Helper()
	obj := find(t, render(t, extra...), "PrometheusRule")
	spec, ok := obj.Object["spec"]
	if !ok {
		t.Fatal("the PrometheusRule has no spec")
	}
	data, err := yaml.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	var f ruleFile
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		t.Fatalf("the PrometheusRule's spec is not a rule file of alerts: %v", err)
	}
	if len(f.alerts()) == 0 {
		t.Fatal("the PrometheusRule has no alerts")
	}
	return f
}

// writeRules writes the rendered rules as dir/rules.yaml, the name the
// promtool test files load.
func writeRules(t *testing.T, dir string) string {
	t.Helper()
	data, err := yaml.Marshal(renderedRules(t))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// promtool runs promtool in dir and returns its combined output.
func promtool(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, promtoolBin, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestRulesCheck runs `promtool check rules` with its linter on the rules
// the chart renders.
func TestRulesCheck(t *testing.T) {
	needPromtool(t)
	dir := t.TempDir()
	writeRules(t, dir)
	out, err := promtool(t, dir, "check", "rules", "--lint=all", "--lint-fatal", "rules.yaml")
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	t.Logf("promtool check rules:\n%s", out)
}

// testFiles are the promtool unit tests.
func testFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "*.test.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no promtool tests in testdata (%v)", err)
	}
	return files
}

// TestRulesUnitTests runs `promtool test rules` on testdata/*.test.yaml
// against the rules the chart renders.
func TestRulesUnitTests(t *testing.T) {
	needPromtool(t)
	dir := t.TempDir()
	writeRules(t, dir)
	var names []string
	for _, f := range testFiles(t) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), data, 0o644); err != nil {
			t.Fatal(err)
		}
		names = append(names, filepath.Base(f))
	}
	out, err := promtool(t, dir, append([]string{"test", "rules"}, names...)...)
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
	t.Logf("promtool test rules:\n%s", out)
}

// unitTestFile is the part of a promtool test file this package reads.
type unitTestFile struct {
	RuleFiles []string `json:"rule_files"`
	Tests     []struct {
		Name          string `json:"name"`
		AlertRuleTest []struct {
			EvalTime  string           `json:"eval_time"`
			Alertname string           `json:"alertname"`
			ExpAlerts []map[string]any `json:"exp_alerts"`
		} `json:"alert_rule_test"`
	} `json:"tests"`
}

// TestEveryAlertIsTested: each alert the chart renders has a promtool case
// where it fires and one where it stays silent, and every case is about an
// alert the chart has.
func TestEveryAlertIsTested(t *testing.T) {
	fires, silent := map[string][]string{}, map[string][]string{}
	for _, f := range testFiles(t) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var u unitTestFile
		if err := yaml.Unmarshal(data, &u); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if !slices.Equal(u.RuleFiles, []string{"rules.yaml"}) {
			t.Errorf("%s: rule_files %v; it must load only rules.yaml, the chart's rendered rules", f, u.RuleFiles)
		}
		for _, tc := range u.Tests {
			for _, a := range tc.AlertRuleTest {
				where := f + ": " + tc.Name + " at " + a.EvalTime
				if len(a.ExpAlerts) > 0 {
					fires[a.Alertname] = append(fires[a.Alertname], where)
				} else {
					silent[a.Alertname] = append(silent[a.Alertname], where)
				}
			}
		}
	}
	alerts := map[string]bool{}
	for _, a := range renderedRules(t).alerts() {
		alerts[a.Alert] = true
		if len(fires[a.Alert]) == 0 {
			t.Errorf("alert %s has no promtool case where it fires", a.Alert)
		}
		if len(silent[a.Alert]) == 0 {
			t.Errorf("alert %s has no promtool case where it stays silent", a.Alert)
		}
	}
	for name, where := range fires {
		if !alerts[name] {
			t.Errorf("promtool cases test alert %s, which the chart does not have: %v", name, where)
		}
	}
	for name, where := range silent {
		if !alerts[name] {
			t.Errorf("promtool cases test alert %s, which the chart does not have: %v", name, where)
		}
	}
}

const runbookBase = "https://github.com/netguard-io/netguard/blob/main/docs/alerts.md#"

// runbooks returns docs/alerts.md and the text of each of its "## Heading"
// sections, by heading.
func runbooks(t *testing.T) (doc string, sections map[string]string) {
	t.Helper()
	data, err := os.ReadFile("../../docs/alerts.md")
	if err != nil {
		t.Fatal(err)
	}
	sections = map[string]string{}
	var heading string
	for _, line := range strings.Split(string(data), "\n") {
		if h, ok := strings.CutPrefix(line, "## "); ok {
			heading = strings.TrimSpace(h)
			sections[heading] = ""
			continue
		}
		if heading != "" {
			sections[heading] += line + "\n"
		}
	}
	return string(data), sections
}

// TestEveryAlertHasARunbook: each alert links its section of
// docs/alerts.md, which says what it means, what to check and how to fix
// it; each alert has a severity, a summary and a description; and the
// document has no runbook for an alert that is gone.
func TestEveryAlertHasARunbook(t *testing.T) {
	doc, sections := runbooks(t)
	alerts := map[string]bool{}
	for _, a := range renderedRules(t).alerts() {
		alerts[a.Alert] = true
		if want := runbookBase + strings.ToLower(a.Alert); a.Annotations["runbook_url"] != want {
			t.Errorf("%s runbook_url = %q, want %q", a.Alert, a.Annotations["runbook_url"], want)
		}
		section, ok := sections[a.Alert]
		if !ok {
			t.Errorf("docs/alerts.md has no section \"## %s\"", a.Alert)
			continue
		}
		for _, part := range []string{"**What it means.**", "**What to check.**", "**How to fix.**"} {
			if !strings.Contains(section, part) {
				t.Errorf("the runbook of %s lacks %s", a.Alert, part)
			}
		}
		if !strings.Contains(doc, "["+a.Alert+"](#"+strings.ToLower(a.Alert)+")") {
			t.Errorf("the table of docs/alerts.md does not list %s", a.Alert)
		}
		if s := a.Labels["severity"]; s != "warning" && s != "critical" {
			t.Errorf("%s severity %q, want warning or critical", a.Alert, s)
		}
		if a.Annotations["summary"] == "" || a.Annotations["description"] == "" {
			t.Errorf("%s lacks a summary or description: %v", a.Alert, a.Annotations)
		}
	}
	alertHeading := regexp.MustCompile(`^Netguard[A-Za-z]+$`)
	for heading := range sections {
		if alertHeading.MatchString(heading) && !alerts[heading] {
			t.Errorf("docs/alerts.md has a runbook for %s, which the chart does not have", heading)
		}
	}
}

// TestRulesFollowValues: the rules select this release's job and
// Deployment, NetguardDown comes only with the ServiceMonitor whose job it
// watches, and additionalRuleLabels reach every alert.
func TestRulesFollowValues(t *testing.T) {
	byName := func(f ruleFile) map[string]rule {
		m := map[string]rule{}
		for _, a := range f.alerts() {
			m[a.Alert] = a
		}
		return m
	}
	all := byName(renderedRules(t, "fullnameOverride=edge-guard", "metrics.prometheusRule.additionalRuleLabels.team=platform"))
	if got := all["NetguardDown"].Expr; !strings.Contains(got, `job="edge-guard"`) || !strings.Contains(got, `namespace="`+releaseNamespace+`"`) {
		t.Errorf("NetguardDown does not select the release's scrape job: %s", got)
	}
	if got := all["NetguardReplicasUnavailable"].Expr; !strings.Contains(got, `deployment="edge-guard"`) {
		t.Errorf("NetguardReplicasUnavailable does not select the release's Deployment: %s", got)
	}
	for name, a := range all {
		if a.Labels["team"] != "platform" {
			t.Errorf("%s labels %v lack additionalRuleLabels", name, a.Labels)
		}
	}
	without := byName(renderedRules(t, "metrics.serviceMonitor.enabled=false"))
	if _, ok := without["NetguardDown"]; ok {
		t.Error("NetguardDown is rendered without the ServiceMonitor whose job it watches")
	}
	if len(without) != len(all)-1 {
		t.Errorf("without the ServiceMonitor %d alerts, want all but NetguardDown (%d)", len(without), len(all)-1)
	}
}
