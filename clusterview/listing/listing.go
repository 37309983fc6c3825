package listing

import (
	"context"
	"fmt"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	toolscache "k8s.io/client-go/tools/cache"
)

// PageSize is the number of objects per page of a list.
const PageSize = 500

// NewInformer is a controller-runtime cache.Options.NewInformer: it
// returns a shared index informer whose lists are paged and transformed
// page by page with the transform set on the informer (cache.ByObject's
// Transform). Watches, including streaming lists, pass through unchanged.
func NewInformer(lw toolscache.ListerWatcher, obj runtime.Object, resync time.Duration, indexers toolscache.Indexers) toolscache.SharedIndexInformer {
	l := &pagedLister{next: toolscache.ToListerWatcherWithContext(lw)}
	return &informer{
		SharedIndexInformer: toolscache.NewSharedIndexInformer(l, obj, resync, indexers),
		lister:              l,
	}
}

// informer records the transform set on it for its lister.
type informer struct {
	toolscache.SharedIndexInformer
	lister *pagedLister
}

// SetTransform implements toolscache.SharedIndexInformer.
func (i *informer) SetTransform(f toolscache.TransformFunc) error {
	if err := i.SharedIndexInformer.SetTransform(f); err != nil {
		return err
	}
	i.lister.setTransform(f)
	return nil
}

// pagedLister lists in pages, transformed page by page.
type pagedLister struct {
	next toolscache.ListerWatcherWithContext

	mu        sync.Mutex
	transform toolscache.TransformFunc
}

var (
	_ toolscache.ListerWatcher            = (*pagedLister)(nil)
	_ toolscache.ListerWatcherWithContext = (*pagedLister)(nil)
)

func (l *pagedLister) setTransform(f toolscache.TransformFunc) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.transform = f
}

// ListWithContext lists every object, in pages of PageSize of the most
// recent data (which is never older than a resourceVersion the caller
// asks for), and returns them in one list, each page transformed before
// the next is fetched. Paging is its own: a limit or continue token the
// caller sets is not used (client-go's reflector pages a list that is
// then held whole; a page the API server answers with a continue token
// would be taken for the whole list by its pager's fallback).
func (l *pagedLister) ListWithContext(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
	l.mu.Lock()
	transform := l.transform
	l.mu.Unlock()
	opts.ResourceVersion, opts.ResourceVersionMatch, opts.Continue = "", "", ""
	opts.Limit = PageSize
	out := &metainternalversion.List{}
	for {
		page, err := l.next.ListWithContext(ctx, opts)
		if err != nil {
			return nil, err
		}
		lm, err := meta.ListAccessor(page)
		if err != nil {
			return nil, err
		}
		if opts.Continue == "" {
			// The whole list is consistent at the first page's version.
			out.ResourceVersion = lm.GetResourceVersion()
		}
		// Without a transform, items are copied out of the page, so that
		// one kept item does not keep the whole page.
		each := meta.EachListItemWithAlloc
		if transform != nil {
			each = meta.EachListItem
		}
		if err := each(page, func(obj runtime.Object) error {
			if transform != nil {
				lean, err := transform(obj)
				if err != nil {
					return err
				}
				o, ok := lean.(runtime.Object)
				if !ok {
					return fmt.Errorf("transform returned %T, not a runtime.Object", lean)
				}
				obj = o
			}
			out.Items = append(out.Items, obj)
			return nil
		}); err != nil {
			return nil, err
		}
		if opts.Continue = lm.GetContinue(); opts.Continue == "" {
			return out, nil
		}
	}
}

// List implements toolscache.Lister.
func (l *pagedLister) List(opts metav1.ListOptions) (runtime.Object, error) {
	return l.ListWithContext(context.Background(), opts)
}

// WatchWithContext implements toolscache.WatcherWithContext.
func (l *pagedLister) WatchWithContext(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	return l.next.WatchWithContext(ctx, opts)
}

// Watch implements toolscache.Watcher.
func (l *pagedLister) Watch(opts metav1.ListOptions) (watch.Interface, error) {
	return l.next.WatchWithContext(context.Background(), opts)
}
