package selectorguard

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// SkipReason says why the guard leaves a Service alone.
type SkipReason string

// Reasons to skip a Service.
const (
	// SkipNoSelector: the Service has no selector (its endpoints are managed
	// by hand or by another controller), or only Argo Rollouts' revision key.
	SkipNoSelector SkipReason = "no-selector"
	// SkipExternalName: ExternalName Services have no endpoints.
	SkipExternalName SkipReason = "external-name"
	// SkipSelectorUnchanged: an UPDATE that leaves the selector as it was.
	// Denying it would block unrelated changes (ports, annotations, a
	// controller's finalizer) over a state the update did not create.
	SkipSelectorUnchanged SkipReason = "selector-unchanged"
)

var selectorPath = field.NewPath("spec", "selector")

// fixRollOut is the advice when a selector leads a rollout: the new label
// is on some pods only.
const fixRollOut = "roll the label out to all pods before selecting on it, or annotate " + AllowSubsetAnnotation

// ArgoManaged reports whether Argo Rollouts manages the Service's selector.
func ArgoManaged(svc *corev1.Service) bool {
	_, ok := svc.Annotations[ArgoManagedAnnotation]
	return ok
}

// EffectiveSelector is the part of the Service's selector the rules judge:
// the selector, less the rollouts-pod-template-hash key on Services that
// Argo Rollouts manages (Argo moves that key from revision to revision on
// purpose). The result must not be modified.
func EffectiveSelector(svc *corev1.Service) map[string]string {
	sel := svc.Spec.Selector
	if _, ok := sel[LabelRolloutsPodTemplateHash]; ok && ArgoManaged(svc) {
		sel = maps.Clone(sel)
		delete(sel, LabelRolloutsPodTemplateHash)
	}
	return sel
}

// Skip reports whether the guard leaves the Service alone, and why. old is
// the Service before an UPDATE, nil on CREATE.
//
// Argo Rollouts' own updates to the Services it manages change only the
// rollouts-pod-template-hash key, which EffectiveSelector leaves out, so
// they are skipped as unchanged.
func Skip(svc, old *corev1.Service) (SkipReason, bool) {
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return SkipExternalName, true
	}
	sel := EffectiveSelector(svc)
	if len(sel) == 0 {
		return SkipNoSelector, true
	}
	if old != nil && old.Spec.Type != corev1.ServiceTypeExternalName && maps.Equal(sel, EffectiveSelector(old)) {
		return SkipSelectorUnchanged, true
	}
	return "", false
}

// Check runs the rules on a Service at CREATE (old nil) or UPDATE (old is
// the Service before the change) against the workloads of its namespace.
// It returns deny findings first, then warnings, in a stable order.
//
// The rules:
//
//	selector                                    | finding
//	--------------------------------------------+---------------------------------
//	has a revision key (pod-template-hash, ...) | deny revision-key
//	names one pod (statefulset pod-name, index) | no revision rule
//	matches revisions R1 of a workload's live   | deny revision-subset, or
//	  pods and none of the pods of R2           |   drops-revision if the old
//	                                            |   selector matched R2's pods
//	matches a workload's template, none of its  | deny template-only, or
//	  N>0 live pods                             |   drops-revision (as above)
//	matches no live pod and no template         | warn matches-nothing
//	matches live pods of several workloads      | warn many-workloads
//
// A workload whose live pods are all of one revision is never split, so a
// selector that matches all of a workload at rest is never denied.
func Check(svc, old *corev1.Service, view View) []Finding {
	if _, skip := Skip(svc, old); skip {
		return nil
	}
	sel := EffectiveSelector(svc)
	var oldSel map[string]string
	if old != nil && old.Spec.Type != corev1.ServiceTypeExternalName {
		oldSel = EffectiveSelector(old)
	}

	denials := revisionKeyFindings(sel)
	// A selector on a revision key is denied already; one naming a pod
	// picks it on purpose.
	revisionRules := len(denials) == 0 && !namesOnePod(sel)

	query := []map[string]string{sel}
	if len(oldSel) > 0 {
		query = append(query, oldSel)
	}
	workloads := view.Workloads(svc.Namespace, query...)
	slices.SortFunc(workloads, func(a, b Workload) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Name, b.Name))
	})

	newS, oldS := NewSelector(sel), NewSelector(oldSel)
	var (
		matchedWorkloads []*workloadCount
		anyTemplate      bool
		oldMatched       int
	)
	for i := range workloads {
		w := &workloads[i]
		if w.Namespace != svc.Namespace {
			continue
		}
		c := count(w, newS, oldS)
		oldMatched += c.oldMatched
		anyTemplate = anyTemplate || c.template
		if c.matched > 0 {
			matchedWorkloads = append(matchedWorkloads, c)
		}
		if revisionRules && w.Kind.Rolls() {
			if f, ok := revisionFinding(svc, c, len(oldSel) > 0); ok {
				denials = append(denials, f)
			}
		}
	}

	findings := denials
	if len(matchedWorkloads) == 0 && !anyTemplate {
		msg := fmt.Sprintf("selector matches no pods and no pod template of a Deployment, StatefulSet, DaemonSet or Rollout in namespace %s: the Service has no endpoints", svc.Namespace)
		if oldMatched > 0 {
			msg += fmt.Sprintf(" (the current selector matches %s)", pods(oldMatched))
		}
		findings = append(findings, Finding{Rule: RuleMatchesNothing, Message: msg, Field: selectorPath, Value: svc.Spec.Selector})
	}
	if len(matchedWorkloads) > 1 {
		slices.SortStableFunc(matchedWorkloads, func(a, b *workloadCount) int { return cmp.Compare(b.matched, a.matched) })
		findings = append(findings, manyWorkloadsFinding(svc, matchedWorkloads))
	}
	return findings
}

