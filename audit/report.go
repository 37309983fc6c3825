package audit

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"io"
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/netguard-io/netguard/config"
)

// Identity of the report.
const (
	// APIVersion versions the JSON schema of Report.
	APIVersion = "netguard.io/v1alpha1"
	// Kind names the report.
	Kind = "AuditReport"
	// Source is every result's source.
	Source = "netguard"
)

// Policies: the two features whose results the report holds.
const (
	// PolicyServiceGuard is the Service selector guard; its rules are the
	// selectorguard.RuleID values.
	PolicyServiceGuard = "service-selector-guard"
	// PolicyPods is the pod policies (DNS hardening and the DNS sidecar).
	PolicyPods = "pod-policies"
)

// RuleSelector is the rule of a pass result of PolicyServiceGuard: the
// Service's selector, judged whole.
const RuleSelector = "selector"

// Rules of PolicyPods.
const (
	// RuleMutate: netguard would change the pod if it were created now
	// (property changes lists what).
	RuleMutate = "mutate"
	// RuleDNSSidecar: an nginx pod runs without the DNS sidecar and netguard
	// would not add it (property reason says why).
	RuleDNSSidecar = "dns-sidecar"
	// RuleNdotsLosesNames: a running pod got from an earlier netguard an
	// ndots under which its resolver (musl, or one netguard cannot tell)
	// loses names such as svc.ns.svc; rolling it out again fixes it.
	RuleNdotsLosesNames = "ndots-loses-names"
)

// Outcome is a result's result, as in OpenReports.
type Outcome string

// Outcomes.
const (
	// Fail: netguard would deny the Service or change the pod.
	Fail Outcome = "fail"
	// Warn: netguard would warn about it.
	Warn Outcome = "warn"
	// Skip: a finding that an exception covers: a Service admitted by
	// netguard.io/allow-subset-selector, an nginx pod opted out of the
	// sidecar. Listed, but not counted as a finding.
	Skip Outcome = "skip"
	// Pass: a Service judged without findings (only with Options.Passes,
	// for Reports).
	Pass Outcome = "pass"
)

// Verdict is what the Service guard would do with a finding at admission
// (property verdict of PolicyServiceGuard results).
type Verdict string

// Verdicts.
const (
	VerdictDeny       Verdict = "deny"
	VerdictWarn       Verdict = "warn"
	VerdictOverridden Verdict = "overridden"
	VerdictDryRun     Verdict = "dry-run"
)

// Keys of Result.Properties.
const (
	// PropVerdict is the Verdict of a Service result.
	PropVerdict = "verdict"
	// PropMode is the guard's mode for the Service's namespace.
	PropMode = "mode"
	// PropWorkload names the workload a Service finding concerns.
	PropWorkload = "workload"
	// PropMatched and PropTotal are the workload's live pods the selector
	// matches, and all of its live pods.
	PropMatched = "matched"
	PropTotal   = "total"
	// PropOverrideReason is the value of netguard.io/allow-subset-selector.
	PropOverrideReason = "overrideReason"
	// PropOwner is the workload of a pod result's pods: "Deployment/web",
	// or "Pod/NAME" for a pod without a controller.
	PropOwner = "owner"
	// PropChanges lists, comma-separated, what netguard would apply:
	// dns-options, ndots, search-scrub, dns-proxy.
	PropChanges = "changes"
	// PropResolver is the resolver a pod result's DNS rules were chosen
	// for: glibc, musl, go or unknown (config.Resolver).
	PropResolver = "resolver"
	// PropReason is the short name of why an nginx pod would not get the
	// sidecar, e.g. istio-dns-capture.
	PropReason = "reason"
)

// Report is the outcome of a scan.
type Report struct {
	Header
	// Results are ordered by namespace, Service results before pod results,
	// then by Service or owner name.
	Results []Result `json:"results"`
	// Notes say what limited the scan, e.g. an unknown cluster DNS IP.
	Notes []string `json:"notes,omitempty"`
}

// Header is what a Report says besides its results and notes.
type Header struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	// Namespace is the one namespace scanned (-n); empty for all.
	Namespace string   `json:"namespace,omitempty"`
	Settings  Settings `json:"settings"`
	Scanned   Scanned  `json:"scanned"`
	Summary   Summary  `json:"summary"`
}

// Settings are the settings the scan judged with.
type Settings struct {
	// NamespaceMode selects the namespaces whose pods are judged.
	NamespaceMode config.NamespaceMode `json:"namespaceMode"`
	// ServiceNamespaceMode selects the namespaces whose Services are judged.
	ServiceNamespaceMode config.NamespaceMode `json:"serviceNamespaceMode"`
	// ServiceGuardMode is the guard's configured mode, or "disabled".
	ServiceGuardMode string `json:"serviceGuardMode"`
	// ClusterDNS is the cluster DNS IP pods were judged with; empty when
	// unknown (see Notes).
	ClusterDNS string `json:"clusterDNS"`
}

