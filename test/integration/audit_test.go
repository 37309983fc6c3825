package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	admissionregv1 "k8s.io/api/admissionregistration/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/netguard-io/netguard/audit"
	"github.com/netguard-io/netguard/policies/podpolicy"
)

// auditRun is one `netguard audit` process.
type auditRun struct {
	stdout, stderr string
	code           int
}

// runAudit runs `netguard audit` with kubeconfig and args.
func runAudit(t *testing.T, kubeconfig string, args ...string) auditRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, netguardBin, append([]string{"audit", "--kubeconfig", kubeconfig}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := auditRun{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	default:
		t.Fatalf("running netguard audit: %v", err)
	}
	return r
}

// anyResult is auditJSON's wantCode for a scan of every namespace, which
// other tests' namespaces may give findings (1) or not (0).
const anyResult = -1

// auditJSON runs the audit with -o json and decodes the report.
func auditJSON(t *testing.T, kubeconfig string, wantCode int, args ...string) *audit.Report {
	t.Helper()
	r := runAudit(t, kubeconfig, append(args, "-o", "json")...)
	if r.code != wantCode && (wantCode != anyResult || r.code > 1) {
		t.Fatalf("netguard audit %v: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", args, r.code, wantCode, r.stdout, r.stderr)
	}
	var rep audit.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("netguard audit -o json: %v\n%s", err, r.stdout)
	}
	if r.stderr != "" {
		t.Errorf("netguard audit wrote to stderr on a quick scan:\n%s", r.stderr)
	}
	return &rep
}

// find returns the results about the named Service or pod owner in ns.
func find(rep *audit.Report, ns, name string) []audit.Result {
	var out []audit.Result
	for _, r := range rep.Results {
		if r.Namespace() != ns {
			continue
		}
		if (r.Policy == audit.PolicyServiceGuard && r.Resources[0].Name == name) || r.Properties[audit.PropOwner] == name {
			out = append(out, r)
		}
	}
	return out
}

func namespacesOf(rep *audit.Report) []string {
	var out []string
	for _, r := range rep.Results {
		if ns := r.Namespace(); !slices.Contains(out, ns) {
			out = append(out, ns)
		}
	}
	return out
}

// legacyNamespace builds, in a namespace that netguard does not act on
// yet, what a cluster has before netguard: Deployment distributor mid-way
// through the outage's rollout (3 of 10 pods on the revision whose labels
// the Service selects), a Service selecting nothing, and nginx pods
// without the DNS sidecar, one of them opted out of it. Then the namespace
// opts in.
func legacyNamespace(t *testing.T) string {
	t.Helper()
	ns := newNamespace(t, "audit-legacy", nil)
	oldLabels := labels("app", "distributor")
	newLabels := labels("app", "distributor", "gossip_ring_member", "true")
	d := newDeployment(t, ns, "distributor", 10, oldLabels)
	oldRS := newRevision(t, d, "5b6c4d", 10)
	setTemplate(t, d, newLabels)
	newRevision(t, d, "7d9f8c", 3)
	deletePods(t, ns, oldRS.Name, 7, 10)
	create(t, service(ns, "distributor", newLabels))
	create(t, service(ns, "orphan", labels("app", "gone")))
	createPod(t, plainPod(ns, "gateway", "nginx:1.27"))
	edge := plainPod(ns, "edge", "nginx:1.27")
	edge.Annotations = map[string]string{podpolicy.AnnotationDNSProxy: "false"}
	createPod(t, edge)
	// An Alpine pod as a netguard before v0.4 admitted it: ndots:2, under
	// which musl loses svc.ns.svc names.
	lossy := plainPod(ns, "lossy", "alpine:3.20")
	lossy.Annotations = map[string]string{podpolicy.AnnotationStatus: `{"version":"v0.3.0","applied":["dns-options","ndots","search-scrub"]}`}
	lossy.Spec.DNSPolicy = corev1.DNSNone
	lossy.Spec.DNSConfig = &corev1.PodDNSConfig{
		Nameservers: []string{clusterDNSIP},
		Searches:    []string{ns + ".svc.cluster.local", "svc.cluster.local", "cluster.local"},
		Options:     []corev1.PodDNSConfigOption{{Name: "single-request-reopen"}, {Name: "ndots", Value: ptr.To("2")}},
	}
	createPod(t, lossy)

	labelNamespace(t, ns, optedIn)
	return ns
}

