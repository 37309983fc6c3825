package clusterview

import (
	"maps"
	"slices"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/netguard-io/netguard/policies/selectorguard"
)

// RolloutGVK is Argo Rollouts' Rollout, watched only when its CRD exists.
var RolloutGVK = schema.GroupVersionKind{Group: "argoproj.io", Version: "v1alpha1", Kind: "Rollout"}

// Stores are the informer stores the view reads, holding objects passed
// through the Transform functions and indexed by namespace
// (toolscache.NamespaceIndex), PodIndexers and ReplicaSetIndexers.
type Stores struct {
	Pods         toolscache.Indexer
	ReplicaSets  toolscache.Indexer
	Deployments  toolscache.Indexer
	StatefulSets toolscache.Indexer
	DaemonSets   toolscache.Indexer
	// Rollouts holds Argo Rollouts as *unstructured.Unstructured; nil when
	// the CRD is not installed.
	Rollouts toolscache.Indexer
	// Namespaces and Services are read for the namespace's mode and for the
	// workload-update warnings.
	Namespaces toolscache.Indexer
	Services   toolscache.Indexer
}

// View is the selectorguard.View of a cluster, read from informer
// stores. A lookup touches only the Service's namespace: the pods in the
// smallest label-index bucket of the selector, the workloads of the
// namespace (for their templates), and the ReplicaSets and pods of the
// workloads involved, through the controller index.
type View struct {
	s Stores
}

var _ selectorguard.NamespaceView = (*View)(nil)

// NewView returns a view over the stores.
func NewView(s Stores) *View { return &View{s: s} }

// Namespace returns the cached Namespace, if any.
func (v *View) Namespace(name string) (*corev1.Namespace, bool) {
	if v.s.Namespaces == nil {
		return nil, false
	}
	obj, ok, err := v.s.Namespaces.GetByKey(name)
	if err != nil || !ok {
		return nil, false
	}
	ns, ok := obj.(*corev1.Namespace)
	return ns, ok
}

// Services returns the cached Services of a namespace. They must not be
// modified.
func (v *View) Services(namespace string) []*corev1.Service {
	var out []*corev1.Service
	for _, obj := range byIndex(v.s.Services, toolscache.NamespaceIndex, namespace) {
		if s, ok := obj.(*corev1.Service); ok {
			out = append(out, s)
		}
	}
	return out
}

// owner identifies a workload in the namespace being looked at.
type owner struct {
	kind selectorguard.Kind
	name string
	uid  types.UID
}

// Workloads implements selectorguard.View.
func (v *View) Workloads(namespace string, selectors ...map[string]string) []selectorguard.Workload {
	b := &builder{v: v, ns: namespace, seen: map[owner]bool{}, resolved: map[types.UID]owner{}, standalone: map[string]*Pod{}}
	for _, sel := range selectors {
		if len(sel) == 0 {
			continue
		}
		matcher := selectorguard.NewSelector(sel)
		for _, obj := range v.candidates(v.s.Pods, IndexLabel, namespace, sel) {
			p, ok := obj.(*Pod)
			if !ok {
				continue
			}
			ref := p.Controller()
			if ref != nil {
				if _, done := b.resolved[ref.UID]; done {
					// The workload is in already; build adds all its pods.
					continue
				}
			}
			if matcher.Matches(p.Labels()) {
				b.addPod(p, ref)
			}
		}
	}
	b.addTemplates(selectors)
	return b.build()
}

// smallBucket is a candidate set small enough to stop looking for a
// smaller one: reading a bucket copies it, so each extra look costs.
const smallBucket = 256

// candidates returns the objects of store in namespace that may match sel:
// the smallest bucket of the label index among the selector's pairs (or
// the first small one), or every object of the namespace when no pair is
// indexed.
func (v *View) candidates(store toolscache.Indexer, index, namespace string, sel map[string]string) []any {
	keys := make([]string, 0, len(sel))
	for k := range sel {
		if labelIndexed(k) {
			keys = append(keys, k)
		}
	}
	// A stable order gives the same cost for the same selector.
	slices.Sort(keys)
	var best []any
	found := false
	for _, k := range keys {
		objs := byIndex(store, index, labelIndexKey(namespace, k, sel[k]))
		if !found || len(objs) < len(best) {
			best, found = objs, true
		}
		if len(best) <= smallBucket {
			break
		}
	}
	if !found {
		return byIndex(store, toolscache.NamespaceIndex, namespace)
	}
	return best
}