// Scanned counts what the scan read and judged.
type Scanned struct {
	Namespaces int `json:"namespaces"`
	// Services and Pods are the objects read.
	Services int `json:"services"`
	Pods     int `json:"pods"`
	// ServicesJudged are the Services the guard judged: in a selected
	// namespace, with a selector, not ExternalName.
	ServicesJudged int `json:"servicesJudged"`
	// PodsJudged are the running or pending pods of selected namespaces.
	PodsJudged int `json:"podsJudged"`
	// ListRequests is the number of list requests (pages) made.
	ListRequests int `json:"listRequests"`
}

// Summary counts the results by outcome.
type Summary struct {
	Fail int `json:"fail"`
	Warn int `json:"warn"`
	Skip int `json:"skip"`
	Pass int `json:"pass,omitempty"`
}

// Findings is the number of results that are findings (fail or warn).
func (s Summary) Findings() int { return s.Fail + s.Warn }

// Result is one finding, in the shape of an OpenReports result.
type Result struct {
	Source  string  `json:"source"`
	Policy  string  `json:"policy"`
	Rule    string  `json:"rule"`
	Result  Outcome `json:"result"`
	Message string  `json:"message"`
	// Resources are the Service, or the pods, the result is about.
	Resources  []corev1.ObjectReference `json:"resources"`
	Properties map[string]string        `json:"properties,omitempty"`
}

// Namespace is the namespace of the result's resources.
func (r *Result) Namespace() string {
	if len(r.Resources) == 0 {
		return ""
	}
	return r.Resources[0].Namespace
}

// name orders results of one namespace and policy.
func (r *Result) name() string {
	if o := r.Properties[PropOwner]; o != "" {
		return o
	}
	if len(r.Resources) == 0 {
		return ""
	}
	return r.Resources[0].Name
}

// finish orders the results and counts them.
func (rep *Report) finish() {
	policyOrder := func(p string) int {
		if p == PolicyServiceGuard {
			return 0
		}
		return 1
	}
	// Stable: a Service's findings keep the guard's order.
	slices.SortStableFunc(rep.Results, func(a, b Result) int {
		if c := cmp.Or(
			cmp.Compare(a.Namespace(), b.Namespace()),
			cmp.Compare(policyOrder(a.Policy), policyOrder(b.Policy)),
			cmp.Compare(a.name(), b.name()),
		); c != 0 || a.Policy == PolicyServiceGuard {
			return c
		}
		// Pod results come from a map: order them fully.
		return cmp.Or(
			cmp.Compare(podRuleOrder(a.Rule), podRuleOrder(b.Rule)),
			cmp.Compare(a.Properties[PropChanges], b.Properties[PropChanges]),
			cmp.Compare(a.Message, b.Message),
			cmp.Compare(a.Resources[0].Name, b.Resources[0].Name),
		)
	})
	rep.Summary = Summary{}
	for _, r := range rep.Results {
		switch r.Result {
		case Fail:
			rep.Summary.Fail++
		case Warn:
			rep.Summary.Warn++
		case Skip:
			rep.Summary.Skip++
		case Pass:
			rep.Summary.Pass++
		}
	}
	if rep.Results == nil {
		rep.Results = []Result{}
	}
}

func podRuleOrder(rule string) int {
	switch rule {
	case RuleMutate:
		return 0
	case RuleNdotsLosesNames:
		return 1
	}
	return 2
}

// WriteJSON writes the report as indented JSON, result by result: a
// report with a result per pod of a large cluster is never held encoded
// in memory whole.
func (rep *Report) WriteJSON(w io.Writer) error {
	bw := bufio.NewWriter(w)
	ew := &errWriter{w: bw}
	head, err := json.MarshalIndent(rep.Header, "", "  ")
	if err != nil {
		return err
	}
	// The header's closing brace comes after the results.
	ew.Write(bytes.TrimSuffix(head, []byte("\n}")))
	io.WriteString(ew, ",\n  \"results\": [")
	for i := range rep.Results {
		r, err := json.MarshalIndent(&rep.Results[i], "    ", "  ")
		if err != nil {
			return err
		}
		if i > 0 {
			io.WriteString(ew, ",")
		}
		io.WriteString(ew, "\n    ")
		ew.Write(r)
	}
	if len(rep.Results) > 0 {
		io.WriteString(ew, "\n  ")
	}
	io.WriteString(ew, "]")
	if len(rep.Notes) > 0 {
		notes, err := json.MarshalIndent(rep.Notes, "  ", "  ")
		if err != nil {
			return err
		}
		io.WriteString(ew, ",\n  \"notes\": ")
		ew.Write(notes)
	}
	io.WriteString(ew, "\n}\n")
	if ew.err != nil {
		return ew.err
	}
	return bw.Flush()
}
