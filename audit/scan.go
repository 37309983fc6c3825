package audit

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/netguard-io/netguard/clusterview"
	"github.com/netguard-io/netguard/config"
	"github.com/netguard-io/netguard/policies/podpolicy"
	"github.com/netguard-io/netguard/policies/selectorguard"
)

// PageSize is the number of objects per list request: at most one page of
// full objects is in memory at a time.
const PageSize = 500

// requestTimeout bounds each request to the API server.
const requestTimeout = time.Minute

// Options change a scan.
type Options struct {
	// Namespace limits the scan to one namespace; empty scans all.
	Namespace string
	// Version is netguard's version, as the webhook records it.
	Version string
	// Progress, when set, gets a line every ProgressInterval while the scan
	// runs (none for a scan shorter than that).
	Progress io.Writer
	// ProgressInterval defaults to 5 seconds.
	ProgressInterval time.Duration
	// Live, inside a running netguard serve, are the Service guard's stores:
	// namespaces, workloads, Services and lean pods are read from them
	// instead of listed. Only the pods the pod policies judge are listed,
	// namespace by namespace, in the namespaces they act on that hold
	// pods, from the API server's watch cache (see readLivePods).
	Live *clusterview.Stores
	// Passes adds a pass result for each judged Service without findings.
	Passes bool
}

// Run scans the cluster restCfg points at with the settings cfg, read-only,
// and returns the report. It fails when the API server cannot be reached
// or refuses a list the scan needs.
func Run(ctx context.Context, restCfg *rest.Config, cfg *config.Config, opts Options) (*Report, error) {
	s, err := newScanner(restCfg, cfg, opts)
	if err != nil {
		return nil, err
	}
	if opts.Progress != nil {
		interval := opts.ProgressInterval
		if interval <= 0 {
			interval = 5 * time.Second
		}
		stop := s.progress.run(opts.Progress, interval)
		defer stop()
	}
	if err := s.scan(ctx); err != nil {
		return nil, fmt.Errorf("scanning the cluster at %s: %w", restCfg.Host, err)
	}
	s.report.finish()
	// A copy, so that the scanner and its stores can be collected while
	// the report is written.
	report := s.report
	return &report, nil
}

// scanner carries one scan.
type scanner struct {
	cfg    *config.Config
	opts   Options
	cs     kubernetes.Interface
	dyn    dynamic.Interface
	reader client.Reader // for the cluster DNS Service, as the webhook reads it

	// namespaces are the scanned namespaces' facts, as the pod webhook
	// reads them.
	namespaces map[string]podpolicy.NamespaceInfo
	stores     clusterview.Stores
	pods       *podJudge
	progress   progress
	report     Report
}

func newScanner(restCfg *rest.Config, cfg *config.Config, opts Options) (*scanner, error) {
	base := rest.CopyConfig(restCfg)
	if base.Timeout == 0 {
		base.Timeout = requestTimeout
	}
	// The scan's requests are sequential; the client's default of 5 per
	// second would pace them, not protect the API server.
	base.QPS, base.Burst = 50, 100
	base.UserAgent = "netguard-audit/" + opts.Version
	// Built-in types in protobuf: smaller pages, decoded faster.
	typed := rest.CopyConfig(base)
	typed.ContentType = runtime.ContentTypeProtobuf
	typed.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	cs, err := kubernetes.NewForConfig(typed)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(base)
	if err != nil {
		return nil, err
	}
	reader, err := client.New(base, client.Options{Scheme: clientgoscheme.Scheme})
	if err != nil {
		return nil, err
	}
	return &scanner{
		cfg: cfg, opts: opts, cs: cs, dyn: dyn, reader: reader,
		namespaces: map[string]podpolicy.NamespaceInfo{},
		report: Report{Header: Header{
			APIVersion: APIVersion,
			Kind:       Kind,
			Namespace:  opts.Namespace,
			Settings: Settings{
				NamespaceMode:        cfg.Namespaces.Mode,
				ServiceNamespaceMode: cfg.ServiceNamespaces().Mode,
				ServiceGuardMode:     string(cfg.ServiceGuard.Mode),
			},
		}},
	}, nil
}

