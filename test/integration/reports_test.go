package integration

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	orv1alpha1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/netguard-io/netguard/audit"
	"github.com/netguard-io/netguard/config"
	"github.com/netguard-io/netguard/controllers/reports"
	"github.com/netguard-io/netguard/test/framework"
)

// installOpenReports installs the OpenReports CRDs from the module netguard
// builds with, until t ends.
func installOpenReports(t *testing.T) {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/openreports/reports-api").Output()
	if err != nil {
		t.Fatalf("locating the OpenReports module: %v", err)
	}
	opts := envtest.CRDInstallOptions{Paths: []string{filepath.Join(strings.TrimSpace(string(out)), "config", "crd")}, ErrorIfPathMissing: true}
	crds, err := envtest.InstallCRDs(cp.Config, opts)
	if err != nil {
		t.Fatalf("installing the OpenReports CRDs: %v", err)
	}
	t.Cleanup(func() {
		opts.CRDs = crds
		if err := envtest.UninstallCRDs(cp.Config, opts); err != nil {
			t.Errorf("uninstalling the OpenReports CRDs: %v", err)
		}
	})
}

// TestReports: with reports enabled and no OpenReports API, netguard says
// so once and writes nothing; once the API is installed, the namespace that
// opted in after its workloads were created gets a Report with a result per
// Service and per group of pods, with admission's messages; a sync that
// finds nothing new writes nothing; a deleted Report is written again; a
// namespace that refuses its Report holds up no other; one being deleted
// loses its Report; a change is written; a namespace that opts out loses
// its Report.
func TestReports(t *testing.T) {
	ctx := context.Background()
	restartServer(t, writeConfig(t, "reports:\n  enabled: true\n  interval: 1s\n"))
	t.Cleanup(func() { restartServer(t, "") })
	const absent = "OpenReports API (openreports.io/v1alpha1) not installed"
	waitFor(t, 20*time.Second, "netguard saying the OpenReports API is absent", func() bool { return strings.Contains(server.Log(), absent) })
	time.Sleep(3 * time.Second) // three syncs
	if n := strings.Count(server.Log(), absent); n != 1 {
		t.Errorf("said %d times that the OpenReports API is absent, want once", n)
	}

	ns := legacyNamespace(t)
	create(t, service(ns, "steady", labels("app", "distributor")))
	installOpenReports(t)
	rc, err := client.New(cp.Config, client.Options{Scheme: reports.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	key := client.ObjectKey{Namespace: ns, Name: reports.Name}
	report := &orv1alpha1.Report{}
	waitFor(t, 30*time.Second, "the Report of "+ns, func() bool { return rc.Get(ctx, key, report) == nil })

	result := func(name string) []orv1alpha1.ReportResult {
		var out []orv1alpha1.ReportResult
		for _, r := range report.Results {
			if slices.ContainsFunc(r.Subjects, func(o corev1.ObjectReference) bool { return o.Name == name }) {
				out = append(out, r)
			}
		}
		return out
	}
	if r := result("distributor"); len(r) != 1 || r[0].Rule != "revision-subset" || r[0].Result != "fail" ||
		!strings.Contains(r[0].Description, "3 of 10 pods of Deployment "+ns+"/distributor") {
		t.Errorf("distributor: %+v, want a revision-subset fail with the counts", r)
	}
	if r := result("orphan"); len(r) != 1 || r[0].Rule != "matches-nothing" || r[0].Result != "warn" {
		t.Errorf("orphan: %+v, want a matches-nothing warn", r)
	}
	if r := result("steady"); len(r) != 1 || r[0].Result != "pass" {
		t.Errorf("steady: %+v, want a pass", r)
	}
	if r := result("gateway"); len(r) != 1 || r[0].Rule != "mutate" || !strings.Contains(r[0].Properties["changes"], "dns-proxy") {
		t.Errorf("gateway (nginx created before netguard): %+v, want what netguard would change, the sidecar included", r)
	}
	if r := result("edge"); !slices.ContainsFunc(r, func(x orv1alpha1.ReportResult) bool { return x.Rule == "dns-sidecar" && x.Result == "skip" }) {
		t.Errorf("edge (nginx opted out of the sidecar): %+v, want a dns-sidecar skip", r)
	}
	if r := result("lossy"); len(r) != 1 || r[0].Rule != audit.RuleNdotsLosesNames || r[0].Result != "fail" || !strings.Contains(r[0].Description, "roll the workload out again") {
		t.Errorf("lossy (an Alpine pod given ndots:2 by an earlier netguard): %+v, want a %s fail", r, audit.RuleNdotsLosesNames)
	}
	if report.Summary.Fail < 2 || report.Summary.Warn < 1 || report.Summary.Pass != 1 || report.Source != "netguard" {
		t.Errorf("summary %+v, source %q", report.Summary, report.Source)
	}
	t.Logf("Report %s: %+v, %d results", key, report.Summary, len(report.Results))

	// Nothing changes: nothing is written.
	written := report.ResourceVersion
	time.Sleep(3 * time.Second) // three syncs
	if err := rc.Get(ctx, key, report); err != nil || report.ResourceVersion != written {
		t.Errorf("the Report was written again with nothing changed (resourceVersion %s -> %s, %v)", written, report.ResourceVersion, err)
	}

	// A Report someone deleted is written again.
	if err := rc.Delete(ctx, report); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the deleted Report written again", func() bool {
		return rc.Get(ctx, key, report) == nil && report.ResourceVersion != written
	})
	written = report.ResourceVersion

	// A namespace that refuses its Report (a quota of none) holds up no
	// other, and one being deleted loses its Report at once. Their names
	// sort before ns.
	refusing := refusingReports(t, rc)
	deleting := newNamespace(t, "aaa-deleting", optedIn)
	deletingKey := client.ObjectKey{Namespace: deleting, Name: reports.Name}
	waitFor(t, 30*time.Second, "the Report of "+deleting, func() bool { return rc.Get(ctx, deletingKey, &orv1alpha1.Report{}) == nil })
	// Without a namespace controller the namespace stays Terminating.
	if err := k8s.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: deleting}}); err != nil {
		t.Fatal(err)
	}
	labelNamespace(t, refusing, optedIn)
	waitFor(t, 30*time.Second, "netguard failing to write the Report of "+refusing, func() bool {
		return strings.Contains(server.Log(), "Report in namespace "+refusing)
	})
	waitFor(t, 30*time.Second, "the Report of the namespace being deleted gone", func() bool {
		return apierrors.IsNotFound(rc.Get(ctx, deletingKey, &orv1alpha1.Report{}))
	})

	// A change is written: the partial Service goes.
	if err := k8s.Delete(ctx, service(ns, "distributor", nil)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the Report without the deleted Service", func() bool {
		return rc.Get(ctx, key, report) == nil && len(result("distributor")) == 0
	})

	// The namespace opts out: its Report goes.
	labelNamespace(t, ns, map[string]string{"netguard.io/inject": "disabled"})
	waitFor(t, 30*time.Second, "the Report deleted", func() bool { return apierrors.IsNotFound(rc.Get(ctx, key, report)) })
}