func byIndex(store toolscache.Indexer, index, value string) []any {
	if store == nil {
		return nil
	}
	objs, err := store.ByIndex(index, value)
	if err != nil {
		// Only an unknown index name fails, which would be a wiring bug
		// caught by the tests.
		return nil
	}
	return objs
}

func get(store toolscache.Indexer, namespace, name string) any {
	if store == nil {
		return nil
	}
	obj, ok, err := store.GetByKey(namespace + "/" + name)
	if err != nil || !ok {
		return nil
	}
	return obj
}

// builder collects the workloads of one lookup.
type builder struct {
	v      *View
	ns     string
	owners []owner
	seen   map[owner]bool
	// resolved maps the controllers of matched pods to their workloads.
	resolved   map[types.UID]owner
	standalone map[string]*Pod
}

func (b *builder) want(o owner) {
	if !b.seen[o] {
		b.seen[o] = true
		b.owners = append(b.owners, o)
	}
}

// addPod records the workload that owns p through its controller ref.
func (b *builder) addPod(p *Pod, ref *metav1.OwnerReference) {
	if ref == nil {
		b.standalone[p.Name] = p
		return
	}
	o, ok := b.resolved[ref.UID]
	if !ok {
		o = b.resolve(ref)
		b.resolved[ref.UID] = o
	}
	b.want(o)
}

// resolve maps a pod's controller to its workload: a ReplicaSet to the
// Deployment or Rollout that owns it.
func (b *builder) resolve(ref *metav1.OwnerReference) owner {
	gv, _ := schema.ParseGroupVersion(ref.APIVersion)
	switch {
	case gv.Group == appsv1.GroupName && ref.Kind == "ReplicaSet":
		rs, _ := get(b.v.s.ReplicaSets, b.ns, ref.Name).(*appsv1.ReplicaSet)
		if rs == nil || rs.UID != ref.UID {
			return owner{kind: selectorguard.KindReplicaSet, name: ref.Name, uid: ref.UID}
		}
		if top := metav1.GetControllerOfNoCopy(rs); top != nil {
			tgv, _ := schema.ParseGroupVersion(top.APIVersion)
			switch {
			case tgv.Group == appsv1.GroupName && top.Kind == "Deployment":
				return owner{kind: selectorguard.KindDeployment, name: top.Name, uid: top.UID}
			case tgv.Group == RolloutGVK.Group && top.Kind == RolloutGVK.Kind:
				return owner{kind: selectorguard.KindRollout, name: top.Name, uid: top.UID}
			}
		}
		return owner{kind: selectorguard.KindReplicaSet, name: rs.Name, uid: rs.UID}
	case gv.Group == appsv1.GroupName && ref.Kind == "StatefulSet":
		return owner{kind: selectorguard.KindStatefulSet, name: ref.Name, uid: ref.UID}
	case gv.Group == appsv1.GroupName && ref.Kind == "DaemonSet":
		return owner{kind: selectorguard.KindDaemonSet, name: ref.Name, uid: ref.UID}
	case gv.Group == "batch" && ref.Kind == "Job":
		return owner{kind: selectorguard.KindJob, name: ref.Name, uid: ref.UID}
	}
	return owner{kind: selectorguard.Kind(ref.Kind), name: ref.Name, uid: ref.UID}
}

