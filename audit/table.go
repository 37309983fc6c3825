package audit

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/netguard-io/netguard/policies/podpolicy"
)

// Texts of the table's WOULD CHANGE column for the rules that change
// nothing by themselves.
const (
	nginxWithoutSidecar = "nginx without the DNS sidecar"
	namesLost           = "names lost to netguard's ndots: roll out again"
)

// restartHint follows pods that would change.
const restartHint = "pods change only when they are created: roll their workloads out again (kubectl rollout restart) to apply what netguard would change"

// WriteTable writes the report for people: per namespace, a table of
// Service findings and one of pod findings (pods grouped by workload),
// then the notes and a summary line.
func (rep *Report) WriteTable(w io.Writer) error {
	tw := &errWriter{w: w}
	for i := 0; i < len(rep.Results); {
		ns := rep.Results[i].Namespace()
		j := i
		for j < len(rep.Results) && rep.Results[j].Namespace() == ns {
			j++
		}
		writeNamespace(tw, ns, rep.Results[i:j])
		i = j
	}
	notes := slices.Clone(rep.Notes)
	if slices.ContainsFunc(rep.Results, func(r Result) bool { return r.Rule == RuleMutate }) {
		notes = append(notes, restartHint)
	}
	for _, n := range notes {
		fmt.Fprintf(tw, "Note: %s\n", n)
	}
	if len(notes) > 0 {
		fmt.Fprintln(tw)
	}
	fmt.Fprintln(tw, rep.summaryLine())
	return tw.err
}

func writeNamespace(w io.Writer, ns string, results []Result) {
	fmt.Fprintf(w, "Namespace %s\n", ns)
	var services, pods []Result
	for _, r := range results {
		if r.Policy == PolicyServiceGuard {
			services = append(services, r)
		} else {
			pods = append(pods, r)
		}
	}
	if len(services) > 0 {
		t := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(t, "  SERVICE\tRULE\tVERDICT\tMESSAGE")
		for _, r := range services {
			fmt.Fprintf(t, "  %s\t%s\t%s\t%s\n", r.name(), r.Rule, r.Properties[PropVerdict], orDash(r.Message))
		}
		t.Flush()
	}
	if len(pods) > 0 {
		if len(services) > 0 {
			fmt.Fprintln(w)
		}
		t := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(t, "  PODS\tWOULD CHANGE\tMESSAGE")
		for _, r := range pods {
			change := strings.ReplaceAll(r.Properties[PropChanges], ",", ", ")
			if res := r.Properties[PropResolver]; res != "" {
				change += " (resolver " + res + ")"
			}
			switch r.Rule {
			case RuleDNSSidecar:
				change = nginxWithoutSidecar
			case RuleNdotsLosesNames:
				change = namesLost
			}
			fmt.Fprintf(t, "  %s\t%s\t%s\n", podsCell(r), change, orDash(r.Message))
		}
		t.Flush()
	}
	fmt.Fprintln(w)
}

// podsCell names a pod result's pods: "Deployment/web: 12 pods", or one
// pod with its owner.
func podsCell(r Result) string {
	owner := r.Properties[PropOwner]
	if len(r.Resources) != 1 {
		return fmt.Sprintf("%s: %d pods", owner, len(r.Resources))
	}
	pod := "Pod/" + r.Resources[0].Name
	if owner == pod || owner == "" {
		return pod
	}
	return fmt.Sprintf("%s (%s)", pod, owner)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// summaryLine counts Service findings by verdict and pods by rule.
func (rep *Report) summaryLine() string {
	verdicts := map[string]int{}
	var changed, getSidecar, withoutSidecar, losingNames int
	for _, r := range rep.Results {
		switch {
		case r.Policy == PolicyServiceGuard:
			verdicts[r.Properties[PropVerdict]]++
		case r.Rule == RuleMutate:
			changed += len(r.Resources)
			if slices.Contains(strings.Split(r.Properties[PropChanges], ","), podpolicy.AppliedDNSProxy) {
				getSidecar += len(r.Resources)
			}
		case r.Rule == RuleDNSSidecar:
			withoutSidecar += len(r.Resources)
		case r.Rule == RuleNdotsLosesNames:
			losingNames += len(r.Resources)
		}
	}
	var svc []string
	for _, v := range []Verdict{VerdictDeny, VerdictWarn, VerdictDryRun, VerdictOverridden} {
		if n := verdicts[string(v)]; n > 0 {
			svc = append(svc, fmt.Sprintf("%d %s", n, v))
		}
	}
	if len(svc) == 0 {
		svc = []string{"none"}
	}
	var pods []string
	if changed > 0 {
		s := fmt.Sprintf("%d would change", changed)
		if getSidecar > 0 {
			s += fmt.Sprintf(" (%d would get the DNS sidecar)", getSidecar)
		}
		pods = append(pods, s)
	}
	if withoutSidecar > 0 {
		pods = append(pods, fmt.Sprintf("%d %s", withoutSidecar, nginxWithoutSidecar))
	}
	if losingNames > 0 {
		pods = append(pods, fmt.Sprintf("%d lose names to netguard's ndots (roll out again)", losingNames))
	}
	if len(pods) == 0 {
		pods = []string{"none"}
	}
	s := rep.Scanned
	return fmt.Sprintf("Summary: Service findings: %s; pods: %s; scanned %s, %s (%d judged), %s (%d judged).",
		strings.Join(svc, ", "), strings.Join(pods, ", "),
		plural(s.Namespaces, "namespace"), plural(s.Services, "Service"), s.ServicesJudged, plural(s.Pods, "pod"), s.PodsJudged)
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// errWriter keeps the first write error, so that rendering code need not
// check each write.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}
