package coverage

import (
	"context"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/time/rate"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	crrecorder "sigs.k8s.io/controller-runtime/pkg/recorder"

	"github.com/netguard-io/netguard/clusterview"
	"github.com/netguard-io/netguard/config"
	"github.com/netguard-io/netguard/policies/selectorguard"
)

// Event reasons of the live coverage check.
const (
	// PartialRolloutReason: the Service routes to part of a rollout
	// (Warning).
	PartialRolloutReason = "SelectorMatchesPartialRollout"
	// EndedReason: it no longer does (Normal).
	EndedReason = "SelectorPartialRolloutEnded"
	// coverageAction is the events.k8s.io/v1 action of both.
	coverageAction = "CheckCoverage"
	// coalesce is how long a change waits for more changes of the same
	// Service before it is judged: a rollout's pod events come in bursts.
	coalesce = time.Second
)

// coverage is the live coverage check: it re-judges a Service's selector
// when the Service, a workload of its namespace or a pod it may select
// changes, and reports when the Service starts routing to part of a rollout
// (a Warning Event, PartialRolloutReason) and when it no longer does (a
// Normal one, EndedReason). Changes are coalesced per Service, judged at
// most MaxChecksPerSecond times a second, and reported only after the state
// has held for Settle, so one rollout gives one Event, not one per pod.
// Every replica judges (so a new leader knows the state); the recorder
// records only on the leader.
type coverage struct {
	view     *clusterview.View
	services toolscache.Indexer
	cfg      *config.Config
	recorder crrecorder.EventRecorder
	log      logr.Logger
	clock    clock.WithTicker
	settle   time.Duration
	limiter  *rate.Limiter
	queue    workqueue.TypedDelayingInterface[types.NamespacedName]

	// states is touched by the one worker only.
	states map[types.NamespacedName]*coverageState
}

// coverageState is what the check knows of one Service.
type coverageState struct {
	// reported is the state last reported (Event, gauge).
	reported bool
	// partial is the state last judged, since when, and why.
	partial bool
	since   time.Time
	finding selectorguard.Finding
}

func newCoverage(view *clusterview.View, services toolscache.Indexer, cfg *config.Config, recorder crrecorder.EventRecorder, log logr.Logger, clk clock.WithTicker) *coverage {
	return &coverage{
		view:     view,
		services: services,
		cfg:      cfg,
		recorder: recorder,
		log:      log,
		clock:    clk,
		settle:   cfg.ServiceGuard.Coverage.SettleDuration(),
		limiter:  rate.NewLimiter(rate.Limit(cfg.ServiceGuard.Coverage.MaxChecksPerSecond), cfg.ServiceGuard.Coverage.MaxChecksPerSecond),
		queue: workqueue.NewTypedDelayingQueueWithConfig(workqueue.TypedDelayingQueueConfig[types.NamespacedName]{
			Name: "netguard-coverage", Clock: clk,
		}),
		states: map[types.NamespacedName]*coverageState{},
	}
}

// Setup adds the live coverage check to mgr when cfg enables it
// (serviceGuard.enabled and serviceGuard.coverage.enabled): event handlers
// on the informers of view, which must come from clusterview.New with the
// same cfg, and the check itself, run on every replica once view has
// synced. Events are recorded through mgr's recorder, on the leader only.
func Setup(mgr manager.Manager, view *clusterview.Cache, cfg *config.Config) error {
	if !cfg.ServiceGuard.Enabled || !cfg.ServiceGuard.Coverage.Enabled {
		return nil
	}
	log := mgr.GetLogger().WithName("serviceguard").WithName("coverage")
	cov := newCoverage(view.View(), view.Stores().Services, cfg, mgr.GetEventRecorder("netguard"), log, clock.RealClock{})
	for obj, inf := range view.Informers() {
		var h toolscache.ResourceEventHandler
		switch obj.(type) {
		case *corev1.Pod:
			h = cov.podHandler()
		case *corev1.Service:
			h = cov.serviceHandler()
		case *corev1.Namespace:
			h = cov.namespaceHandler()
		default:
			h = cov.workloadHandler(workloadTemplate)
		}
		if _, err := inf.AddEventHandler(afterInitialList(h)); err != nil {
			return fmt.Errorf("coverage check: %w", err)
		}
	}
	if err := mgr.Add(coverageRunnable{c: cov, synced: view.Synced}); err != nil {
		return fmt.Errorf("adding the coverage check: %w", err)
	}
	return nil
}

