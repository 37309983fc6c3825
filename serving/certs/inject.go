package certs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	admissionregv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	admissionlisters "k8s.io/client-go/listers/admissionregistration/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// caKey is the Secret key that holds the CA certificate (as cert-manager
// writes it).
const caKey = "ca.crt"

// injectResync re-reads everything this often, so that a caBundle someone
// edited by hand is put back even without a watch event.
const injectResync = 5 * time.Minute

// injector keeps the caBundle of the named Mutating- and
// ValidatingWebhookConfigurations in step with the CA Secret. It watches
// only those objects (field selectors on their names, which RBAC
// resourceNames can authorize) and writes with Update, so a change made
// meanwhile by someone else (helm upgrade) is re-read, never overwritten.
type injector struct {
	client     kubernetes.Interface
	namespace  string
	secretName string
	names      []string
	grace      time.Duration
	now        func() time.Time
	log        logr.Logger

	secrets    corelisters.SecretNamespaceLister
	mutating   []admissionlisters.MutatingWebhookConfigurationLister
	validating []admissionlisters.ValidatingWebhookConfigurationLister
	queue      workqueue.TypedRateLimitingInterface[string]

	mu      sync.Mutex
	synced  bool  // a pass has completed since start
	lastErr error // of the last pass
}

// syncKey is the only work item: every event leads to one full pass.
const syncKey = "cabundle"

// run watches the Secret and the configurations and syncs until ctx ends.
func (in *injector) run(ctx context.Context) error {
	in.queue = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](100*time.Millisecond, 30*time.Second),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "netguard-cabundle"},
	)
	defer in.queue.ShutDown()
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { in.queue.Add(syncKey) },
		UpdateFunc: func(any, any) { in.queue.Add(syncKey) },
		DeleteFunc: func(any) { in.queue.Add(syncKey) },
	}
	byName := func(name string) informers.SharedInformerOption {
		return informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
		})
	}

	var synced []cache.InformerSynced
	secretFactory := informers.NewSharedInformerFactoryWithOptions(in.client, injectResync,
		informers.WithNamespace(in.namespace), byName(in.secretName))
	secretInformer := secretFactory.Core().V1().Secrets()
	if _, err := secretInformer.Informer().AddEventHandler(handler); err != nil {
		return err
	}
	in.secrets = secretInformer.Lister().Secrets(in.namespace)
	synced = append(synced, secretInformer.Informer().HasSynced)
	factories := []informers.SharedInformerFactory{secretFactory}
	for _, name := range in.names {
		f := informers.NewSharedInformerFactoryWithOptions(in.client, injectResync, byName(name))
		m := f.Admissionregistration().V1().MutatingWebhookConfigurations()
		v := f.Admissionregistration().V1().ValidatingWebhookConfigurations()
		for _, inf := range []cache.SharedIndexInformer{m.Informer(), v.Informer()} {
			if _, err := inf.AddEventHandler(handler); err != nil {
				return err
			}
			synced = append(synced, inf.HasSynced)
		}
		in.mutating = append(in.mutating, m.Lister())
		in.validating = append(in.validating, v.Lister())
		factories = append(factories, f)
	}
	for _, f := range factories {
		f.Start(ctx.Done())
		defer f.Shutdown()
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		if ctx.Err() != nil {
			return nil
		}
		return errors.New("caBundle injector: caches did not sync")
	}
	in.queue.Add(syncKey)
	go func() {
		<-ctx.Done()
		in.queue.ShutDown()
	}()
	for in.processNext(ctx) {
	}
	return nil
}

func (in *injector) processNext(ctx context.Context) bool {
	key, shutdown := in.queue.Get()
	if shutdown {
		return false
	}
	defer in.queue.Done(key)
	next, err := in.sync(ctx)
	in.mu.Lock()
	in.synced, in.lastErr = true, err
	in.mu.Unlock()
	if err != nil {
		if transient(err) {
			in.log.V(1).Info("caBundle pass to be retried", "reason", err.Error())
		} else {
			caBundleErrors.Inc()
			in.log.Error(err, "Updating caBundle failed; retrying")
		}
		in.queue.AddRateLimited(key)
		return true
	}
	in.queue.Forget(key)
	if !next.IsZero() {
		// The previous CA leaves the bundle at next.
		in.queue.AddAfter(key, next.Sub(in.now())+time.Second)
	}
	return true
}

