package reports

import (
	"fmt"
	"testing"

	orv1alpha1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/netguard-io/netguard/audit"
)

func podResult(name string, pods int, outcome audit.Outcome) audit.Result {
	r := audit.Result{Source: audit.Source, Policy: "pod-dns", Rule: audit.RuleMutate, Result: outcome,
		Message: name + " would change", Properties: map[string]string{audit.PropOwner: name}}
	for i := range pods {
		r.Resources = append(r.Resources, corev1.ObjectReference{Kind: "Pod", Namespace: "shop", Name: fmt.Sprintf("%s-%d", name, i)})
	}
	return r
}

func TestReportResultsBoundsSubjectsAndResults(t *testing.T) {
	big := podResult("web", maxResources+25, audit.Fail)
	got := reportResults([]audit.Result{big})
	if len(got) != 1 {
		t.Fatalf("%d results, want 1", len(got))
	}
	if n := len(got[0].Subjects); n != maxResources {
		t.Errorf("%d subjects, want at most %d", n, maxResources)
	}
	if p := got[0].Properties["resources"]; p != fmt.Sprint(maxResources+25) {
		t.Errorf("property resources = %q, want the full count %d", p, maxResources+25)
	}
	if _, ok := big.Properties["resources"]; ok {
		t.Error("the audit result's properties were changed")
	}

	var many []audit.Result
	for i := range maxResults + 10 {
		many = append(many, podResult(fmt.Sprintf("app%d", i), 1, audit.Warn))
	}
	if n := len(reportResults(many)); n != maxResults {
		t.Errorf("%d results, want at most %d", n, maxResults)
	}
}

func TestSummaryCountsEachOutcome(t *testing.T) {
	got := summary(reportResults([]audit.Result{
		podResult("a", 1, audit.Fail), podResult("b", 1, audit.Fail), podResult("c", 1, audit.Warn),
		podResult("d", 1, audit.Pass), podResult("e", 1, audit.Skip),
	}))
	if want := (orv1alpha1.ReportSummary{Fail: 2, Warn: 1, Pass: 1, Skip: 1}); got != want {
		t.Fatalf("summary %+v, want %+v", got, want)
	}
}

// A result keeps the time it was first reported, so that rewriting a
// Report for another result's sake does not make old findings look new;
// the hash that decides whether to write ignores timestamps.
func TestStampKeepsFirstReportedTime(t *testing.T) {
	first, later := metav1.Timestamp{Seconds: 1000}, metav1.Timestamp{Seconds: 2000}
	old := reportResults([]audit.Result{podResult("a", 1, audit.Fail)})
	stamp(old, nil, first)
	existing := &orv1alpha1.Report{Results: old}

	now := reportResults([]audit.Result{podResult("a", 1, audit.Fail), podResult("b", 1, audit.Warn)})
	stamp(now, existing, later)
	if now[0].Timestamp != first {
		t.Errorf("unchanged result stamped %v, want the first time %v", now[0].Timestamp, first)
	}
	if now[1].Timestamp != later {
		t.Errorf("new result stamped %v, want now %v", now[1].Timestamp, later)
	}

	changed := reportResults([]audit.Result{podResult("a", 1, audit.Warn)})
	stamp(changed, existing, later)
	if changed[0].Timestamp != later {
		t.Errorf("changed result stamped %v, want now %v", changed[0].Timestamp, later)
	}
	if hashOf(old) == hashOf(changed) {
		t.Error("a changed outcome hashes like the old one")
	}
	restamped := reportResults([]audit.Result{podResult("a", 1, audit.Fail)})
	stamp(restamped, nil, later)
	if hashOf(old) != hashOf(restamped) {
		t.Error("the same results at another time hash differently")
	}
}