// TestAuditFindsWhatAdmissionWouldSay: on a namespace that opted in after
// its workloads were created, the audit reports the Service denial and
// warning, and the pods to change, with the messages and changes the
// webhook gives for the same objects created now.
func TestAuditFindsWhatAdmissionWouldSay(t *testing.T) {
	installServiceWebhook(t, admissionregv1.Ignore)
	ctx := context.Background()
	ns := legacyNamespace(t)

	rep := auditJSON(t, cp.Kubeconfig, 1, "-n", ns)
	if got := namespacesOf(rep); !slices.Equal(got, []string{ns}) {
		t.Errorf("audit -n %s reported namespaces %v", ns, got)
	}
	if rep.Namespace != ns || rep.Scanned.Namespaces != 1 || rep.Scanned.Services != 2 || rep.Scanned.Pods != 13 {
		t.Errorf("scope %q, scanned %+v; want namespace %s, 1 namespace, 2 Services, 13 pods (10 of the Deployment, 2 nginx, 1 Alpine)", rep.Namespace, rep.Scanned, ns)
	}
	if rep.Settings.ClusterDNS != clusterDNSIP {
		t.Errorf("cluster DNS %q, want %s (from kube-system/kube-dns)", rep.Settings.ClusterDNS, clusterDNSIP)
	}

	// The Service selecting the new revision only: denied.
	dist := find(rep, ns, "distributor")
	if len(dist) != 1 || dist[0].Rule != "revision-subset" || dist[0].Result != audit.Fail ||
		dist[0].Properties[audit.PropVerdict] != "deny" || dist[0].Properties[audit.PropMatched] != "3" || dist[0].Properties[audit.PropTotal] != "10" {
		t.Fatalf("distributor results = %+v, want one revision-subset deny, 3 of 10", dist)
	}
	if !strings.Contains(dist[0].Message, "3 of 10 pods of Deployment "+ns+"/distributor") {
		t.Errorf("distributor message lacks the counts: %s", dist[0].Message)
	}
	// The webhook denies the same Service created now with the same message.
	copySvc := service(ns, "distributor-now", labels("app", "distributor", "gossip_ring_member", "true"))
	var denial error
	waitFor(t, 30*time.Second, "the webhook judging namespace "+ns, func() bool {
		denial = k8s.Create(ctx, copySvc.DeepCopy(), client.DryRunAll)
		return apierrors.IsInvalid(denial)
	})
	if !strings.Contains(denial.Error(), dist[0].Message) {
		t.Errorf("the audit's message is not the webhook's:\naudit:   %s\nwebhook: %v", dist[0].Message, denial)
	}

	// The Service selecting nothing: a warning, the webhook's too.
	orphan := find(rep, ns, "orphan")
	if len(orphan) != 1 || orphan[0].Rule != "matches-nothing" || orphan[0].Result != audit.Warn || orphan[0].Properties[audit.PropVerdict] != "warn" {
		t.Fatalf("orphan results = %+v, want one matches-nothing warning", orphan)
	}
	warned, seen := warnedClient(t)
	if err := warned.Create(ctx, service(ns, "orphan-now", labels("app", "gone")), client.DryRunAll); err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(seen.texts, func(w string) bool { return strings.Contains(w, orphan[0].Message) }) {
		t.Errorf("the audit's warning is not the webhook's:\naudit:   %s\nwebhook: %q", orphan[0].Message, seen.texts)
	}

	// The pods created before the namespace opted in: what the webhook
	// applies to the same pod created now.
	checkPods := func(owner, pod, wantChanges string) audit.Result {
		t.Helper()
		var mutate *audit.Result
		for _, r := range find(rep, ns, owner) {
			if r.Rule == audit.RuleMutate {
				mutate = &r
			}
		}
		if mutate == nil || mutate.Result != audit.Fail || mutate.Properties[audit.PropChanges] != wantChanges {
			t.Fatalf("%s: results %+v, want a mutate result with changes %s", owner, find(rep, ns, owner), wantChanges)
		}
		stored := &corev1.Pod{}
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: pod}, stored); err != nil {
			t.Fatal(err)
		}
		now := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: pod + "-now", Labels: stored.Labels, Annotations: stored.Annotations,
		}, Spec: stored.Spec}
		if err := k8s.Create(ctx, now, client.DryRunAll); err != nil {
			t.Fatal(err)
		}
		st, err := podpolicy.ParseStatus(now.Annotations[podpolicy.AnnotationStatus])
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(st.Applied, ","); got != wantChanges {
			t.Errorf("%s: the webhook applies %s to the same pod created now; the audit says %s", pod, got, wantChanges)
		}
		return *mutate
	}
	dep := checkPods("Deployment/distributor", "distributor-5b6c4d-0", "dns-options,search-scrub")
	if len(dep.Resources) != 10 {
		t.Errorf("Deployment/distributor: %d pods, want its 10 live pods in one result", len(dep.Resources))
	}
	gw := checkPods("Pod/gateway", "gateway", "dns-options,ndots,search-scrub,dns-proxy")
	if !strings.Contains(gw.Message, "127.0.0.1:8053") {
		t.Errorf("nginx pod's message lacks the webhook's resolver hint: %q", gw.Message)
	}
	checkPods("Pod/edge", "edge", "dns-options,ndots,search-scrub")
	edge := find(rep, ns, "Pod/edge")
	if !slices.ContainsFunc(edge, func(r audit.Result) bool {
		return r.Rule == audit.RuleDNSSidecar && r.Result == audit.Skip && r.Message == string(podpolicy.SkipDNSProxyOptedOut)
	}) {
		t.Errorf("opted-out nginx pod: results %+v, want a skipped dns-sidecar result", edge)
	}
	lossy := find(rep, ns, "Pod/lossy")
	if len(lossy) != 1 || lossy[0].Rule != audit.RuleNdotsLosesNames || lossy[0].Result != audit.Fail ||
		!strings.Contains(lossy[0].Message, "netguard v0.3.0 set ndots:2, under which musl no longer resolves names with 2 or more dots") {
		t.Errorf("Alpine pod admitted with ndots:2: results %+v, want one %s failure", lossy, audit.RuleNdotsLosesNames)
	}
	if rep.Summary != (audit.Summary{Fail: 5, Warn: 1, Skip: 1}) {
		t.Errorf("summary %+v, want 5 fail, 1 warn, 1 skip", rep.Summary)
	}

	// The table says the same.
	table := runAudit(t, cp.Kubeconfig, "-n", ns)
	t.Logf("netguard audit -n %s:\n%s", ns, table.stdout)
	for _, want := range []string{
		"Namespace " + ns, "distributor", "revision-subset", "deny", dist[0].Message,
		"Deployment/distributor: 10 pods", "dns-options, search-scrub (resolver unknown)",
		"Pod/lossy", "names lost to netguard's ndots: roll out again",
		"nginx without the DNS sidecar", "Summary: Service findings: 1 deny, 1 warn;",
	} {
		if !strings.Contains(table.stdout, want) {
			t.Errorf("table lacks %q", want)
		}
	}
	if table.code != 1 || table.stderr != "" {
		t.Errorf("table run: exit %d, stderr %q; want 1 and nothing", table.code, table.stderr)
	}
}

