package audit

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func svcRef(ns, name string) []corev1.ObjectReference {
	return []corev1.ObjectReference{{APIVersion: "v1", Kind: "Service", Namespace: ns, Name: name, UID: types.UID("uid-" + name)}}
}

func podRefs(ns string, names ...string) []corev1.ObjectReference {
	var out []corev1.ObjectReference
	for _, n := range names {
		out = append(out, corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: ns, Name: n, UID: types.UID("uid-" + n)})
	}
	return out
}

// sampleReport has a result of every kind, out of order.
func sampleReport() *Report {
	rep := &Report{
		Header: Header{
			APIVersion: APIVersion, Kind: Kind,
			Settings: Settings{NamespaceMode: "opt-in", ServiceNamespaceMode: "cluster-wide", ServiceGuardMode: "enforce", ClusterDNS: "10.96.0.10"},
			Scanned:  Scanned{Namespaces: 3, Services: 57, Pods: 1204, ServicesJudged: 40, PodsJudged: 1000, ListRequests: 14},
		},
		Notes: []string{"namespace team: namespace annotation netguard.io/service-guard=\"strict\" is not one of enforce, warn, dry-run; using enforce"},
		Results: []Result{
			{Source: Source, Policy: PolicyPods, Rule: RuleMutate, Result: Fail,
				Resources:  podRefs("loki", "distributor-7d9f8c-a", "distributor-7d9f8c-b", "distributor-5b6c4d-c"),
				Properties: map[string]string{PropOwner: "Deployment/distributor", PropChanges: "dns-options,ndots,search-scrub", PropResolver: "glibc"}},
			{Source: Source, Policy: PolicyPods, Rule: RuleNdotsLosesNames, Result: Fail,
				Message:    "netguard v0.3.0 set ndots:2, under which musl no longer resolves names with 2 or more dots such as svc.ns.svc, and this pod's resolver is musl (image nginx:1.27-alpine): pods created by this netguard keep ndots:5, roll the workload out again",
				Resources:  podRefs("gateway", "edge-0"),
				Properties: map[string]string{PropOwner: "StatefulSet/edge"}},
			{Source: Source, Policy: PolicyServiceGuard, Rule: "matches-nothing", Result: Warn,
				Message:    "selector matches no pods and no pod template of a Deployment, StatefulSet, DaemonSet or Rollout in namespace loki: the Service has no endpoints",
				Resources:  svcRef("loki", "old-api"),
				Properties: map[string]string{PropVerdict: "warn", PropMode: "enforce"}},
			{Source: Source, Policy: PolicyServiceGuard, Rule: "revision-subset", Result: Fail,
				Message:    "selector matches 16 of 140 pods of Deployment loki/distributor (only revision 7d9f8c; 124 pods of revision 5b6c4d lack gossip_ring_member=true): roll the label out to all pods before selecting on it, or annotate netguard.io/allow-subset-selector",
				Resources:  svcRef("loki", "distributor"),
				Properties: map[string]string{PropVerdict: "deny", PropMode: "enforce", PropWorkload: "Deployment loki/distributor", PropMatched: "16", PropTotal: "140"}},
			{Source: Source, Policy: PolicyPods, Rule: RuleDNSSidecar, Result: Warn,
				Message:    "Istio captures the pod's DNS (ISTIO_META_DNS_CAPTURE=true)",
				Resources:  podRefs("gateway", "edge-0"),
				Properties: map[string]string{PropOwner: "StatefulSet/edge", PropReason: "istio-dns-capture"}},
			{Source: Source, Policy: PolicyPods, Rule: RuleMutate, Result: Fail,
				Message:    `container "nginx": nginx must resolve through the sidecar: set "resolver 127.0.0.1:8053 valid=10s ipv6=off;" in its configuration`,
				Resources:  podRefs("gateway", "debug"),
				Properties: map[string]string{PropOwner: "Pod/debug", PropChanges: "dns-options,ndots,search-scrub,dns-proxy"}},
			{Source: Source, Policy: PolicyServiceGuard, Rule: "revision-key", Result: Skip,
				Message:    "selector key pod-template-hash names a single revision: the Service would lose its endpoints at the next rollout; select on labels that every revision carries, or annotate netguard.io/allow-subset-selector",
				Resources:  svcRef("gateway", "canary"),
				Properties: map[string]string{PropVerdict: "overridden", PropMode: "enforce", PropOverrideReason: "canary by hand"}},
			{Source: Source, Policy: PolicyPods, Rule: RuleDNSSidecar, Result: Skip,
				Message:    "annotation netguard.io/dns-proxy=false",
				Resources:  podRefs("gateway", "legacy-1", "legacy-2"),
				Properties: map[string]string{PropOwner: "Deployment/legacy", PropReason: "dns-proxy-opted-out"}},
		},
	}
	rep.finish()
	return rep
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func TestFinishOrdersAndCounts(t *testing.T) {
	rep := sampleReport()
	var order []string
	for _, r := range rep.Results {
		order = append(order, r.Namespace()+" "+r.Rule+" "+r.name())
	}
	want := []string{
		"gateway revision-key canary",
		"gateway dns-sidecar Deployment/legacy",
		"gateway mutate Pod/debug",
		"gateway ndots-loses-names StatefulSet/edge",
		"gateway dns-sidecar StatefulSet/edge",
		"loki revision-subset distributor",
		"loki matches-nothing old-api",
		"loki mutate Deployment/distributor",
	}
	if !reflect.DeepEqual(order, want) {
		t.Errorf("order:\n%s\nwant:\n%s", strings.Join(order, "\n"), strings.Join(want, "\n"))
	}
	if rep.Summary != (Summary{Fail: 4, Warn: 2, Skip: 2}) || rep.Summary.Findings() != 6 {
		t.Errorf("summary %+v, want 4 fail, 2 warn, 2 skip", rep.Summary)
	}
}

func TestWriteTable(t *testing.T) {
	var b bytes.Buffer
	if err := sampleReport().WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	golden(t, "table.txt", b.Bytes())
}

func TestWriteTableWithoutFindings(t *testing.T) {
	rep := &Report{Header: Header{Scanned: Scanned{Namespaces: 1, Services: 1, ServicesJudged: 1, Pods: 2, PodsJudged: 2}}}
	rep.finish()
	var b bytes.Buffer
	if err := rep.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	want := "Summary: Service findings: none; pods: none; scanned 1 namespace, 1 Service (1 judged), 2 pods (2 judged).\n"
	if b.String() != want {
		t.Errorf("got %q, want %q", b.String(), want)
	}
}

// TestWriteJSON pins the schema documented in docs/audit.md.
func TestWriteJSON(t *testing.T) {
	rep := sampleReport()
	var b bytes.Buffer
	if err := rep.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	golden(t, "report.json", b.Bytes())
	var back Report
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&back, rep) {
		t.Errorf("the report does not survive a JSON round trip:\n%+v\n%+v", back, *rep)
	}
}

func TestEmptyReportHasEmptyResults(t *testing.T) {
	rep := &Report{Header: Header{APIVersion: APIVersion, Kind: Kind}}
	rep.finish()
	var b bytes.Buffer
	if err := rep.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `"results": []`) {
		t.Errorf("an empty report's results are not an empty list:\n%s", b.String())
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, os.ErrClosed }

func TestWriteTableReportsWriteErrors(t *testing.T) {
	if err := sampleReport().WriteTable(failingWriter{}); err == nil {
		t.Error("a failing writer gave no error")
	}
}