// revisionKeyFindings denies every revision key in the selector.
func revisionKeyFindings(sel map[string]string) []Finding {
	var out []Finding
	for _, k := range RevisionLabels {
		if v, ok := sel[k]; ok {
			out = append(out, Finding{
				Rule:    RuleRevisionKey,
				Deny:    true,
				Message: fmt.Sprintf("selector key %s names a single revision: the Service would lose its endpoints at the next rollout; select on labels that every revision carries, or annotate %s", k, AllowSubsetAnnotation),
				Field:   selectorPath.Key(k),
				Value:   v,
			})
		}
	}
	return out
}

func namesOnePod(sel map[string]string) bool {
	for _, k := range SinglePodLabels {
		if _, ok := sel[k]; ok {
			return true
		}
	}
	return false
}

// revisionCount tallies one revision's live pods.
type revisionCount struct {
	revision   string
	live       int
	matched    int
	oldMatched int
}

// workloadCount tallies a workload's live pods against the new and old
// selectors.
type workloadCount struct {
	w          *Workload
	revisions  []*revisionCount // sorted by revision
	live       int
	matched    int
	oldMatched int
	// template: the selector matches the workload's pod template.
	template bool
	// unmatched lists the selector's key=value pairs that some live pod of a
	// fully unmatched revision lacks, sorted.
	unmatched []string
}

func count(w *Workload, newS, oldS Selector) *workloadCount {
	c := &workloadCount{w: w, template: w.TemplateLabels != nil && newS.Matches(w.TemplateLabels)}
	var r *revisionCount
	for i := range w.Pods {
		p := &w.Pods[i]
		if !p.Live() {
			continue
		}
		// Pods come grouped by revision, and a workload has few revisions.
		if r == nil || r.revision != p.Revision {
			r = nil
			for _, x := range c.revisions {
				if x.revision == p.Revision {
					r = x
					break
				}
			}
			if r == nil {
				r = &revisionCount{revision: p.Revision}
				c.revisions = append(c.revisions, r)
			}
		}
		r.live++
		c.live++
		if newS.Matches(p.Labels) {
			r.matched++
			c.matched++
		}
		if len(oldS) > 0 && oldS.Matches(p.Labels) {
			r.oldMatched++
			c.oldMatched++
		}
	}
	slices.SortFunc(c.revisions, func(a, b *revisionCount) int { return cmp.Compare(a.revision, b.revision) })

	// Name the labels that the pods left out lack: the part of the selector
	// the rollout has not delivered.
	missed := func(revision string) bool {
		for _, r := range c.revisions {
			if r.revision == revision {
				return r.matched == 0
			}
		}
		return false
	}
	// The pods of a revision share their template's labels, so a sample of
	// them names what is missing; it bounds the cost on big workloads.
	const sample = 32
	lacking := map[string]bool{}
	sampled := 0
	for i := range w.Pods {
		p := &w.Pods[i]
		if !p.Live() || !missed(p.Revision) {
			continue
		}
		if sampled++; sampled > sample {
			break
		}
		for _, kv := range newS {
			if got, ok := p.Labels[kv.Key]; !ok || got != kv.Value {
				lacking[kv.Key] = true
			}
		}
		if len(lacking) == len(newS) {
			break
		}
	}
	for _, kv := range newS {
		if lacking[kv.Key] {
			c.unmatched = append(c.unmatched, kv.Key+"="+kv.Value)
		}
	}
	return c
}