// TestAuditCleanNamespace: a namespace whose pods and Services went
// through netguard has nothing to report: exit 0.
func TestAuditCleanNamespace(t *testing.T) {
	ns := newNamespace(t, "audit-clean", optedIn)
	d := newDeployment(t, ns, "web", 3, labels("app", "web"))
	newRevision(t, d, "6f7c8d", 3)
	create(t, service(ns, "web", labels("app", "web")))
	pod := &corev1.Pod{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "web-6f7c8d-0"}, pod); err != nil {
		t.Fatal(err)
	}
	assertHardened(t, pod, ns)

	r := runAudit(t, cp.Kubeconfig, "-n", ns)
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("clean namespace: exit %d, stderr %q, want 0 and nothing\n%s", r.code, r.stderr, r.stdout)
	}
	want := "Summary: Service findings: none; pods: none; scanned 1 namespace, 1 Service (1 judged), 3 pods (3 judged).\n"
	if r.stdout != want {
		t.Errorf("clean namespace output:\n%s\nwant:\n%s", r.stdout, want)
	}
}

// TestAuditRespectsNamespaceSettings: opted-out and excluded namespaces
// are never reported; a namespace that did not opt in is reported only
// with namespaces.mode cluster-wide.
func TestAuditRespectsNamespaceSettings(t *testing.T) {
	legacy := func(prefix string, nsLabels map[string]string) string {
		ns := newNamespace(t, prefix, nsLabels)
		createPod(t, plainPod(ns, "gateway", "nginx:1.27"))
		create(t, service(ns, "pinned", labels("app", "web", "pod-template-hash", "7d9f8c")))
		return ns
	}
	plain := legacy("audit-plain", nil)
	out := legacy("audit-out", map[string]string{"netguard.io/inject": "disabled"})
	excluded := legacy("audit-excluded", nil)

	rep := auditJSON(t, cp.Kubeconfig, anyResult)
	for _, ns := range []string{plain, out, excluded} {
		if slices.Contains(namespacesOf(rep), ns) {
			t.Errorf("opt-in mode: namespace %s reported", ns)
		}
	}

	wide := writeConfig(t, "namespaces:\n  mode: cluster-wide\n  exclude: ["+excluded+"]\n")
	rep = auditJSON(t, cp.Kubeconfig, 1, "--config", wide)
	got := namespacesOf(rep)
	if !slices.Contains(got, plain) {
		t.Errorf("cluster-wide mode: namespace %s not reported", plain)
	}
	for _, ns := range []string{out, excluded, "kube-system"} {
		if slices.Contains(got, ns) {
			t.Errorf("cluster-wide mode: namespace %s reported", ns)
		}
	}
	// Denied for its revision key, with a warning that it matches nothing.
	if pinned := find(rep, plain, "pinned"); len(pinned) != 2 || pinned[0].Rule != "revision-key" || pinned[1].Rule != "matches-nothing" {
		t.Errorf("cluster-wide mode: %s/pinned results %+v, want revision-key, matches-nothing", plain, pinned)
	}

	// Services everywhere, pods only where opted in: the chart's
	// serviceGuard.namespaceMode.
	svcWide := writeConfig(t, "serviceGuard:\n  mode: warn\n  namespaceMode: cluster-wide\n")
	rep = auditJSON(t, cp.Kubeconfig, 1, "--config", svcWide, "-n", plain)
	if len(rep.Results) != 2 || rep.Results[0].Rule != "revision-key" || rep.Results[0].Result != audit.Fail ||
		rep.Results[0].Properties[audit.PropVerdict] != "warn" || rep.Results[0].Properties[audit.PropMode] != "warn" ||
		rep.Results[1].Policy != audit.PolicyServiceGuard {
		t.Errorf("serviceGuard.namespaceMode cluster-wide, warn mode: results %+v, want the Service's findings only, the revision key as a warning", rep.Results)
	}

	// Nothing selected: exit 0, and a note says why.
	r := runAudit(t, cp.Kubeconfig, "-n", plain)
	if r.code != 0 || !strings.Contains(r.stdout, "netguard acts on nothing in namespace "+plain) {
		t.Errorf("namespace not opted in: exit %d, output:\n%s", r.code, r.stdout)
	}
}

