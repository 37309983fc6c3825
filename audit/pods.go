package audit

import (
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/netguard-io/netguard/config"
	"github.com/netguard-io/netguard/policies/podpolicy"
)

// podJudge runs the pod policies on live pods, one at a time, and keeps
// only the findings, grouped by workload: the pods of one Deployment that
// would change the same way make one result.
type podJudge struct {
	cfg *config.Config
	env podpolicy.Env
	// replicaSets resolves a pod's ReplicaSet to its Deployment or Rollout.
	replicaSets toolscache.Indexer
	groups      map[podGroupKey]*Result
}

// podGroupKey is what pods of one result have in common.
type podGroupKey struct {
	namespace, owner, rule         string
	result                         Outcome
	changes, resolver, reason, msg string
}

func newPodJudge(cfg *config.Config, version string, replicaSets toolscache.Indexer) *podJudge {
	return &podJudge{
		cfg:         cfg,
		env:         podpolicy.Env{Version: version},
		replicaSets: replicaSets,
		groups:      map[podGroupKey]*Result{},
	}
}

// judge runs the pod policies on pod as the webhook would if the pod were
// created now in namespace ns.
func (j *podJudge) judge(pod *corev1.Pod, ns podpolicy.NamespaceInfo) {
	env := j.env
	env.Namespace = ns
	res := podpolicy.Mutate(pod, env, j.cfg)
	if res.Skipped == "" && len(res.Applied) > 0 {
		j.add(pod, podGroupKey{
			rule: RuleMutate, result: Fail,
			changes:  strings.Join(res.Applied, ","),
			resolver: string(res.Resolver),
			// The admission warnings the pod would get.
			msg: strings.Join(res.Warnings, "; "),
		})
	}
	if problem := podpolicy.NdotsLosesNames(pod, ns, j.cfg); problem != "" {
		j.add(pod, podGroupKey{rule: RuleNdotsLosesNames, result: Fail, msg: problem})
	}
	if r := res.DNSProxySkipped; r != "" {
		result := Warn
		if r == podpolicy.SkipDNSProxyOptedOut || r == podpolicy.SkipDNSProxyDisabled {
			// Chosen by the pod's owners or the cluster's settings.
			result = Skip
		}
		j.add(pod, podGroupKey{rule: RuleDNSSidecar, result: result, reason: r.Label(), msg: string(r)})
	}
}

func (j *podJudge) add(pod *corev1.Pod, key podGroupKey) {
	key.namespace = pod.Namespace
	key.owner = j.owner(pod)
	g, ok := j.groups[key]
	if !ok {
		g = &Result{
			Source: Source, Policy: PolicyPods, Rule: key.rule, Result: key.result, Message: key.msg,
			Properties: map[string]string{PropOwner: key.owner},
		}
		if key.changes != "" {
			g.Properties[PropChanges] = key.changes
		}
		if key.resolver != "" {
			g.Properties[PropResolver] = key.resolver
		}
		if key.reason != "" {
			g.Properties[PropReason] = key.reason
		}
		j.groups[key] = g
	}
	g.Resources = append(g.Resources, corev1.ObjectReference{
		APIVersion: "v1", Kind: "Pod", Namespace: key.namespace, Name: pod.Name, UID: pod.UID,
	})
}

// owner names the workload of a pod as "Kind/name": a ReplicaSet's
// Deployment or Rollout, else the pod's controller, else the pod itself.
func (j *podJudge) owner(pod *corev1.Pod) string {
	ref := metav1.GetControllerOfNoCopy(pod)
	if ref == nil {
		return "Pod/" + pod.Name
	}
	if ref.Kind == "ReplicaSet" && strings.HasPrefix(ref.APIVersion, "apps/") {
		obj, ok, err := j.replicaSets.GetByKey(pod.Namespace + "/" + ref.Name)
		if rs, isRS := obj.(*appsv1.ReplicaSet); err == nil && ok && isRS && rs.UID == ref.UID {
			if top := metav1.GetControllerOfNoCopy(rs); top != nil {
				return top.Kind + "/" + top.Name
			}
		}
	}
	return ref.Kind + "/" + ref.Name
}

// results returns the grouped findings.
func (j *podJudge) results() []Result {
	out := make([]Result, 0, len(j.groups))
	for _, g := range j.groups {
		out = append(out, *g)
	}
	return out
}