func (s *scanner) scan(ctx context.Context) error {
	if !s.cfg.ServiceGuard.Enabled {
		s.report.Settings.ServiceGuardMode = "disabled"
	}
	if err := s.readNamespaces(ctx); err != nil {
		return err
	}
	judgePods, judgeServices := s.anySelected()
	if !judgePods && !judgeServices {
		s.note("%s", s.nothingSelected())
		return nil
	}
	rollouts := false
	if judgeServices && s.opts.Live == nil {
		var err error
		if rollouts, err = s.rolloutsListable(ctx); err != nil {
			return err
		}
	}
	if s.opts.Live != nil {
		s.stores = *s.opts.Live
	} else {
		s.stores = clusterview.NewStores(rollouts)
	}
	if judgePods {
		s.pods = newPodJudge(s.cfg, s.opts.Version, s.stores.ReplicaSets)
		s.pods.env.ClusterDNS = s.clusterDNS(ctx)
		s.report.Settings.ClusterDNS = s.pods.env.ClusterDNS
	}
	if s.opts.Live == nil {
		if err := s.readWorkloads(ctx, judgeServices, rollouts); err != nil {
			return err
		}
	}
	if s.opts.Live == nil || judgePods {
		if err := s.readPods(ctx); err != nil {
			return err
		}
	}
	if s.pods != nil {
		s.report.Results = append(s.report.Results, s.pods.results()...)
	}
	if judgeServices {
		s.judgeServices()
	}
	return nil
}

func (s *scanner) note(format string, args ...any) {
	s.report.Notes = append(s.report.Notes, fmt.Sprintf(format, args...))
}

// podsSelected reports whether the pod policies act on namespace ns.
func (s *scanner) podsSelected(ns string) bool {
	if !s.cfg.DNS.Enabled && !s.cfg.DNSProxy.Enabled {
		return false
	}
	ok, _ := podpolicy.NamespaceSelected(s.namespace(ns), s.cfg)
	return ok
}

// servicesSelected reports whether the Service guard acts on namespace ns,
// as selectorguard.ReviewService decides it.
func (s *scanner) servicesSelected(ns string) bool {
	return s.cfg.ServiceGuard.Enabled &&
		s.cfg.ServiceNamespaces().Selects(ns, s.namespace(ns).Labels[podpolicy.LabelInject])
}

// namespace returns what the scan read of namespace ns; a namespace
// created after the scan read them has no labels or annotations.
func (s *scanner) namespace(ns string) podpolicy.NamespaceInfo {
	if info, ok := s.namespaces[ns]; ok {
		return info
	}
	return podpolicy.NamespaceInfo{Name: ns}
}

func (s *scanner) anySelected() (pods, services bool) {
	for ns := range s.namespaces {
		pods = pods || s.podsSelected(ns)
		services = services || s.servicesSelected(ns)
	}
	return pods, services
}

// nothingSelected explains an empty scan.
func (s *scanner) nothingSelected() string {
	if ns := s.opts.Namespace; ns != "" {
		_, reason := podpolicy.NamespaceSelected(s.namespace(ns), s.cfg)
		if reason == "" {
			reason = "pod policies disabled"
		}
		return fmt.Sprintf("netguard acts on nothing in namespace %s (%s); to see what it would do there, audit with namespaces.mode: cluster-wide in --config", ns, reason)
	}
	return "netguard acts on no namespace with these settings; label namespaces netguard.io/inject=enabled, or audit with namespaces.mode: cluster-wide in --config to see what netguard would do everywhere"
}

// list lists a resource page by page; each gets every page.
func list[L runtime.Object](ctx context.Context, s *scanner, resource string, fetch func(context.Context, metav1.ListOptions) (L, error), each func(L) error) error {
	return listFrom(ctx, s, resource, metav1.ListOptions{Limit: PageSize}, fetch, each)
}