// TestAuditErrors: exit status 2 with a clear error when the kubeconfig
// cannot be read, the API server cannot be reached, or the namespace does
// not exist; nothing on standard output.
func TestAuditErrors(t *testing.T) {
	// A port bound and never listened on: connections to it are refused,
	// and no other process can take it while the socket is open.
	refused := boundPort(t)
	broken := filepath.Join(t.TempDir(), "kubeconfig")
	kc := fmt.Sprintf("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: \"https://%s\", insecure-skip-tls-verify: true}}]\n"+
		"users: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n", refused)
	if err := os.WriteFile(broken, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}

	for name, tc := range map[string]struct {
		kubeconfig string
		args       []string
		want       []string
	}{
		"unreadable kubeconfig":  {filepath.Join(t.TempDir(), "missing"), nil, []string{"reading --kubeconfig"}},
		"unreachable API server": {broken, nil, []string{"scanning the cluster at https://" + refused, "listing namespaces", "connection refused"}},
		"missing namespace":      {cp.Kubeconfig, []string{"-n", "no-such-namespace"}, []string{`namespaces "no-such-namespace" not found`}},
		"bad output":             {cp.Kubeconfig, []string{"-o", "yaml"}, []string{`--output "yaml": want table or json`}},
	} {
		t.Run(name, func(t *testing.T) {
			r := runAudit(t, tc.kubeconfig, tc.args...)
			if r.code != 2 || r.stdout != "" {
				t.Fatalf("exit %d, stdout %q; want 2 and nothing", r.code, r.stdout)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("error %q lacks %q", r.stderr, w)
				}
			}
			t.Logf("%s", strings.TrimSpace(r.stderr))
		})
	}
}

// boundPort binds a TCP socket to a free loopback port without listening,
// for as long as the test runs, and returns its address.
func boundPort(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
}