// addTemplates records the rolling workloads whose pod template one of the
// selectors matches.
func (b *builder) addTemplates(selectors []map[string]string) {
	matchesAny := func(labels map[string]string) bool {
		for _, sel := range selectors {
			if len(sel) > 0 && selectorguard.Matches(sel, labels) {
				return true
			}
		}
		return false
	}
	for _, sel := range selectors {
		if len(sel) == 0 {
			continue
		}
		for _, obj := range b.v.candidates(b.v.s.Deployments, IndexTemplateLabel, b.ns, sel) {
			if d, ok := obj.(*appsv1.Deployment); ok && selectorguard.Matches(sel, d.Spec.Template.Labels) {
				b.want(owner{kind: selectorguard.KindDeployment, name: d.Name, uid: d.UID})
			}
		}
		for _, obj := range b.v.candidates(b.v.s.StatefulSets, IndexTemplateLabel, b.ns, sel) {
			if s, ok := obj.(*appsv1.StatefulSet); ok && selectorguard.Matches(sel, s.Spec.Template.Labels) {
				b.want(owner{kind: selectorguard.KindStatefulSet, name: s.Name, uid: s.UID})
			}
		}
		for _, obj := range b.v.candidates(b.v.s.DaemonSets, IndexTemplateLabel, b.ns, sel) {
			if d, ok := obj.(*appsv1.DaemonSet); ok && selectorguard.Matches(sel, d.Spec.Template.Labels) {
				b.want(owner{kind: selectorguard.KindDaemonSet, name: d.Name, uid: d.UID})
			}
		}
	}
	// Rollouts are few, and one with a workloadRef has its template
	// elsewhere: they are scanned.
	for _, obj := range byIndex(b.v.s.Rollouts, toolscache.NamespaceIndex, b.ns) {
		if r, ok := obj.(*unstructured.Unstructured); ok && matchesAny(b.rolloutTemplate(r)) {
			b.want(owner{kind: selectorguard.KindRollout, name: r.GetName(), uid: r.GetUID()})
		}
	}
}

func (b *builder) build() []selectorguard.Workload {
	out := make([]selectorguard.Workload, 0, len(b.owners)+1)
	for _, o := range b.owners {
		w := selectorguard.Workload{Kind: o.kind, Namespace: b.ns, Name: o.name}
		switch o.kind {
		case selectorguard.KindDeployment:
			b.deployment(&w, o)
		case selectorguard.KindRollout:
			b.rollout(&w, o)
		case selectorguard.KindStatefulSet:
			s, _ := get(b.v.s.StatefulSets, b.ns, o.name).(*appsv1.StatefulSet)
			if s != nil && s.UID == o.uid {
				w.TemplateLabels = s.Spec.Template.Labels
				if s.Status.ObservedGeneration == s.Generation {
					w.TemplateRevision = shortRevision(o.name, s.Status.UpdateRevision)
				}
			}
			w.Pods = b.pods(o.uid, o.name, selectorguard.LabelControllerRevisionHash, "")
		case selectorguard.KindDaemonSet:
			d, _ := get(b.v.s.DaemonSets, b.ns, o.name).(*appsv1.DaemonSet)
			if d != nil && d.UID == o.uid {
				w.TemplateLabels = d.Spec.Template.Labels
			}
			w.Pods = b.pods(o.uid, o.name, selectorguard.LabelControllerRevisionHash, "")
		default:
			w.Pods = b.pods(o.uid, o.name, "", "")
		}
		out = append(out, w)
	}
	if len(b.standalone) > 0 {
		w := selectorguard.Workload{Kind: selectorguard.KindPod, Namespace: b.ns}
		for _, p := range b.standalone {
			w.Pods = append(w.Pods, podInfo(p, ""))
		}
		out = append(out, w)
	}
	return out
}

// deployment fills in a Deployment: its template, and the pods of each of
// its ReplicaSets with the ReplicaSet's hash as revision.
func (b *builder) deployment(w *selectorguard.Workload, o owner) {
	d, _ := get(b.v.s.Deployments, b.ns, o.name).(*appsv1.Deployment)
	if d != nil && d.UID != o.uid {
		d = nil
	}
	if d != nil {
		w.TemplateLabels = d.Spec.Template.Labels
	}
	newest := b.replicaSets(w, o, selectorguard.LabelPodTemplateHash, deploymentRevisionAnnotation)
	// The newest ReplicaSet is the template's revision once the controller
	// has seen the template (a new ReplicaSet exists by then) and its labels
	// are the template's.
	if d != nil && newest != nil && d.Status.ObservedGeneration == d.Generation &&
		sameTemplateLabels(newest.Spec.Template.Labels, d.Spec.Template.Labels, selectorguard.LabelPodTemplateHash) {
		w.TemplateRevision = rsHash(newest, o.name, selectorguard.LabelPodTemplateHash)
	}
}

