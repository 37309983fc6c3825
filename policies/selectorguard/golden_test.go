package selectorguard

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/netguard-io/netguard/config"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// scenario is a testdata/*.yaml file: a Service (and the one it replaces),
// the workloads of its namespace, and the mode.
type scenario struct {
	Mode       config.GuardMode   `json:"mode"`
	Service    *corev1.Service    `json:"service"`
	OldService *corev1.Service    `json:"oldService,omitempty"`
	Workloads  []scenarioWorkload `json:"workloads"`
}

type scenarioWorkload struct {
	Kind             Kind              `json:"kind"`
	Namespace        string            `json:"namespace"`
	Name             string            `json:"name"`
	TemplateLabels   map[string]string `json:"templateLabels,omitempty"`
	TemplateRevision string            `json:"templateRevision,omitempty"`
	Revisions        []struct {
		Revision string            `json:"revision"`
		Pods     int               `json:"pods"`
		Labels   map[string]string `json:"labels"`
	} `json:"revisions"`
}

func (s scenario) view() StaticView {
	var v StaticView
	for _, sw := range s.Workloads {
		w := Workload{Kind: sw.Kind, Namespace: sw.Namespace, Name: sw.Name, TemplateLabels: sw.TemplateLabels, TemplateRevision: sw.TemplateRevision}
		for _, r := range sw.Revisions {
			for i := range r.Pods {
				w.Pods = append(w.Pods, PodInfo{Name: fmt.Sprintf("%s-%s-%d", sw.Name, r.Revision, i), Labels: r.Labels, Revision: r.Revision})
			}
		}
		v = append(v, w)
	}
	return v
}

// TestGolden runs Check and Decide on every testdata scenario and compares
// what an operator would see with testdata/NAME.golden. Run with -update
// to rewrite the golden files after a deliberate change of wording.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenarios: %v", err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var s scenario
			if err := yaml.UnmarshalStrict(data, &s); err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			findings := Check(s.Service, s.OldService, s.view())
			d := Decide(findings, s.Mode, s.Service)

			var out bytes.Buffer
			fmt.Fprintf(&out, "allowed: %v\n", d.Allowed)
			for _, o := range d.Outcomes {
				fmt.Fprintf(&out, "finding: rule=%s action=%s field=%s workload=%q matched=%d total=%d\n  %s\n",
					o.Finding.Rule, o.Action, o.Finding.Field, o.Finding.Workload, o.Finding.Matched, o.Finding.Total, o.Finding.Message)
			}
			for _, w := range d.Warnings {
				fmt.Fprintf(&out, "warning: %s\n", w)
			}
			if d.Err != nil {
				fmt.Fprintf(&out, "denied: %s\n", d.Err.Error())
			}

			golden := strings.TrimSuffix(file, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run TestGolden -update)", err)
			}
			if !bytes.Equal(out.Bytes(), want) {
				t.Errorf("%s differs from what Check and Decide give:\n--- got\n%s--- want\n%s", golden, out.String(), want)
			}
		})
	}
}