// revisionFinding applies the revision rules to one rolling workload.
func revisionFinding(svc *corev1.Service, c *workloadCount, update bool) (Finding, bool) {
	var hit, missed []*revisionCount
	for _, r := range c.revisions {
		if r.matched > 0 {
			hit = append(hit, r)
		} else {
			missed = append(missed, r)
		}
	}
	var rule RuleID
	switch {
	case len(hit) > 0 && len(missed) > 0:
		rule = RuleRevisionSubset
	case c.matched == 0 && c.live > 0 && c.template:
		rule = RuleTemplateOnly
	default:
		return Finding{}, false
	}
	missedLive := 0
	for _, r := range missed {
		missedLive += r.live
		if r.oldMatched > 0 {
			rule = RuleDropsRevision
		}
	}

	lackText := fmt.Sprintf("%s of %s %s %s", pods(missedLive), plural(len(missed), "revision", "revisions"), revisionList(missed), plural(missedLive, "lacks", "lack"))
	if len(c.unmatched) > 0 {
		lackText += " " + strings.Join(c.unmatched, ", ")
	} else {
		lackText += " the selected labels"
	}
	current := ""
	if update {
		current = fmt.Sprintf("; the current selector matches %d", c.oldMatched)
	}

	var msg string
	if len(hit) > 0 {
		fix := fixRollOut
		if c.w.TemplateLabels != nil && !c.template {
			// The pods that match are the old ones: the label is leaving.
			fix = "the pod template being rolled out lacks it too, so the Service would lose every pod as the rollout goes on; keep the label in the template or leave it out of the selector, or annotate " + AllowSubsetAnnotation
		}
		msg = fmt.Sprintf("selector matches %d of %d pods of %s (only %s %s; %s%s): %s",
			c.matched, c.live, c.w, plural(len(hit), "revision", "revisions"), revisionList(hit), lackText, current, fix)
	} else {
		tmpl := "not rolled out yet"
		if c.w.TemplateRevision != "" {
			tmpl = "revision " + c.w.TemplateRevision + ", no pods yet"
		}
		msg = fmt.Sprintf("selector matches none of the %d pods of %s, only its pod template (%s; %s%s): the Service would have no endpoints, then send all its traffic to the first new pods; %s",
			c.live, c.w, tmpl, lackText, current, fixRollOut)
	}
	return Finding{
		Rule:     rule,
		Deny:     true,
		Message:  msg,
		Field:    selectorPath,
		Value:    svc.Spec.Selector,
		Workload: c.w.String(),
		Matched:  c.matched,
		Total:    c.live,
	}, true
}

// maxListed bounds the workloads a warning names.
const maxListed = 5

func manyWorkloadsFinding(svc *corev1.Service, ws []*workloadCount) Finding {
	names := make([]string, 0, maxListed+1)
	for i, c := range ws {
		if i == maxListed {
			names = append(names, fmt.Sprintf("and %d more", len(ws)-maxListed))
			break
		}
		names = append(names, fmt.Sprintf("%s (%s)", c.w, pods(c.matched)))
	}
	return Finding{
		Rule:    RuleManyWorkloads,
		Message: fmt.Sprintf("selector matches pods of %d workloads: %s; a Service usually routes to one workload, check for labels they share by accident", len(ws), strings.Join(names, ", ")),
		Field:   selectorPath,
		Value:   svc.Spec.Selector,
	}
}

func revisionList(rs []*revisionCount) string {
	names := make([]string, len(rs))
	for i, r := range rs {
		names[i] = r.revision
		if r.revision == "" {
			names[i] = "(unlabelled)"
		}
	}
	return strings.Join(names, ", ")
}

func pods(n int) string { return fmt.Sprintf("%d %s", n, plural(n, "pod", "pods")) }

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
