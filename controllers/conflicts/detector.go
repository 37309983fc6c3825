package conflicts

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/netguard-io/netguard/clusterview"
	"github.com/netguard-io/netguard/clusterview/listing"
	"github.com/netguard-io/netguard/config"
	policy "github.com/netguard-io/netguard/policies/conflicts"
)

const (
	// ReadyzName is the name of the readiness check Setup adds: it fails
	// until the detector has seen every Service once.
	ReadyzName = "conflicts-cache"
	// EventReason is the reason of the Event on a Service in conflict.
	EventReason = "ControllersConflict"
	// eventAction is the events.k8s.io/v1 action of that Event.
	eventAction = "DetectConflict"
	// reportingController names netguard in the Events it records.
	reportingController = "netguard"
	// maxEventNote is the events.k8s.io/v1 limit on an Event's note.
	maxEventNote = 1024
	// lbControllerTTL is how long a load-balancer controller counts after
	// it was last seen owning a Service's status.
	lbControllerTTL = time.Hour
	// injectLabel on a Namespace opts it in ("enabled") or, in cluster-wide
	// mode, out ("disabled").
	injectLabel = "netguard.io/inject"
)

// advice follows the conflict message in Events and warnings.
const advice = "Usually two controllers reconcile this Service and undo each other's writes, which makes it flap: keep one of them " +
	"(for load balancers, give the Service the spec.loadBalancerClass of the one that should own it; it can only be set at creation)"

// Detector watches Services for field managers fighting over them. The
// zero value and a disabled Detector report nothing.
type Detector struct {
	settings config.ConflictsConfig
	tracker  *policy.Tracker
	lb       *policy.LoadBalancerControllers
	recorder events.EventRecorder
	log      logr.Logger
	// selected reports whether netguard acts on the namespace.
	selected func(namespace string) bool

	cache      cache.Cache
	synced     func() bool
	sweepEvery time.Duration
}

var (
	_ manager.Runnable               = (*Detector)(nil)
	_ manager.LeaderElectionRunnable = (*Detector)(nil)
)

// Setup wires the detector into mgr: a cache of its own with lean Services
// (identity, managedFields, type, loadBalancerClass) and Namespaces
// (labels), an event handler on Services, and the expiry of old entries,
// all run by mgr on every replica (each replica answers admission reviews);
// Events are recorded through mgr's events.k8s.io/v1 recorder. It adds
// the readiness check ReadyzName. The admission handlers that ask the
// detector are in webhook/conflicts.
//
// With the detector disabled in cfg, Setup returns a Detector that reports
// nothing; no informer is started.
func Setup(mgr manager.Manager, cfg *config.Config) (*Detector, error) {
	if !cfg.Conflicts.Enabled {
		return &Detector{}, nil
	}
	ctx := context.Background()
	d := New(cfg, clock.RealClock{}, mgr.GetEventRecorder(reportingController), mgr.GetLogger().WithName("conflicts"))

	c, err := cache.New(mgr.GetConfig(), cache.Options{
		HTTPClient: mgr.GetHTTPClient(),
		Scheme:     clientgoscheme.Scheme,
		Mapper:     mgr.GetRESTMapper(),
		ByObject: map[client.Object]cache.ByObject{
			// The detector never modifies what it reads.
			&corev1.Service{}: {Transform: TransformService, UnsafeDisableDeepCopy: ptr.To(true)},
			// The same lean Namespaces as the Service guard keeps.
			&corev1.Namespace{}: {Transform: clusterview.TransformNamespace, UnsafeDisableDeepCopy: ptr.To(true)},
		},
		ReaderFailOnMissingInformer: true,
		// Lists are paged and made lean page by page.
		NewInformer: listing.NewInformer,
	})
	if err != nil {
		return nil, fmt.Errorf("creating the conflict detector cache: %w", err)
	}
	nsInformer, err := c.GetInformer(ctx, &corev1.Namespace{}, cache.BlockUntilSynced(false))
	if err != nil {
		return nil, fmt.Errorf("informer for Namespaces: %w", err)
	}
	svcInformer, err := c.GetInformer(ctx, &corev1.Service{}, cache.BlockUntilSynced(false))
	if err != nil {
		return nil, fmt.Errorf("informer for Services: %w", err)
	}
	reg, err := svcInformer.AddEventHandler(d.EventHandler())
	if err != nil {
		return nil, fmt.Errorf("watching Services: %w", err)
	}
	nsStore, ok := nsInformer.(interface{ GetIndexer() toolscache.Indexer })
	if !ok {
		return nil, errors.New("the Namespace informer has no indexer")
	}
	d.cache = c
	d.synced = func() bool { return nsInformer.HasSynced() && reg.HasSynced() }
	// Read from the store without waiting for it: neither an admission
	// review nor the Service event handler may block on a cache.
	d.selected = func(namespace string) bool {
		var label string
		if obj, exists, _ := nsStore.GetIndexer().GetByKey(namespace); exists {
			if ns, ok := obj.(*corev1.Namespace); ok {
				label = ns.Labels[injectLabel]
			}
		}
		return cfg.ServiceNamespaces().Selects(namespace, label)
	}

	if err := mgr.Add(d); err != nil {
		return nil, fmt.Errorf("adding the conflict detector: %w", err)
	}
	if err := mgr.AddReadyzCheck(ReadyzName, d.Ready); err != nil {
		return nil, fmt.Errorf("adding the conflict detector readiness check: %w", err)
	}
	return d, nil
}

