package scale

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/netguard-io/netguard/audit"
)

// auditTimeout bounds one audit process.
const auditTimeout = 15 * time.Minute

// processRun is one measured run of a command that exits by itself.
type processRun struct {
	wall   time.Duration
	maxRSS int64 // bytes, from wait4's rusage
	code   int
	stdout []byte
	stderr string
}

// TestAuditAtScale measures `netguard audit` as a process against a real
// kube-apiserver holding N pods: the cluster of TestServeMemoryAtScale,
// plus a kube-dns Service and one headless Service per Deployment. The
// audit runs with namespaces.mode cluster-wide, so that it judges every
// pod and every Service: all pods would change (they were created without
// netguard), no Service has a finding. It runs once with -o json (whose
// report the test checks) and once with the table; beside them, in the
// same run, ./baseline -list lists and keeps every pod as kubectl does.
// Peak RSS is the exited process's ru_maxrss (see ./peakrss). Nothing is asserted
// on the figures; they are reported.
//
//	NETGUARD_SCALE_PODS=100000 make bench-audit
func TestAuditAtScale(t *testing.T) {
	h := newHarness(t, "make bench-audit")
	sizes, cp, dir, netguard, baseline := h.sizes, h.cp, h.dir, h.netguard, h.baseline
	m := measurer{peakrss: h.peakrss, dir: dir}
	config := filepath.Join(dir, "cluster-wide.yaml")
	if err := os.WriteFile(config, []byte("namespaces:\n  mode: cluster-wide\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	ctx := context.Background()
	cs := h.cs
	if err := cp.CreateClusterDNS(ctx); err != nil {
		t.Fatal(err)
	}
	c := newCluster(cs)
	if err := c.createWorkloads(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.createServices(ctx); err != nil {
		t.Fatal(err)
	}

	type row struct {
		pods                 int
		json, table, listAll processRun
		report               *audit.Report
	}
	var rows []row
	for _, n := range sizes {
		c.grow(ctx, t, n)

		r := row{pods: n}
		var err error
		args := []string{"audit", "--kubeconfig", cp.Kubeconfig, "--config", config}
		if r.json, err = m.run(ctx, netguard, append(args, "-o", "json")...); err != nil {
			t.Fatal(err)
		}
		if r.report, err = checkAuditReport(r.json, n, len(c.rs)); err != nil {
			t.Fatal(err)
		}
		t.Logf("pods=%d: netguard audit -o json  %s; %d list requests; %d progress lines", n, r.json, r.report.Scanned.ListRequests, strings.Count(r.json.stderr, "\n"))
		if r.table, err = m.run(ctx, netguard, args...); err != nil {
			t.Fatal(err)
		}
		if r.table.code != 1 || !bytes.Contains(r.table.stdout, []byte(fmt.Sprintf("pods: %d would change", n))) {
			t.Fatalf("netguard audit (table): exit %d, summary %q; want 1 and %d pods that would change", r.table.code, lastLine(r.table.stdout), n)
		}
		t.Logf("pods=%d: netguard audit (table) %s", n, r.table)
		if r.listAll, err = m.run(ctx, baseline, "-list", "--kubeconfig", cp.Kubeconfig); err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(r.listAll.stdout)); r.listAll.code != 0 || got != fmt.Sprintf("listed %d", n) {
			t.Fatalf("baseline -list: exit %d, said %q, want listed %d; stderr:\n%s", r.listAll.code, got, n, r.listAll.stderr)
		}
		t.Logf("pods=%d: baseline -list          %s", n, r.listAll)
		rows = append(rows, r)
	}

	mib := func(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }
	var b strings.Builder
	b.WriteString("\n| pods | audit -o json: time | peak RSS | B/pod | audit (table): time | peak RSS | list requests | baseline -list: time | peak RSS | B/pod | peak vs baseline |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %d | %s | %s | %d | %s | %s | %d | %s | %s | %d | %.2f× |\n", r.pods,
			r.json.wall.Round(100*time.Millisecond), mib(r.json.maxRSS), r.json.maxRSS/int64(r.pods),
			r.table.wall.Round(100*time.Millisecond), mib(r.table.maxRSS), r.report.Scanned.ListRequests,
			r.listAll.wall.Round(100*time.Millisecond), mib(r.listAll.maxRSS), r.listAll.maxRSS/int64(r.pods),
			float64(r.json.maxRSS)/float64(r.listAll.maxRSS))
	}
	t.Log(b.String())
}

func (r processRun) String() string {
	return fmt.Sprintf("exit %d in %s, peak RSS %.0f MiB", r.code, r.wall.Round(100*time.Millisecond), float64(r.maxRSS)/(1<<20))
}

// measurer runs commands to their end through ./peakrss, which reports
// their peak RSS (see there why not from this process).
type measurer struct{ peakrss, dir string }

// run returns the command's wall time, peak RSS, exit status and output.
func (m measurer) run(ctx context.Context, name string, args ...string) (processRun, error) {
	ctx, cancel := context.WithTimeout(ctx, auditTimeout)
	defer cancel()
	rssFile := filepath.Join(m.dir, "peak-rss")
	_ = os.Remove(rssFile)
	cmd := exec.CommandContext(ctx, m.peakrss, append([]string{"-o", rssFile, name}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := processRun{wall: time.Since(start), stdout: stdout.Bytes(), stderr: stderr.String()}
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		return r, fmt.Errorf("running %s: %w", name, err)
	}
	r.code = cmd.ProcessState.ExitCode()
	data, err := os.ReadFile(rssFile)
	if err != nil {
		return r, fmt.Errorf("%s (exit %d) left no peak RSS: %w; stderr:\n%s", name, r.code, err, tail(r.stderr, 4000))
	}
	if _, err := fmt.Sscan(string(data), &r.maxRSS); err != nil {
		return r, fmt.Errorf("peak RSS %q: %w", data, err)
	}
	return r, nil
}

// checkAuditReport checks the JSON report of a cluster-wide audit of the
// benchmark's cluster: every pod judged and found to change, grouped by
// its Deployment; every Service judged, none with a finding.
func checkAuditReport(r processRun, pods, deployments int) (*audit.Report, error) {
	if r.code != 1 {
		return nil, fmt.Errorf("netguard audit -o json: exit %d, want 1; stderr:\n%s", r.code, tail(r.stderr, 4000))
	}
	var rep audit.Report
	if err := json.Unmarshal(r.stdout, &rep); err != nil {
		return nil, fmt.Errorf("netguard audit -o json: %w", err)
	}
	s := rep.Scanned
	// Services: one per Deployment, default/kubernetes (no selector) and
	// kube-system/kube-dns (netguard never acts on kube-system).
	if s.Pods != pods || s.PodsJudged != pods || s.Services != deployments+2 || s.ServicesJudged != deployments {
		return nil, fmt.Errorf("scanned %+v, want %d pods and %d Services judged", s, pods, deployments)
	}
	// Pods go round-robin to Deployments: below one pod each, only those
	// with a pod have a result.
	withPods := min(pods, deployments)
	if rep.Summary != (audit.Summary{Fail: withPods}) {
		return nil, fmt.Errorf("summary %+v, want %d fail results (one per Deployment with pods)", rep.Summary, withPods)
	}
	for _, res := range rep.Results {
		if res.Rule != audit.RuleMutate || res.Properties[audit.PropChanges] != "dns-options,ndots,search-scrub" {
			return nil, fmt.Errorf("unexpected result %+v", res)
		}
	}
	return &rep, nil
}

// createServices creates a headless Service per Deployment, selecting all
// its pods (envtest's Service range has no room for 5,000 ClusterIPs).
func (c *cluster) createServices(ctx context.Context) error {
	for _, rs := range c.rs {
		labels := map[string]string{}
		for k, v := range rs.Spec.Template.Labels {
			if k != "pod-template-hash" {
				labels[k] = v
			}
		}
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: rs.Namespace, Name: rs.OwnerReferences[0].Name},
			Spec: corev1.ServiceSpec{
				ClusterIP: corev1.ClusterIPNone,
				Selector:  labels,
				Ports:     []corev1.ServicePort{{Name: "http", Port: 8080}},
			},
		}
		if _, err := c.cs.CoreV1().Services(rs.Namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating Service %s/%s: %w", svc.Namespace, svc.Name, err)
		}
	}
	return nil
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}
