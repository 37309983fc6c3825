package clusterview

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/netguard-io/netguard/clusterview/listing"
	"github.com/netguard-io/netguard/config"
)

// ReadyzName is the name of the readiness check New adds.
const ReadyzName = "serviceguard-cache"

// Cache is the shared lean view of the cluster wired into a manager: the
// informers, their stores and the View over them.
type Cache struct {
	cache     cache.Cache
	view      *View
	stores    Stores
	informers []cache.Informer
	// byObject holds each informer by the object it watches.
	byObject map[client.Object]cache.Informer
	rollouts bool
	disabled bool
}

// New builds the lean view of the cluster and wires it into mgr: a cache
// of its own for Pods, ReplicaSets, Deployments, StatefulSets, DaemonSets,
// Namespaces, Services and, when the CRD exists and netguard may list
// them, Argo Rollouts, each through its Transform and with the indexes the
// view needs. It adds the cache to mgr (started on every replica, without
// leader election) and the readiness check ReadyzName, which fails until
// the cache has synced. Informers returns the informers, for controllers
// that add event handlers before mgr starts.
//
// The cache is separate from mgr's so that its lean Pods (labels, owner,
// phase and little else) never reach other readers of mgr's client.
//
// With the Service guard disabled in cfg (serviceGuard.enabled), New
// starts no informer and returns a Cache without a view that counts as
// synced.
func New(mgr manager.Manager, cfg *config.Config) (*Cache, error) {
	if !cfg.ServiceGuard.Enabled {
		return &Cache{disabled: true}, nil
	}
	ctx := context.Background()
	log := mgr.GetLogger().WithName("serviceguard")

	rollouts, err := rolloutsAvailable(ctx, mgr, log)
	if err != nil {
		return nil, err
	}
	if !rollouts {
		log.Info("not watching Argo Rollouts: the CRD is not installed or netguard may not list them")
	}

	byObject := map[client.Object]cache.ByObject{
		&corev1.Pod{}:         {Transform: TransformPod},
		&appsv1.ReplicaSet{}:  {Transform: TransformReplicaSet},
		&appsv1.Deployment{}:  {Transform: TransformDeployment},
		&appsv1.StatefulSet{}: {Transform: TransformStatefulSet},
		&appsv1.DaemonSet{}:   {Transform: TransformDaemonSet},
		&corev1.Namespace{}:   {Transform: TransformNamespace},
		&corev1.Service{}:     {Transform: TransformService},
	}
	rollout := &unstructured.Unstructured{}
	rollout.SetGroupVersionKind(RolloutGVK)
	if rollouts {
		byObject[rollout] = cache.ByObject{Transform: TransformRollout}
	}
	for obj, o := range byObject {
		// The view reads the stores and never modifies what it reads.
		o.UnsafeDisableDeepCopy = ptr.To(true)
		byObject[obj] = o
	}
	c, err := cache.New(mgr.GetConfig(), cache.Options{
		HTTPClient:                  mgr.GetHTTPClient(),
		Scheme:                      clientgoscheme.Scheme,
		Mapper:                      mgr.GetRESTMapper(),
		ByObject:                    byObject,
		ReaderFailOnMissingInformer: true,
		// Lists are paged and made lean page by page.
		NewInformer: listing.NewInformer,
	})
	if err != nil {
		return nil, fmt.Errorf("creating the service guard cache: %w", err)
	}

	cv := &Cache{cache: c, rollouts: rollouts, byObject: map[client.Object]cache.Informer{}}
	store := func(obj client.Object, indexers toolscache.Indexers) (toolscache.Indexer, error) {
		inf, err := c.GetInformer(ctx, obj, cache.BlockUntilSynced(false))
		if err != nil {
			return nil, fmt.Errorf("informer for %T: %w", obj, err)
		}
		if len(indexers) > 0 {
			if err := inf.AddIndexers(indexers); err != nil {
				return nil, fmt.Errorf("indexes for %T: %w", obj, err)
			}
		}
		si, ok := inf.(interface{ GetIndexer() toolscache.Indexer })
		if !ok {
			return nil, fmt.Errorf("informer for %T has no indexer", obj)
		}
		cv.informers = append(cv.informers, inf)
		cv.byObject[obj] = inf
		return si.GetIndexer(), nil
	}
	var s Stores
	for _, x := range []struct {
		into     *toolscache.Indexer
		obj      client.Object
		indexers toolscache.Indexers
	}{
		{&s.Pods, &corev1.Pod{}, PodIndexers()},
		{&s.ReplicaSets, &appsv1.ReplicaSet{}, ReplicaSetIndexers()},
		{&s.Deployments, &appsv1.Deployment{}, WorkloadIndexers()},
		{&s.StatefulSets, &appsv1.StatefulSet{}, WorkloadIndexers()},
		{&s.DaemonSets, &appsv1.DaemonSet{}, WorkloadIndexers()},
		{&s.Namespaces, &corev1.Namespace{}, nil},
		{&s.Services, &corev1.Service{}, nil},
	} {
		if *x.into, err = store(x.obj, x.indexers); err != nil {
			return nil, err
		}
	}
	if rollouts {
		if s.Rollouts, err = store(rollout, nil); err != nil {
			return nil, err
		}
	}
	cv.view = NewView(s)
	cv.stores = s

	if err := mgr.Add(cacheRunnable{c}); err != nil {
		return nil, fmt.Errorf("adding the service guard cache: %w", err)
	}
	if err := mgr.AddReadyzCheck(ReadyzName, cv.Ready); err != nil {
		return nil, fmt.Errorf("adding the service guard readiness check: %w", err)
	}
	return cv, nil
}

