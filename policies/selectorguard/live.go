package selectorguard

import (
	"cmp"
	"slices"

	corev1 "k8s.io/api/core/v1"
)

// PartialRollout judges a Service as it stands (no change under review):
// it reports the first workload whose live pods its selector splits by
// revision, with the finding admission would give for that selector
// (revision-subset: some revisions matched, others not; template-only:
// the template matched, none of the pods). The Service then routes to part
// of a rollout: the outage the guard denies at admission, reached without
// a Service write (a template that dropped a label, pods relabelled by
// hand, a stalled rollout).
//
// A Service the guard skips, one whose selector names a single pod, and
// one whose owner accepted a subset (AllowSubsetAnnotation) is never
// partial. Unlike Check, a selector on a revision key is judged too: mid
// rollout it follows the old revision only.
func PartialRollout(svc *corev1.Service, view View) (Finding, bool) {
	if _, skip := Skip(svc, nil); skip {
		return Finding{}, false
	}
	if _, accepted := svc.Annotations[AllowSubsetAnnotation]; accepted {
		return Finding{}, false
	}
	sel := EffectiveSelector(svc)
	if namesOnePod(sel) {
		return Finding{}, false
	}
	workloads := view.Workloads(svc.Namespace, sel)
	slices.SortFunc(workloads, func(a, b Workload) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Name, b.Name))
	})
	newS := NewSelector(sel)
	for i := range workloads {
		w := &workloads[i]
		if w.Namespace != svc.Namespace || !w.Kind.Rolls() {
			continue
		}
		if f, ok := revisionFinding(svc, count(w, newS, nil), false); ok {
			return f, true
		}
	}
	return Finding{}, false
}