// afterInitialList passes h every event but the adds of an informer's
// initial list: start queues every Service once the view has synced, so
// queueing the Services of each pod as the list fills the cache would be
// the same work done once per pod first.
func afterInitialList(h toolscache.ResourceEventHandler) toolscache.ResourceEventHandler {
	return toolscache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(obj any, isInInitialList bool) {
			if !isInInitialList {
				h.OnAdd(obj, false)
			}
		},
		UpdateFunc: h.OnUpdate,
		DeleteFunc: h.OnDelete,
	}
}

// coverageRunnable runs the check on every replica (each judges; only the
// leader's Events are recorded) once the view has synced.
type coverageRunnable struct {
	c      *coverage
	synced func() bool
}

func (r coverageRunnable) Start(ctx context.Context) error { return r.c.start(ctx, r.synced) }

// NeedLeaderElection implements manager.LeaderElectionRunnable.
func (coverageRunnable) NeedLeaderElection() bool { return false }

// start works until ctx ends. synced reports whether the view is complete;
// nothing is judged before, so a half-filled cache reports nothing.
func (c *coverage) start(ctx context.Context, synced func() bool) error {
	go func() {
		<-ctx.Done()
		c.queue.ShutDown()
	}()
	for !synced() {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}
	// Everything once: the state of the cluster as netguard finds it.
	for _, obj := range c.services.List() {
		if svc, ok := obj.(*corev1.Service); ok {
			c.queue.Add(types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name})
		}
	}
	for {
		key, shutdown := c.queue.Get()
		if shutdown {
			return nil
		}
		if err := c.limiter.Wait(ctx); err != nil {
			c.queue.Done(key)
			return nil
		}
		c.judge(key)
		c.queue.Done(key)
	}
}

// judge re-judges one Service and reports a state that has held for settle.
func (c *coverage) judge(key types.NamespacedName) {
	coverageChecks.Inc()
	now := c.clock.Now()
	st := c.states[key]
	partial, finding := false, selectorguard.Finding{}
	svc := c.service(key)
	if svc != nil && c.selected(svc.Namespace) {
		finding, partial = selectorguard.PartialRollout(svc, c.view)
	}
	if st == nil {
		if !partial {
			return // nothing to remember
		}
		st = &coverageState{}
		c.states[key] = st
	}
	if partial != st.partial {
		st.partial, st.since = partial, now
	}
	if partial {
		st.finding = finding
	}
	switch {
	case svc == nil:
		// Deleted: forget it without an Event.
		if st.reported {
			partialRolloutServices.Dec()
		}
		delete(c.states, key)
	case st.partial == st.reported:
	case now.Sub(st.since) < c.settle:
		// Not yet settled: look again when it would be.
		c.queue.AddAfter(key, st.since.Add(c.settle).Sub(now))
	default:
		c.report(svc, st)
		if !st.partial {
			delete(c.states, key)
		}
	}
}

func (c *coverage) report(svc *corev1.Service, st *coverageState) {
	st.reported = st.partial
	key := svc.Namespace + "/" + svc.Name
	if st.partial {
		partialRolloutServices.Inc()
		partialRolloutTransitions.WithLabelValues("partial").Inc()
		c.log.Info("Service routes to part of a rollout", "service", key, "workload", st.finding.Workload,
			"matched", st.finding.Matched, "pods", st.finding.Total, "message", st.finding.Message)
		c.recorder.Eventf(svc, nil, corev1.EventTypeWarning, PartialRolloutReason, coverageAction, "%s", truncate(st.finding.Message))
		return
	}
	partialRolloutServices.Dec()
	partialRolloutTransitions.WithLabelValues("covered").Inc()
	c.log.Info("Service no longer routes to part of a rollout", "service", key, "workload", st.finding.Workload)
	c.recorder.Eventf(svc, nil, corev1.EventTypeNormal, EndedReason, coverageAction,
		"selector no longer routes to part of a rollout of %s", st.finding.Workload)
}

// service is the cached Service, or nil when it is gone.
func (c *coverage) service(key types.NamespacedName) *corev1.Service {
	obj, ok, err := c.services.GetByKey(key.String())
	if err != nil || !ok {
		return nil
	}
	svc, _ := obj.(*corev1.Service)
	return svc
}

// selected reports whether the Service features act on namespace.
func (c *coverage) selected(namespace string) bool {
	ns, _ := c.view.Namespace(namespace)
	return selectorguard.NamespaceSelected(c.cfg.ServiceNamespaces(), namespace, ns)
}