// rolloutsAvailable reports whether Argo Rollouts' CRD is installed and
// netguard may list Rollouts. A forbidden list is not an error: the view
// then works without Rollouts rather than never becoming ready.
func rolloutsAvailable(ctx context.Context, mgr manager.Manager, log logr.Logger) (bool, error) {
	if _, err := mgr.GetRESTMapper().RESTMapping(RolloutGVK.GroupKind(), RolloutGVK.Version); err != nil {
		if meta.IsNoMatchError(err) {
			return false, nil
		}
		return false, fmt.Errorf("looking up %s: %w", RolloutGVK.GroupKind(), err)
	}
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(RolloutGVK.GroupVersion().WithKind(RolloutGVK.Kind + "List"))
	if err := mgr.GetAPIReader().List(ctx, list, client.Limit(1)); err != nil {
		if apierrors.IsForbidden(err) {
			log.Error(err, "netguard may not list Argo Rollouts; Rollouts are not watched")
			return false, nil
		}
		return false, fmt.Errorf("listing %s: %w", RolloutGVK.GroupKind(), err)
	}
	return true, nil
}

// cacheRunnable runs the cache on every replica: every replica
// serves admission reviews.
type cacheRunnable struct{ cache cache.Cache }

func (r cacheRunnable) Start(ctx context.Context) error { return r.cache.Start(ctx) }

// NeedLeaderElection implements manager.LeaderElectionRunnable.
func (cacheRunnable) NeedLeaderElection() bool { return false }

// Stores are the lean stores the view reads (zero when disabled).
func (c *Cache) Stores() Stores { return c.stores }

// View is the view of the cluster (nil when disabled).
func (c *Cache) View() *View { return c.view }

// Informers are the informers of the stores, by the object each watches:
// a *corev1.Pod, *corev1.Service, *corev1.Namespace, *appsv1.ReplicaSet,
// *appsv1.Deployment, *appsv1.StatefulSet, *appsv1.DaemonSet and, when
// watched, an *unstructured.Unstructured of RolloutGVK (none when
// disabled). Read only; event handlers are added before the manager
// starts.
func (c *Cache) Informers() map[client.Object]cache.Informer { return c.byObject }

// WatchesRollouts reports whether Argo Rollouts are part of the view.
func (c *Cache) WatchesRollouts() bool { return c.rollouts }

// Synced reports whether every informer of the view has synced.
func (c *Cache) Synced() bool {
	if c.disabled {
		return true
	}
	for _, inf := range c.informers {
		if !inf.HasSynced() {
			return false
		}
	}
	return true
}

// WaitForSync blocks until the view has synced or ctx ends, and reports
// whether it synced.
func (c *Cache) WaitForSync(ctx context.Context) bool {
	if c.disabled {
		return true
	}
	return c.cache.WaitForCacheSync(ctx)
}

// Ready is a healthz.Checker that fails until the view has synced.
func (c *Cache) Ready(_ *http.Request) error {
	if !c.Synced() {
		return errors.New("service guard cache not synced")
	}
	return nil
}