// TestAuditWithReadOnlyUser runs the audit as a user holding only
// docs/audit-rbac.yaml's role: it reads everything it needs and writes
// nothing. Without list on pods it fails with the API server's
// "forbidden". With the role bound in one namespace only (and get on the
// kube-dns Service), -n works for that namespace.
func TestAuditWithReadOnlyUser(t *testing.T) {
	ctx := context.Background()
	ns := legacyNamespace(t)
	admin := auditJSON(t, cp.Kubeconfig, 1, "-n", ns)

	data, err := os.ReadFile("../../docs/audit-rbac.yaml")
	if err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.ClusterRole{}
	if err := yaml.UnmarshalStrict(data, role); err != nil {
		t.Fatalf("docs/audit-rbac.yaml: %v", err)
	}
	for _, r := range role.Rules {
		for _, v := range r.Verbs {
			if v != "get" && v != "list" {
				t.Errorf("docs/audit-rbac.yaml grants %q on %v", v, r.Resources)
			}
		}
	}
	noPods := role.DeepCopy()
	noPods.Name = "netguard-audit-no-pods"
	noPods.Rules = slices.DeleteFunc(noPods.Rules, func(r rbacv1.PolicyRule) bool { return slices.Contains(r.Resources, "pods") })
	dnsReader := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "netguard-audit-cluster-dns"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"services"}, ResourceNames: []string{"kube-dns"}, Verbs: []string{"get"}}},
	}
	bind := func(user, roleName string) client.Object {
		return &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: roleName + "-" + user},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: roleName},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
		}
	}
	objs := []client.Object{
		role, noPods, dnsReader,
		bind("auditor", role.Name),
		bind("auditor-no-pods", noPods.Name),
		&rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "netguard-audit-team"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "team-auditor"}},
		},
		&rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "netguard-audit-team"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: dnsReader.Name},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "team-auditor"}},
		},
	}
	for _, o := range objs {
		if err := k8s.Create(ctx, o); err != nil {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
		t.Cleanup(func() { _ = k8s.Delete(context.Background(), o) })
	}
	kubeconfig := func(user string) string {
		u, err := cp.Env.AddUser(envtest.User{Name: user, Groups: []string{"system:authenticated"}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		kc, err := u.KubeConfig()
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), user+".kubeconfig")
		if err := os.WriteFile(path, kc, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	// RBAC takes effect moments after the bindings are written.
	allowed := func(user, namespace, verb, resource string) bool {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: user, Groups: []string{"system:authenticated"},
			ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: namespace, Verb: verb, Resource: resource},
		}}
		return k8s.Create(ctx, sar) == nil && sar.Status.Allowed
	}
	waitFor(t, 30*time.Second, "the audit roles in effect", func() bool {
		return allowed("auditor", "", "list", "pods") && allowed("auditor-no-pods", "", "list", "services") &&
			allowed("team-auditor", ns, "list", "pods")
	})

	reader := auditJSON(t, kubeconfig("auditor"), 1, "-n", ns)
	if !equalResults(reader.Results, admin.Results) {
		t.Errorf("the read-only user's report differs from the admin's:\n%+v\n%+v", reader.Results, admin.Results)
	}
	all := runAudit(t, kubeconfig("auditor"))
	if all.code != 1 || !strings.Contains(all.stdout, "Namespace "+ns) {
		t.Errorf("read-only user, all namespaces: exit %d, stderr %q", all.code, all.stderr)
	}
	team := auditJSON(t, kubeconfig("team-auditor"), 1, "-n", ns)
	if !equalResults(team.Results, admin.Results) || team.Settings.ClusterDNS != clusterDNSIP {
		t.Errorf("a team's user bound in its namespace: report differs from the admin's:\n%+v", team)
	}
	r := runAudit(t, kubeconfig("auditor-no-pods"), "-n", ns)
	if r.code != 2 || !strings.Contains(r.stderr, `cannot list resource "pods"`) {
		t.Errorf("without list pods: exit %d, stderr %q; want 2 and the API server's forbidden", r.code, r.stderr)
	}
}

// equalResults compares results, ignoring the order of a result's pods.
func equalResults(a, b []audit.Result) bool {
	norm := func(rs []audit.Result) string {
		out := make([]audit.Result, len(rs))
		for i, r := range rs {
			r.Resources = slices.Clone(r.Resources)
			slices.SortFunc(r.Resources, func(x, y corev1.ObjectReference) int { return strings.Compare(x.Name, y.Name) })
			out[i] = r
		}
		js, _ := json.Marshal(out)
		return string(js)
	}
	return norm(a) == norm(b)
}