// transient reports whether every error in err is one the next pass
// resolves by itself: no CA yet (the authority is about to write it) or a
// write conflict (the configuration changed since it was read; the change
// triggers the next pass).
func transient(err error) bool {
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range joined.Unwrap() {
			if !transient(e) {
				return false
			}
		}
		return true
	}
	return errors.Is(err, errNoCA) || apierrors.IsConflict(err)
}

// errNoCA means the authority has not written the CA Secret yet; the
// Secret's creation triggers the next pass.
var errNoCA = errors.New("CA Secret has no CA certificate yet")

// sync writes the caBundle of every webhook of the named configurations
// and returns when it must run again (the zero time: only on events).
func (in *injector) sync(ctx context.Context) (time.Time, error) {
	secret, err := in.secrets.Get(in.secretName)
	if apierrors.IsNotFound(err) {
		return time.Time{}, fmt.Errorf("%w (Secret %s/%s not found)", errNoCA, in.namespace, in.secretName)
	}
	if err != nil {
		return time.Time{}, err
	}
	ca := secret.Data[caKey]
	if len(ca) == 0 {
		return time.Time{}, fmt.Errorf("%w (Secret %s/%s has no %s)", errNoCA, in.namespace, in.secretName, caKey)
	}
	now := in.now()
	var next time.Time
	merge := func(kind, name string, cfg *admissionregv1.WebhookClientConfig) (bool, error) {
		b, err := MergeBundle(cfg.CABundle, ca, now, in.grace)
		if err != nil {
			return false, fmt.Errorf("%s %s: %w", kind, name, err)
		}
		if at := BundleRenewAt(b, in.grace); !at.IsZero() && (next.IsZero() || at.Before(next)) {
			next = at
		}
		if bytes.Equal(b, cfg.CABundle) {
			return false, nil
		}
		cfg.CABundle = b
		return true, nil
	}
	var errs []error
	for i, name := range in.names {
		if m, err := in.mutating[i].Get(name); err == nil {
			m = m.DeepCopy()
			changed := false
			for j := range m.Webhooks {
				c, err := merge("MutatingWebhookConfiguration", name, &m.Webhooks[j].ClientConfig)
				errs = append(errs, err)
				changed = changed || c
			}
			if changed {
				_, err := in.client.AdmissionregistrationV1().MutatingWebhookConfigurations().Update(ctx, m, metav1.UpdateOptions{})
				errs = append(errs, in.updated("MutatingWebhookConfiguration", name, err))
			}
		} else if !apierrors.IsNotFound(err) {
			errs = append(errs, err)
		}
		if v, err := in.validating[i].Get(name); err == nil {
			v = v.DeepCopy()
			changed := false
			for j := range v.Webhooks {
				c, err := merge("ValidatingWebhookConfiguration", name, &v.Webhooks[j].ClientConfig)
				errs = append(errs, err)
				changed = changed || c
			}
			if changed {
				_, err := in.client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Update(ctx, v, metav1.UpdateOptions{})
				errs = append(errs, in.updated("ValidatingWebhookConfiguration", name, err))
			}
		} else if !apierrors.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	return next, errors.Join(errs...)
}

func (in *injector) updated(kind, name string, err error) error {
	if err != nil {
		return fmt.Errorf("updating caBundle of %s %s: %w", kind, name, err)
	}
	caBundleUpdates.Inc()
	in.log.Info("Updated caBundle", "kind", kind, "name", name)
	return nil
}

// ready reports whether the last pass wrote every caBundle.
func (in *injector) ready() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if !in.synced {
		return errors.New("caBundle not written yet")
	}
	if in.lastErr != nil {
		return fmt.Errorf("caBundle not up to date: %w", in.lastErr)
	}
	return nil
}