// New returns a detector without an informer: Setup connects one; tests
// feed it Service events through EventHandler. It acts on the namespaces
// cfg selects whatever their labels (Setup reads the labels).
func New(cfg *config.Config, clk clock.PassiveClock, recorder events.EventRecorder, log logr.Logger) *Detector {
	window := cfg.Conflicts.WindowDuration()
	return &Detector{
		settings: cfg.Conflicts,
		tracker: policy.NewTracker(policy.Settings{
			Flips:      cfg.Conflicts.Flips,
			Window:     window,
			MaxTracked: cfg.Conflicts.MaxTracked,
		}, clk),
		lb:         policy.NewLoadBalancerControllers(clk, lbControllerTTL),
		recorder:   recorder,
		log:        log,
		selected:   func(ns string) bool { return cfg.ServiceNamespaces().Selects(ns, "") },
		sweepEvery: min(max(window/10, time.Second), 30*time.Second),
	}
}

// Enabled reports whether d detects anything.
func (d *Detector) Enabled() bool { return d != nil && d.tracker != nil }

// Selected reports whether netguard acts on namespace. It reads the
// Namespace from the store without waiting for it.
func (d *Detector) Selected(namespace string) bool { return d.selected(namespace) }

// EventHandler is the handler of Service events: the informer Setup
// starts calls it.
func (d *Detector) EventHandler() toolscache.ResourceEventHandler {
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc:    d.onAdd,
		UpdateFunc: d.onUpdate,
		DeleteFunc: d.onDelete,
	}
}

// Start runs the cache and expires old entries until ctx ends.
func (d *Detector) Start(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- d.cache.Start(ctx) }()
	tick := time.NewTicker(d.sweepEvery)
	defer tick.Stop()
	for {
		select {
		case err := <-errc:
			return err
		case <-tick.C:
			d.expire()
		}
	}
}

// NeedLeaderElection implements manager.LeaderElectionRunnable: every
// replica answers admission reviews, so every replica tracks.
func (*Detector) NeedLeaderElection() bool { return false }

// Ready is a healthz.Checker that fails until the detector has seen every
// Service and Namespace once.
func (d *Detector) Ready(_ *http.Request) error {
	if d.Enabled() && d.synced != nil && !d.synced() {
		return errors.New("conflict detector cache not synced")
	}
	return nil
}

// Warnings returns the admission warnings for an update of Service
// namespace/name: one while the Service is in conflict, none otherwise.
func (d *Detector) Warnings(namespace, name string) []string {
	if !d.Enabled() {
		return nil
	}
	c, ok := d.tracker.Conflict(types.NamespacedName{Namespace: namespace, Name: name})
	if !ok {
		return nil
	}
	return []string{c.Message() + ". " + advice + "."}
}

// LoadBalancerControllers returns the field managers seen writing the
// status of LoadBalancer Services without spec.loadBalancerClass.
func (d *Detector) LoadBalancerControllers() []string {
	if !d.Enabled() {
		return nil
	}
	return d.lb.List()
}