// rollout fills in an Argo Rollout like a Deployment.
func (b *builder) rollout(w *selectorguard.Workload, o owner) {
	r, _ := get(b.v.s.Rollouts, b.ns, o.name).(*unstructured.Unstructured)
	if r != nil && r.GetUID() == o.uid {
		w.TemplateLabels = b.rolloutTemplate(r)
		w.TemplateRevision, _, _ = unstructured.NestedString(r.Object, "status", "currentPodHash")
	}
	b.replicaSets(w, o, selectorguard.LabelRolloutsPodTemplateHash, rolloutRevisionAnnotation)
}

// rolloutTemplate returns a Rollout's pod template labels, read from the
// Deployment its workloadRef names if it has one.
func (b *builder) rolloutTemplate(r *unstructured.Unstructured) map[string]string {
	if kind, _, _ := unstructured.NestedString(r.Object, "spec", "workloadRef", "kind"); kind == "Deployment" {
		name, _, _ := unstructured.NestedString(r.Object, "spec", "workloadRef", "name")
		if d, ok := get(b.v.s.Deployments, b.ns, name).(*appsv1.Deployment); ok {
			return d.Spec.Template.Labels
		}
		return nil
	}
	labels, _, _ := unstructured.NestedStringMap(r.Object, "spec", "template", "metadata", "labels")
	return labels
}

// replicaSets adds the pods of the workload's ReplicaSets and returns the
// newest ReplicaSet by revision annotation.
func (b *builder) replicaSets(w *selectorguard.Workload, o owner, hashLabel, revisionAnnotation string) *appsv1.ReplicaSet {
	var newest *appsv1.ReplicaSet
	newestRev := int64(-1)
	for _, obj := range byIndex(b.v.s.ReplicaSets, IndexController, string(o.uid)) {
		rs, ok := obj.(*appsv1.ReplicaSet)
		if !ok {
			continue
		}
		if rev, err := strconv.ParseInt(rs.Annotations[revisionAnnotation], 10, 64); err == nil && rev > newestRev {
			newest, newestRev = rs, rev
		}
		w.Pods = append(w.Pods, b.pods(rs.UID, o.name, hashLabel, rsHash(rs, o.name, hashLabel))...)
	}
	return newest
}

// pods returns the pods controlled by uid. Their revision is read from
// revisionLabel, else is fallback.
func (b *builder) pods(uid types.UID, workload, revisionLabel, fallback string) []selectorguard.PodInfo {
	objs := byIndex(b.v.s.Pods, IndexController, string(uid))
	out := make([]selectorguard.PodInfo, 0, len(objs))
	for _, obj := range objs {
		p, ok := obj.(*Pod)
		if !ok {
			continue
		}
		rev := fallback
		if revisionLabel != "" {
			if v, ok := p.Labels()[revisionLabel]; ok {
				rev = shortRevision(workload, v)
			}
		}
		out = append(out, podInfo(p, rev))
	}
	return out
}

func podInfo(p *Pod, revision string) selectorguard.PodInfo {
	return selectorguard.PodInfo{
		Name:        p.Name,
		Labels:      p.Labels(),
		Revision:    revision,
		Terminating: p.Terminating,
		Finished:    p.Finished,
	}
}

// rsHash is a ReplicaSet's template hash: its hash label, else its name
// less the workload's name.
func rsHash(rs *appsv1.ReplicaSet, workload, hashLabel string) string {
	if h, ok := rs.Labels[hashLabel]; ok {
		return h
	}
	if h, ok := rs.Spec.Template.Labels[hashLabel]; ok {
		return h
	}
	return shortRevision(workload, rs.Name)
}

// shortRevision drops the "WORKLOAD-" prefix StatefulSets put on their
// controller-revision-hash values.
func shortRevision(workload, revision string) string {
	return strings.TrimPrefix(revision, workload+"-")
}

// sameTemplateLabels compares pod template labels, ignoring the hash label
// the controller adds to its ReplicaSets' templates.
func sameTemplateLabels(rsLabels, templateLabels map[string]string, hashLabel string) bool {
	if _, ok := rsLabels[hashLabel]; ok {
		rsLabels = maps.Clone(rsLabels)
		delete(rsLabels, hashLabel)
	}
	return maps.Equal(rsLabels, templateLabels)
}
