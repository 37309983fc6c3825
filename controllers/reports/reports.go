package reports

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/go-logr/logr"
	orv1alpha1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/netguard-io/netguard/audit"
	"github.com/netguard-io/netguard/clusterview"
	"github.com/netguard-io/netguard/config"
	"github.com/netguard-io/netguard/policies/podpolicy"
)

const (
	// Name of the Report in each namespace.
	Name = "netguard"
	// ManagedByLabel marks the Reports netguard keeps.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	// maxResources bounds the objects listed per result (the pods of a big
	// workload); the property "resources" then gives the count.
	maxResources = 50
	// maxResults bounds the results of one Report, keeping it far below
	// the API server's object size limit.
	maxResults = 1000
)

// Writer keeps the Reports. It runs on every replica and writes only while
// leads reports true.
type Writer struct {
	restCfg  *rest.Config
	cfg      *config.Config
	stores   clusterview.Stores
	client   client.Client
	disc     discovery.DiscoveryInterface
	leads    func() bool
	synced   func() bool
	version  string
	interval time.Duration
	now      func() time.Time
	log      logr.Logger

	installed *bool             // the API was there at the last look
	written   map[string]string // namespace → hash of the results last written
}

var _ manager.LeaderElectionRunnable = (*Writer)(nil)

// Scheme knows the OpenReports types.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := orv1alpha1.AddToScheme(s); err != nil {
		panic(fmt.Sprintf("building scheme: %v", err))
	}
	return s
}

// New returns a Writer for the cluster restCfg points at. stores are the
// Service guard's; synced says when they are complete; leads whether this
// replica writes.
func New(restCfg *rest.Config, cfg *config.Config, stores clusterview.Stores, synced, leads func() bool, version string, log logr.Logger) (*Writer, error) {
	c, err := client.New(restCfg, client.Options{Scheme: Scheme()})
	if err != nil {
		return nil, err
	}
	disc, err := discovery.NewDiscoveryClientForConfig(restCfg)
	if err != nil {
		return nil, err
	}
	return &Writer{
		restCfg: restCfg, cfg: cfg, stores: stores, client: c, disc: disc,
		leads: leads, synced: synced, version: version,
		interval: cfg.Reports.IntervalDuration(), now: time.Now, log: log,
		written: map[string]string{},
	}, nil
}

// NeedLeaderElection implements manager.LeaderElectionRunnable: the writer
// runs everywhere and writes only on the leader, so that a new leader
// starts at once.
func (*Writer) NeedLeaderElection() bool { return false }

// Start writes the Reports every interval until ctx ends.
func (w *Writer) Start(ctx context.Context) error {
	next := time.NewTimer(min(w.interval, 10*time.Second))
	defer next.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-next.C:
		}
		if err := w.Sync(ctx); err != nil {
			w.log.Error(err, "Writing the Reports failed; trying again next interval")
		}
		next.Reset(w.interval)
	}
}

// Sync judges the cluster and writes the Reports that changed, if this
// replica leads, the view is complete and the API is installed.
func (w *Writer) Sync(ctx context.Context) error {
	if !w.leads() || !w.synced() || !w.apiInstalled() {
		return nil
	}
	began := w.now()
	rep, err := audit.Run(ctx, w.restCfg, w.cfg, audit.Options{Live: &w.stores, Passes: true, Version: w.version})
	if err != nil {
		return err
	}
	byNamespace := map[string][]audit.Result{}
	for _, r := range rep.Results {
		byNamespace[r.Namespace()] = append(byNamespace[r.Namespace()], r)
	}
	// One List gives the Reports there are, for the deletions and as the
	// base of each update, instead of a read per namespace.
	existing, err := w.existingReports(ctx)
	if err != nil {
		return err
	}
	wanted := w.namespaces()
	// A namespace that fails (an admission policy, a quota) does not keep
	// the others from their Reports.
	var failed []error
	deleted := 0
	for ns, r := range existing {
		if _, found := slices.BinarySearch(wanted, ns); found {
			continue
		}
		if err := w.client.Delete(ctx, r); err != nil && !apierrors.IsNotFound(err) {
			failed = append(failed, fmt.Errorf("deleting the Report in namespace %s: %w", ns, err))
			continue
		}
		delete(w.written, ns)
		deleted++
	}
	writes := 0
	for _, ns := range wanted {
		wrote, err := w.write(ctx, ns, byNamespace[ns], existing[ns])
		if err != nil {
			failed = append(failed, fmt.Errorf("Report in namespace %s: %w", ns, err))
			continue
		}
		if wrote {
			writes++
		}
	}
	reportSyncs.Inc()
	reportWrites.Add(float64(writes + deleted))
	if writes+deleted > 0 {
		w.log.Info("Reports written", "namespaces", len(wanted), "written", writes, "deleted", deleted,
			"fail", rep.Summary.Fail, "warn", rep.Summary.Warn, "took", w.now().Sub(began).Round(time.Millisecond).String())
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d Reports not written or deleted: %w", len(failed), errors.Join(failed[:min(len(failed), 5)]...))
	}
	return nil
}

