package listing_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/netguard-io/netguard/clusterview/listing"
	"github.com/netguard-io/netguard/internal/testlog"
	"github.com/netguard-io/netguard/test/ports"
)

func init() { testlog.Discard() }

// recorder passes calls to a real ListerWatcher and records each list
// request and how many objects the transform had seen when it was made.
type recorder struct {
	toolscache.ListerWatcherWithContext
	mu          sync.Mutex
	lists       []metav1.ListOptions
	transformed []int
	seen        int
}

func (r *recorder) ListWithContext(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
	r.mu.Lock()
	r.lists = append(r.lists, opts)
	r.transformed = append(r.transformed, r.seen)
	r.mu.Unlock()
	return r.ListerWatcherWithContext.ListWithContext(ctx, opts)
}

func (r *recorder) List(opts metav1.ListOptions) (runtime.Object, error) {
	return r.ListWithContext(context.Background(), opts)
}

func (r *recorder) Watch(opts metav1.ListOptions) (watch.Interface, error) {
	return r.WatchWithContext(context.Background(), opts)
}

// IsWatchListSemanticsUnSupported makes the reflector list, as it does
// against an API server without streaming lists.
func (r *recorder) IsWatchListSemanticsUnSupported() bool { return true }

// lean is what the test's transform keeps of a pod.
func lean(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok || p.Spec.Containers == nil {
		return obj, nil
	}
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name, ResourceVersion: p.ResourceVersion}}, nil
}

// TestInformerListsInTransformedPages runs an informer from NewInformer
// against a real API server holding more pods than fit in two pages: the
// initial list is made of pages of PageSize of the most recent data, each
// page transformed before the next is requested, and the cache gets every
// pod, lean.
func TestInformerListsInTransformedPages(t *testing.T) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		if os.Getenv("NETGUARD_REQUIRE_ENVTEST") != "" {
			t.Fatal("KUBEBUILDER_ASSETS is not set (see hack/envtest-assets.sh)")
		}
		t.Skip("KUBEBUILDER_ASSETS is not set (see hack/envtest-assets.sh)")
	}
	env := &envtest.Environment{}
	cfg, release, err := ports.StartEnvtest(env)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop(); release() })
	cfg.QPS, cfg.Burst = 1000, 2000
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "pages"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	const n = 2*listing.PageSize + 7
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				pod := &corev1.Pod{
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p-%04d", i)},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "img"}}},
				}
				if _, err := cs.CoreV1().Pods("pages").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	rec := &recorder{ListerWatcherWithContext: toolscache.ToListerWatcherWithContext(
		toolscache.NewListWatchFromClient(cs.CoreV1().RESTClient(), "pods", metav1.NamespaceAll, fields.Everything()))}
	inf := listing.NewInformer(rec, &corev1.Pod{}, 0, toolscache.Indexers{})
	if err := inf.SetTransform(func(obj any) (any, error) {
		out, err := lean(obj)
		if out != obj {
			rec.mu.Lock()
			rec.seen++
			rec.mu.Unlock()
		}
		return out, err
	}); err != nil {
		t.Fatal(err)
	}
	go inf.RunWithContext(ctx)
	if !toolscache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		t.Fatal("the informer did not sync")
	}

	items := inf.GetStore().List()
	if len(items) != n {
		t.Fatalf("the cache holds %d pods, want %d", len(items), n)
	}
	for _, obj := range items {
		if p := obj.(*corev1.Pod); p.Spec.Containers != nil || p.Name == "" {
			t.Fatalf("cached pod is not the transform's: %+v", p)
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.lists) != 3 {
		t.Fatalf("%d list requests, want 3 pages: %+v", len(rec.lists), rec.lists)
	}
	for i, opts := range rec.lists {
		if opts.Limit != listing.PageSize {
			t.Errorf("page %d: limit %d, want %d", i, opts.Limit, listing.PageSize)
		}
		if i == 0 && (opts.ResourceVersion != "" || opts.ResourceVersionMatch != "" || opts.Continue != "") {
			t.Errorf("first page: resourceVersion %q match %q continue %q, want the most recent data", opts.ResourceVersion, opts.ResourceVersionMatch, opts.Continue)
		}
		if i > 0 && opts.Continue == "" {
			t.Errorf("page %d has no continue token", i)
		}
		if want := i * listing.PageSize; rec.transformed[i] != want {
			t.Errorf("page %d was requested after %d objects were transformed, want %d (the pages before it)", i, rec.transformed[i], want)
		}
	}
}