// listFrom lists a resource with opts, following continue tokens.
func listFrom[L runtime.Object](ctx context.Context, s *scanner, resource string, opts metav1.ListOptions, fetch func(context.Context, metav1.ListOptions) (L, error), each func(L) error) error {
	s.progress.start(resource)
	for {
		page, err := fetch(ctx, opts)
		if err != nil {
			if opts.Continue != "" && apierrors.IsResourceExpired(err) {
				return fmt.Errorf("listing %s: the list took longer than the API server keeps history, so it cannot be continued; audit one namespace at a time (-n): %w", resource, err)
			}
			return fmt.Errorf("listing %s: %w", resource, err)
		}
		s.report.Scanned.ListRequests++
		if err := each(page); err != nil {
			return err
		}
		lm, err := meta.ListAccessor(page)
		if err != nil {
			return err
		}
		if opts.Continue = lm.GetContinue(); opts.Continue == "" {
			return nil
		}
	}
}

func (s *scanner) readNamespaces(ctx context.Context) error {
	add := func(ns *corev1.Namespace) {
		s.namespaces[ns.Name] = podpolicy.NamespaceInfo{Name: ns.Name, Labels: ns.Labels, Annotations: ns.Annotations}
		s.report.Scanned.Namespaces++
		s.progress.add(ns.Name)
	}
	if s.opts.Live != nil && s.opts.Namespace == "" {
		for _, obj := range s.opts.Live.Namespaces.List() {
			if ns, ok := obj.(*corev1.Namespace); ok {
				add(ns)
			}
		}
		return nil
	}
	if name := s.opts.Namespace; name != "" {
		ns, err := s.cs.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("reading namespace %s: %w", name, err)
		}
		add(ns)
		return nil
	}
	return list(ctx, s, "namespaces", s.cs.CoreV1().Namespaces().List, func(l *corev1.NamespaceList) error {
		for i := range l.Items {
			add(&l.Items[i])
		}
		return nil
	})
}

// rolloutsListable reports whether Argo Rollouts' CRD is installed and the
// scan may list Rollouts; without them, Services are judged as the webhook
// judges them without the CRD.
func (s *scanner) rolloutsListable(ctx context.Context) (bool, error) {
	gv := clusterview.RolloutGVK.GroupVersion().String()
	if _, err := s.cs.Discovery().ServerResourcesForGroupVersion(gv); err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("looking up %s: %w", gv, err)
	}
	_, err := s.rollouts().List(ctx, metav1.ListOptions{Limit: 1})
	if apierrors.IsForbidden(err) {
		s.note("Argo Rollouts not read (%v): Services routing to Rollouts are judged without them", err)
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("listing Argo Rollouts: %w", err)
	}
	return true, nil
}

func (s *scanner) rollouts() dynamic.ResourceInterface {
	gvr := clusterview.RolloutGVK.GroupVersion().WithResource("rollouts")
	return s.dyn.Resource(gvr).Namespace(s.opts.Namespace)
}

// clusterDNS returns the cluster DNS IP the webhook would use, or "" with
// a note saying why it is unknown.
func (s *scanner) clusterDNS(ctx context.Context) string {
	// The webhook logs a failed discovery; the scan notes it instead.
	ip, err := clusterview.NewClusterDNS(s.cfg, s.reader).IP(logf.IntoContext(ctx, logr.Discard()))
	if err != nil {
		s.note("%v; pods are judged as the webhook would judge them now, without search-domain scrubbing", err)
		return ""
	}
	return ip
}

// keep adds obj, made lean by transform, to store when the Service guard
// judges its namespace.
func (s *scanner) keep(store toolscache.Indexer, transform toolscache.TransformFunc, obj metav1.Object) error {
	if !s.servicesSelected(obj.GetNamespace()) {
		return nil
	}
	lean, err := transform(obj)
	if err != nil {
		return err
	}
	return store.Add(lean)
}