// existingReports lists netguard's Reports, by namespace.
func (w *Writer) existingReports(ctx context.Context) (map[string]*orv1alpha1.Report, error) {
	list := &orv1alpha1.ReportList{}
	if err := w.client.List(ctx, list, client.MatchingLabels{ManagedByLabel: "netguard"}); err != nil {
		return nil, fmt.Errorf("listing netguard's Reports: %w", err)
	}
	out := make(map[string]*orv1alpha1.Report, len(list.Items))
	for i := range list.Items {
		if r := &list.Items[i]; r.Name == Name {
			out[r.Namespace] = r
		}
	}
	return out, nil
}

// apiInstalled looks the OpenReports API up, and says when that changes.
func (w *Writer) apiInstalled() bool {
	_, err := w.disc.ServerResourcesForGroupVersion(orv1alpha1.SchemeGroupVersion.String())
	installed := err == nil
	if err != nil && !apierrors.IsNotFound(err) {
		w.log.V(1).Info("Looking up the OpenReports API", "error", err.Error())
		return false
	}
	if w.installed == nil || *w.installed != installed {
		if installed {
			w.log.Info("OpenReports API installed: netguard keeps a Report per namespace it acts on")
		} else {
			w.log.Info("OpenReports API (openreports.io/v1alpha1) not installed: no Reports are written until it is")
		}
		w.installed = &installed
	}
	return installed
}

// namespaces are those netguard acts on: its pods or its Services. A
// namespace being deleted takes no new Report (the API server refuses it)
// and takes its Report with it.
func (w *Writer) namespaces() []string {
	var out []string
	for _, obj := range w.stores.Namespaces.List() {
		ns, ok := obj.(*corev1.Namespace)
		if !ok || ns.DeletionTimestamp != nil {
			continue
		}
		label := ns.Labels[podpolicy.LabelInject]
		pods := (w.cfg.DNS.Enabled || w.cfg.DNSProxy.Enabled) && w.cfg.Namespaces.Selects(ns.Name, label)
		services := w.cfg.ServiceGuard.Enabled && w.cfg.ServiceNamespaces().Selects(ns.Name, label)
		if pods || services {
			out = append(out, ns.Name)
		}
	}
	slices.Sort(out)
	return out
}

// write makes the Report of namespace ns, existing or nil, hold results;
// it reports whether it wrote.
func (w *Writer) write(ctx context.Context, ns string, results []audit.Result, existing *orv1alpha1.Report) (bool, error) {
	desired := reportResults(results)
	hash := hashOf(desired)
	if w.written[ns] == hash && existing != nil {
		return false, nil
	}
	now := metav1.Timestamp{Seconds: w.now().Unix()}
	stamp(desired, existing, now)
	report := &orv1alpha1.Report{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: Name, Labels: map[string]string{ManagedByLabel: "netguard"}},
		Source:     audit.Source,
		Summary:    summary(desired),
		Results:    desired,
	}
	if existing == nil {
		if err := w.client.Create(ctx, report); err != nil {
			return false, err
		}
	} else {
		if hashOf(existing.Results) == hash && existing.Summary == report.Summary {
			w.written[ns] = hash // netguard restarted: the Report is current
			return false, nil
		}
		report.ResourceVersion = existing.ResourceVersion
		if err := w.client.Update(ctx, report); err != nil {
			return false, err
		}
	}
	w.written[ns] = hash
	return true, nil
}

// reportResults converts audit results into OpenReports results.
func reportResults(results []audit.Result) []orv1alpha1.ReportResult {
	out := make([]orv1alpha1.ReportResult, 0, min(len(results), maxResults))
	for _, r := range results {
		if len(out) == maxResults {
			break
		}
		props := map[string]string{}
		for k, v := range r.Properties {
			props[k] = v
		}
		subjects := r.Resources
		if len(subjects) > maxResources {
			props["resources"] = fmt.Sprint(len(subjects))
			subjects = subjects[:maxResources]
		}
		if len(props) == 0 {
			props = nil
		}
		out = append(out, orv1alpha1.ReportResult{
			Source:      r.Source,
			Policy:      r.Policy,
			Rule:        r.Rule,
			Category:    "Networking",
			Result:      orv1alpha1.Result(r.Result),
			Scored:      true,
			Subjects:    slices.Clone(subjects),
			Description: r.Message,
			Properties:  props,
		})
	}
	return out
}

// hashOf identifies a set of results, timestamps aside.
func hashOf(results []orv1alpha1.ReportResult) string {
	h := sha256.New()
	for _, r := range results {
		r.Timestamp = metav1.Timestamp{}
		b, _ := json.Marshal(r)
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// stamp gives each result the time it was first reported: that of the
// same result in existing, else now.
func stamp(results []orv1alpha1.ReportResult, existing *orv1alpha1.Report, now metav1.Timestamp) {
	seen := map[string]metav1.Timestamp{}
	if existing != nil {
		for _, r := range existing.Results {
			seen[hashOf([]orv1alpha1.ReportResult{r})] = r.Timestamp
		}
	}
	for i := range results {
		if ts, ok := seen[hashOf(results[i:i+1])]; ok {
			results[i].Timestamp = ts
		} else {
			results[i].Timestamp = now
		}
	}
}

func summary(results []orv1alpha1.ReportResult) orv1alpha1.ReportSummary {
	var s orv1alpha1.ReportSummary
	for _, r := range results {
		switch audit.Outcome(r.Result) {
		case audit.Pass:
			s.Pass++
		case audit.Fail:
			s.Fail++
		case audit.Warn:
			s.Warn++
		case audit.Skip:
			s.Skip++
		}
	}
	return s
}
