package selectorguard

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

var templateLabelsPath = field.NewPath("spec", "template", "metadata", "labels")

// CheckTemplateChange runs at a workload's UPDATE: it warns, once per
// Service, when the new pod template drops a label that a Service of the
// workload's namespace selects while the old template carried it. As the
// rollout replaces pods, such a Service loses its endpoints one by one.
//
// w names the workload (Kind, Namespace, Name); services are the Services
// of its namespace. The findings never deny: a workload update cannot be
// judged from Services alone (the team may be moving traffic on purpose).
func CheckTemplateChange(w Workload, oldLabels, newLabels map[string]string, services []*corev1.Service) []Finding {
	var out []Finding
	sorted := slices.Clone(services)
	slices.SortFunc(sorted, func(a, b *corev1.Service) int { return cmp.Compare(a.Name, b.Name) })
	for _, svc := range sorted {
		if svc.Namespace != w.Namespace {
			continue
		}
		if _, skip := Skip(svc, nil); skip {
			continue
		}
		sel := EffectiveSelector(svc)
		if namesOnePod(sel) || !Matches(sel, oldLabels) || Matches(sel, newLabels) {
			continue
		}
		var dropped []string
		for k, v := range sel {
			if got, ok := newLabels[k]; !ok || got != v {
				dropped = append(dropped, k+"="+v)
			}
		}
		slices.Sort(dropped)
		out = append(out, Finding{
			Rule: RuleTemplateDropsLabel,
			Message: fmt.Sprintf("the new pod template of %s drops %s, which Service %s selects: as the rollout replaces pods, the Service loses its endpoints; keep the %s in the template, or take %s out of the Service's selector first",
				w, strings.Join(dropped, ", "), svc.Name, plural(len(dropped), "label", "labels"), plural(len(dropped), "it", "them")),
			Field:    templateLabelsPath,
			Value:    newLabels,
			Workload: w.String(),
		})
	}
	return out
}