// refusingReports returns a namespace, not opted in yet, whose quota
// refuses any Report. The quota's status is set here, as no quota
// controller runs, and the namespace is returned once the API server
// enforces it.
func refusingReports(t *testing.T, rc client.Client) string {
	t.Helper()
	ctx := context.Background()
	ns := newNamespace(t, "aaa-refusing", nil)
	t.Cleanup(func() { // Terminating, it takes no Report
		_ = k8s.Delete(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	})
	none := corev1.ResourceList{"count/reports.openreports.io": resource.MustParse("0")}
	quota := &corev1.ResourceQuota{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "no-reports"},
		Spec:       corev1.ResourceQuotaSpec{Hard: none},
	}
	create(t, quota)
	quota.Status = corev1.ResourceQuotaStatus{Hard: none, Used: corev1.ResourceList{"count/reports.openreports.io": resource.MustParse("0")}}
	if err := k8s.Status().Update(ctx, quota); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the quota refusing Reports in "+ns, func() bool {
		probe := &orv1alpha1.Report{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "probe"}}
		err := rc.Create(ctx, probe)
		if err == nil {
			_ = rc.Delete(ctx, probe)
		}
		return apierrors.IsForbidden(err)
	})
	return ns
}

// TestReportsReadOnlyWhatTheViewLacks: the scan behind the Reports (the
// audit over netguard serve's live view) lists no namespace and no pod of a
// namespace netguard does not act on: only the full pods of each opted-in
// namespace that holds pods, one request each, from the API server's watch
// cache. It finds what a full audit of the namespace finds.
func TestReportsReadOnlyWhatTheViewLacks(t *testing.T) {
	ctx := context.Background()
	ns := legacyNamespace(t)
	// A namespace netguard does not act on, with more pods than a page:
	// listing every pod would take two pages.
	other := newNamespace(t, "reports-untouched", nil)
	for i := range audit.PageSize + 1 {
		createPod(t, plainPod(other, fmt.Sprintf("p%d", i), "registry.example/app:1"))
	}
	cs, err := kubernetes.NewForConfig(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	stores := framework.LeanView(ctx, t, cs)
	restCfg, log := framework.RecordRequests(cp.Config)
	rep, err := audit.Run(ctx, restCfg, config.Default(), audit.Options{Live: &stores, Passes: true, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}

	var selected []string // opted-in namespaces the view holds pods of
	for _, obj := range stores.Namespaces.List() {
		n := obj.(*corev1.Namespace)
		if pods, _ := stores.Pods.ByIndex(toolscache.NamespaceIndex, n.Name); len(pods) > 0 && n.Labels["netguard.io/inject"] == "enabled" {
			selected = append(selected, n.Name)
		}
	}
	// Besides the lists: discovery and the cluster DNS Service, as the
	// pod webhook reads it.
	var lists []string
	for _, r := range log.Seen() {
		path, _, _ := strings.Cut(strings.TrimPrefix(r, "GET "), "?")
		if path != "/api" && path != "/apis" && path != "/api/v1/namespaces/kube-system/services/kube-dns" {
			lists = append(lists, r)
		}
	}
	t.Logf("live scan: %d requests for %d opted-in namespaces with pods, of %d namespaces and %d pods: %q",
		len(log.Seen()), len(selected), len(stores.Namespaces.List()), len(stores.Pods.List()), log.Seen())
	for _, r := range lists {
		path, query, _ := strings.Cut(strings.TrimPrefix(r, "GET "), "?")
		rest, ok := strings.CutPrefix(path, "/api/v1/namespaces/")
		name, resource, _ := strings.Cut(rest, "/")
		switch {
		case !ok || resource != "pods":
			t.Errorf("the live scan listed %s; want only the pods of opted-in namespaces", r)
		case !slices.Contains(selected, name):
			t.Errorf("the live scan listed the pods of namespace %s, which netguard does not act on", name)
		case !strings.Contains(query, "resourceVersion=0"):
			t.Errorf("the live scan read %s from etcd; want the watch cache (resourceVersion=0)", r)
		}
	}
	if len(lists) != len(selected) || rep.Scanned.ListRequests != len(selected) {
		t.Errorf("%d list requests (%d counted by the scan); want one per opted-in namespace with pods, %d", len(lists), rep.Scanned.ListRequests, len(selected))
	}

	full := auditJSON(t, cp.Kubeconfig, 1, "-n", ns)
	key := func(r audit.Result) string {
		return fmt.Sprintf("%s %s %s %s %d", r.Policy, r.Rule, r.Result, r.Message, len(r.Resources))
	}
	var want, got []string
	for _, r := range full.Results {
		want = append(want, key(r))
	}
	for _, r := range rep.Results {
		if r.Namespace() == ns && r.Result != audit.Pass {
			got = append(got, key(r))
		}
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("the live scan found in %s:\n%s\nthe full audit:\n%s", ns, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