// Review judges a CREATE (old nil) or UPDATE of svc at admission and
// returns its warnings and, in deny mode, the denial. Services in
// namespaces netguard does not act on get neither. The rules:
//
//   - a Service created or changed to type LoadBalancer without
//     spec.loadBalancerClass, while two or more load-balancer controllers
//     write Service status, gets the static hint;
//   - an update of a Service in conflict gets the conflict warning;
//   - in deny mode, an update of a Service in conflict that takes fields
//     from one of the managers in the conflict is denied, so the current
//     owner keeps them until the conflict ends.
//
// svc and old must carry their managedFields, as admission requests do
// (the API server has already attributed the write when it calls
// validating webhooks).
func (d *Detector) Review(old, svc *corev1.Service) ([]string, *apierrors.StatusError) {
	if !d.Enabled() || !d.selected(svc.Namespace) {
		return nil, nil
	}
	var warnings []string
	if old == nil || old.Spec.Type != corev1.ServiceTypeLoadBalancer {
		warnings = append(warnings, policy.StaticHints(svc, d.lb.List())...)
	}
	if old == nil {
		return warnings, nil
	}
	c, ok := d.tracker.Conflict(types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name})
	if !ok {
		return warnings, nil
	}
	warnings = append(warnings, c.Message()+". "+advice+".")
	if d.settings.Mode != config.ConflictModeDeny {
		return warnings, nil
	}
	for _, to := range policy.Takeovers(old.ManagedFields, svc.ManagedFields) {
		for _, from := range to.From {
			if !contains(c.Managers, from) {
				continue
			}
			denialsTotal.Inc()
			msg := fmt.Sprintf("field manager %q may not take fields from %q while they are in conflict over this Service (conflicts.mode is deny); "+
				"writes are admitted again once no takeover has been seen for %s", to.Manager, from, c.Window)
			var errs field.ErrorList
			for _, f := range to.Fields {
				errs = append(errs, field.Forbidden(field.NewPath(f), msg))
			}
			return warnings, apierrors.NewInvalid(schema.GroupKind{Kind: "Service"}, svc.Name, errs)
		}
	}
	return warnings, nil
}

func contains(names []string, name string) bool {
	for _, n := range names {
		if n == name {
			return true
		}
	}
	return false
}

func (d *Detector) onAdd(obj any) {
	if svc, ok := obj.(*corev1.Service); ok {
		d.observeLoadBalancer(nil, svc)
	}
}

// observeLoadBalancer keeps the load-balancer controllers up to date with
// one change of a Service (old nil: added; svc nil: deleted).
func (d *Detector) observeLoadBalancer(old, svc *corev1.Service) {
	d.lb.Observe(old, svc)
	for _, s := range []*corev1.Service{old, svc} {
		if s != nil && s.Spec.Type == corev1.ServiceTypeLoadBalancer {
			lbControllers.Set(float64(len(d.lb.List())))
			return
		}
	}
}

func (d *Detector) onUpdate(oldObj, newObj any) {
	old, ok1 := oldObj.(*corev1.Service)
	svc, ok2 := newObj.(*corev1.Service)
	if !ok1 || !ok2 || old.ResourceVersion == svc.ResourceVersion {
		return
	}
	d.observeLoadBalancer(old, svc)
	if !d.selected(svc.Namespace) {
		return
	}
	takeovers := policy.Takeovers(old.ManagedFields, svc.ManagedFields)
	out := d.tracker.Observe(types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}, takeovers)
	for _, to := range takeovers {
		d.log.V(1).Info("field manager took fields of a Service", "service", client.ObjectKeyFromObject(svc),
			"manager", to.Manager, "from", to.From, "fields", to.Fields)
	}
	d.ended(out.Ended)
	if out.Started {
		conflictsTotal.Inc()
		d.log.Info("controllers conflict over a Service", "service", out.Conflict.Service,
			"managers", out.Conflict.Managers, "fields", out.Conflict.Fields, "takeovers", out.Conflict.Takeovers, "window", out.Conflict.Window)
	}
	if out.Report {
		note := out.Conflict.Message() + ". " + advice + "."
		if len(note) > maxEventNote {
			note = note[:maxEventNote-3] + "..."
		}
		d.recorder.Eventf(svc, nil, corev1.EventTypeWarning, EventReason, eventAction, "%s", note)
	}
	d.setGauges()
	// Counted last: once a takeover shows in the metric, the decision it
	// led to shows in the others.
	takeoversTotal.Add(float64(len(takeovers)))
}

func (d *Detector) onDelete(obj any) {
	if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	svc, ok := obj.(*corev1.Service)
	if !ok {
		return
	}
	d.observeLoadBalancer(svc, nil)
	if c, was := d.tracker.Forget(types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}); was {
		d.log.Info("Service in conflict deleted", "service", c.Service, "managers", c.Managers)
	}
	d.setGauges()
}

// expire forgets Services with no takeover for a window and logs the
// conflicts that thereby ended.
func (d *Detector) expire() {
	d.ended(d.tracker.Expire())
	d.setGauges()
	lbControllers.Set(float64(len(d.lb.List())))
}

func (d *Detector) ended(ended []policy.Ended) {
	for _, e := range ended {
		if e.Evicted {
			d.log.Info("forgetting a Service in conflict to stay within conflicts.maxTracked", "service", e.Service,
				"managers", e.Managers, "maxTracked", d.settings.MaxTracked)
			continue
		}
		d.log.Info("conflict over a Service ended: no takeover within the window", "service", e.Service,
			"managers", e.Managers, "takeovers", e.Takeovers, "window", e.Window)
	}
}

func (d *Detector) setGauges() {
	servicesInConflict.Set(float64(d.tracker.InConflict()))
	servicesTracked.Set(float64(d.tracker.Len()))
}