// readWorkloads fills the stores the view reads. ReplicaSets are also
// kept where only pods are judged: they name the Deployments that pod
// findings are grouped by.
func (s *scanner) readWorkloads(ctx context.Context, services, rollouts bool) error {
	ns := s.opts.Namespace
	apps := s.cs.AppsV1()
	err := list(ctx, s, "replicasets", apps.ReplicaSets(ns).List, func(l *appsv1.ReplicaSetList) error {
		for i := range l.Items {
			rs := &l.Items[i]
			s.progress.add(rs.Namespace)
			if !s.servicesSelected(rs.Namespace) && !s.podsSelected(rs.Namespace) {
				continue
			}
			lean, err := clusterview.TransformReplicaSet(rs)
			if err != nil {
				return err
			}
			if err := s.stores.ReplicaSets.Add(lean); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil || !services {
		return err
	}
	for _, ns := range s.namespaces {
		if !s.servicesSelected(ns.Name) {
			continue
		}
		lean, err := clusterview.TransformNamespace(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
			Name: ns.Name, Labels: ns.Labels, Annotations: ns.Annotations,
		}})
		if err != nil {
			return err
		}
		if err := s.stores.Namespaces.Add(lean); err != nil {
			return err
		}
	}
	if err := list(ctx, s, "deployments", apps.Deployments(ns).List, func(l *appsv1.DeploymentList) error {
		return s.keepAll(s.stores.Deployments, clusterview.TransformDeployment, len(l.Items), func(i int) metav1.Object { return &l.Items[i] })
	}); err != nil {
		return err
	}
	if err := list(ctx, s, "statefulsets", apps.StatefulSets(ns).List, func(l *appsv1.StatefulSetList) error {
		return s.keepAll(s.stores.StatefulSets, clusterview.TransformStatefulSet, len(l.Items), func(i int) metav1.Object { return &l.Items[i] })
	}); err != nil {
		return err
	}
	if err := list(ctx, s, "daemonsets", apps.DaemonSets(ns).List, func(l *appsv1.DaemonSetList) error {
		return s.keepAll(s.stores.DaemonSets, clusterview.TransformDaemonSet, len(l.Items), func(i int) metav1.Object { return &l.Items[i] })
	}); err != nil {
		return err
	}
	if rollouts {
		if err := list(ctx, s, "rollouts", s.rollouts().List, func(l *unstructured.UnstructuredList) error {
			return s.keepAll(s.stores.Rollouts, clusterview.TransformRollout, len(l.Items), func(i int) metav1.Object { return &l.Items[i] })
		}); err != nil {
			return err
		}
	}
	return list(ctx, s, "services", s.cs.CoreV1().Services(ns).List, func(l *corev1.ServiceList) error {
		s.report.Scanned.Services += len(l.Items)
		return s.keepAll(s.stores.Services, clusterview.TransformService, len(l.Items), func(i int) metav1.Object { return &l.Items[i] })
	})
}

func (s *scanner) keepAll(store toolscache.Indexer, transform toolscache.TransformFunc, n int, item func(int) metav1.Object) error {
	for i := range n {
		obj := item(i)
		s.progress.add(obj.GetNamespace())
		if err := s.keep(store, transform, obj); err != nil {
			return err
		}
	}
	return nil
}

// readPods lists the pods page by page: each pod goes, lean, into the view
// where Services are judged, and is judged where the pod policies act.
func (s *scanner) readPods(ctx context.Context) error {
	if s.opts.Live != nil && s.opts.Namespace == "" {
		return s.readLivePods(ctx)
	}
	return list(ctx, s, "pods", s.cs.CoreV1().Pods(s.opts.Namespace).List, s.podPage)
}

// cachedListMax is the most pods a live scan asks for in one request from
// the API server's watch cache: before Kubernetes 1.33 the cache ignores
// the page size, so a bigger namespace is listed page by page instead, and
// no more than a page of full pods is in memory at a time either way.
const cachedListMax = PageSize

// readLivePods lists, for the live scan, only what the view lacks: the
// full pods of the namespaces the pod policies act on, one namespace at a
// time, and none in a namespace the view holds no pod of. The lists read
// the API server's watch cache (resourceVersion 0), not etcd: the live view
// is itself a moment behind, and the Reports it feeds are rewritten every
// interval.
func (s *scanner) readLivePods(ctx context.Context) error {
	var names []string
	for ns := range s.namespaces {
		if s.podsSelected(ns) {
			names = append(names, ns)
		}
	}
	slices.Sort(names)
	for _, ns := range names {
		held, err := s.opts.Live.Pods.ByIndex(toolscache.NamespaceIndex, ns)
		if err != nil {
			return fmt.Errorf("reading the pods of namespace %s from the view: %w", ns, err)
		}
		if len(held) == 0 {
			continue
		}
		opts := metav1.ListOptions{Limit: PageSize}
		if len(held) <= cachedListMax {
			opts = metav1.ListOptions{ResourceVersion: "0", ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan}
		}
		if err := listFrom(ctx, s, "pods", opts, s.cs.CoreV1().Pods(ns).List, s.podPage); err != nil {
			return err
		}
	}
	return nil
}

// podPage takes one page of pods.
func (s *scanner) podPage(l *corev1.PodList) error {
	for i := range l.Items {
		pod := &l.Items[i]
		s.report.Scanned.Pods++
		s.progress.add(pod.Namespace)
		if s.opts.Live == nil {
			if err := s.keep(s.stores.Pods, clusterview.TransformPod, pod); err != nil {
				return err
			}
		}
		if s.pods != nil && s.podsSelected(pod.Namespace) && live(pod) {
			s.report.Scanned.PodsJudged++
			s.pods.judge(pod, s.namespace(pod.Namespace))
		}
	}
	return nil
}

// live reports whether a pod runs or will run: finished and terminating
// pods are not judged.
func live(pod *corev1.Pod) bool {
	return pod.DeletionTimestamp == nil && pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed
}

// judgeServices judges every kept Service as the webhook would at CREATE.
func (s *scanner) judgeServices() {
	view := clusterview.NewView(s.stores)
	for _, obj := range s.stores.Services.List() {
		svc, ok := obj.(*corev1.Service)
		if !ok {
			continue
		}
		r := selectorguard.ReviewService(view, s.cfg, svc, nil)
		if r.Skipped != "" {
			continue
		}
		if s.opts.Namespace != "" && svc.Namespace != s.opts.Namespace {
			continue // the live stores hold every namespace
		}
		s.report.Scanned.ServicesJudged++
		if s.opts.Live != nil {
			s.report.Scanned.Services++ // judged ones: the live stores were not read for this scan
		}
		if r.ModeErr != nil {
			s.note("namespace %s: %v", svc.Namespace, r.ModeErr)
		}
		if len(r.Decision.Outcomes) == 0 && s.opts.Passes {
			s.report.Results = append(s.report.Results, Result{
				Source: Source, Policy: PolicyServiceGuard, Rule: RuleSelector, Result: Pass,
				Message:   "the selector routes to every revision of the workloads it matches",
				Resources: []corev1.ObjectReference{{APIVersion: "v1", Kind: "Service", Namespace: svc.Namespace, Name: svc.Name, UID: svc.UID}},
			})
		}
		for _, o := range r.Decision.Outcomes {
			s.report.Results = append(s.report.Results, serviceResult(svc, r, o))
		}
	}
}

func serviceResult(svc *corev1.Service, r selectorguard.Review, o selectorguard.Outcome) Result {
	f := o.Finding
	res := Result{
		Source: Source, Policy: PolicyServiceGuard, Rule: string(f.Rule),
		Result:  Warn,
		Message: f.Message,
		Resources: []corev1.ObjectReference{{
			APIVersion: "v1", Kind: "Service", Namespace: svc.Namespace, Name: svc.Name, UID: svc.UID,
		}},
		Properties: map[string]string{PropMode: string(r.Mode)},
	}
	if f.Deny {
		res.Result = Fail
	}
	switch o.Action {
	case selectorguard.ActionDenied:
		res.Properties[PropVerdict] = string(VerdictDeny)
	case selectorguard.ActionWarned:
		res.Properties[PropVerdict] = string(VerdictWarn)
	case selectorguard.ActionDryRun:
		res.Properties[PropVerdict] = string(VerdictDryRun)
	case selectorguard.ActionOverridden:
		res.Properties[PropVerdict] = string(VerdictOverridden)
		res.Properties[PropOverrideReason] = r.Decision.OverrideReason
		res.Result = Skip
	}
	if f.Workload != "" {
		res.Properties[PropWorkload] = f.Workload
		res.Properties[PropMatched] = fmt.Sprint(f.Matched)
		res.Properties[PropTotal] = fmt.Sprint(f.Total)
	}
	return res
}