// truncate keeps a note within events.k8s.io's 1 kB.
func truncate(s string) string {
	const max = 1024
	if len(s) <= max {
		return s
	}
	return s[:max-3] + "..."
}

// The event handlers: each maps a change to the Services it may affect and
// queues them, coalesced.

func (c *coverage) enqueue(key types.NamespacedName) { c.queue.AddAfter(key, coalesce) }

// servicesSelecting queues the Services of namespace whose selector matches
// one of the label sets.
func (c *coverage) servicesSelecting(namespace string, labelSets ...map[string]string) {
	objs, err := c.services.ByIndex(toolscache.NamespaceIndex, namespace)
	if err != nil {
		return
	}
	for _, obj := range objs {
		svc, ok := obj.(*corev1.Service)
		if !ok || len(svc.Spec.Selector) == 0 {
			continue
		}
		sel := selectorguard.NewSelector(selectorguard.EffectiveSelector(svc))
		for _, l := range labelSets {
			if l != nil && sel.Matches(l) {
				c.enqueue(types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name})
				break
			}
		}
	}
}

func (c *coverage) serviceHandler() toolscache.ResourceEventHandler {
	key := func(obj any) {
		if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if svc, ok := obj.(*corev1.Service); ok {
			c.enqueue(types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name})
		}
	}
	return toolscache.ResourceEventHandlerFuncs{AddFunc: key, UpdateFunc: func(_, obj any) { key(obj) }, DeleteFunc: key}
}

// namespaceHandler: a namespace that opts in or out brings its Services
// into the check or out of it.
func (c *coverage) namespaceHandler() toolscache.ResourceEventHandler {
	return toolscache.ResourceEventHandlerFuncs{
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(*corev1.Namespace)
			n, ok2 := newObj.(*corev1.Namespace)
			if !ok1 || !ok2 || o.Labels[selectorguard.InjectLabel] == n.Labels[selectorguard.InjectLabel] {
				return
			}
			objs, _ := c.services.ByIndex(toolscache.NamespaceIndex, n.Name)
			for _, obj := range objs {
				if svc, ok := obj.(*corev1.Service); ok {
					c.enqueue(types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name})
				}
			}
		},
	}
}

// podHandler: a pod that appears, goes, is relabelled, or starts or stops
// being live changes what the Services selecting it route to.
func (c *coverage) podHandler() toolscache.ResourceEventHandler {
	changed := func(obj any) {
		if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if p, ok := obj.(*clusterview.Pod); ok {
			c.servicesSelecting(p.Namespace, p.Labels())
		}
	}
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc: changed,
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(*clusterview.Pod)
			n, ok2 := newObj.(*clusterview.Pod)
			if !ok1 || !ok2 {
				return
			}
			if o.SameLabels(n) && o.Terminating == n.Terminating && o.Finished == n.Finished {
				return // nothing the rules read: a status update
			}
			c.servicesSelecting(n.Namespace, o.Labels(), n.Labels())
		},
		DeleteFunc: changed,
	}
}

// workloadHandler: a workload's template labels and revision decide whether
// a Service matching its template but not its pods routes to part of it.
func (c *coverage) workloadHandler(templateLabels func(obj any) (namespace string, labels map[string]string, ok bool)) toolscache.ResourceEventHandler {
	changed := func(objs ...any) {
		for _, obj := range objs {
			if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if ns, l, ok := templateLabels(obj); ok {
				c.servicesSelecting(ns, l)
			}
		}
	}
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { changed(obj) },
		UpdateFunc: func(oldObj, newObj any) { changed(oldObj, newObj) },
		DeleteFunc: func(obj any) { changed(obj) },
	}
}

// workloadTemplate is the namespace and pod template labels of a lean
// workload (a ReplicaSet too: it is a Deployment's revision).
func workloadTemplate(obj any) (string, map[string]string, bool) {
	switch w := obj.(type) {
	case *appsv1.ReplicaSet:
		return w.Namespace, w.Spec.Template.Labels, true
	case *appsv1.Deployment:
		return w.Namespace, w.Spec.Template.Labels, true
	case *appsv1.StatefulSet:
		return w.Namespace, w.Spec.Template.Labels, true
	case *appsv1.DaemonSet:
		return w.Namespace, w.Spec.Template.Labels, true
	case *unstructured.Unstructured:
		l, _, _ := unstructured.NestedStringMap(w.Object, "spec", "template", "metadata", "labels")
		return w.GetNamespace(), l, true
	}
	return "", nil, false
}
