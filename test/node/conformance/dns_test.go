// Package conformance runs Kubernetes' own DNS conformance specs, the
// "[sig-network] DNS" specs of e2e.test, on a real node where netguard acts
// on every namespace (namespaces.mode cluster-wide), so that the pods the
// specs create go through netguard. Their probes look names up with `dig
// +search` and getent in an Alpine-based image (agnhost) and a glibc one
// (glibc-dns-testing): names such as kubernetes.default.svc must keep
// resolving whatever netguard writes into their resolv.conf.
//
// `make e2e-dns-conformance` runs it (as root, not part of make test: it
// needs e2e.test, built once per machine, and about 10 minutes).
// NETGUARD_DNS_RESOLVER_DEFAULT sets netguard's dns.resolver.default for
// the run: glibc, which lowers ndots for the specs' unclassified images
// too, shows what the specs catch.
package conformance

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/netguard-io/netguard/hack/ociimage"
	"github.com/netguard-io/netguard/policies/podpolicy"
	"github.com/netguard-io/netguard/test/node"
)

var cluster *node.Cluster

func TestMain(m *testing.M) {
	os.Exit(node.TestMain(m, "NETGUARD_DNS_CONFORMANCE", "make e2e-dns-conformance", func(c *node.Cluster) { cluster = c }))
}

// The images the DNS specs run, by the names e2e.test v1.37.2 gives them
// (test/utils/image/manifest.go), so that nothing is pulled and netguard
// sees the names a real cluster shows it.
const (
	agnhostImage = "registry.k8s.io/e2e-test-images/agnhost:2.66.1"
	glibcImage   = "registry.k8s.io/e2e-test-images/glibc-dns-testing:2.1.1"
)

// focus and skip select the specs: every [sig-network] DNS spec but those
// that need what a single offline node has not: a cloud provider (gce),
// other features behind gates, or the node to itself ([Serial]).
const (
	focus = `\[sig-network\] DNS `
	skip  = `\[Serial\]|\[Disruptive\]|\[Feature:|\[Flaky\]|\[Provider:|gce`
)

func TestDNSConformance(t *testing.T) {
	assets := os.Getenv("NETGUARD_CONFORMANCE_ASSETS")
	if assets == "" {
		t.Fatal("NETGUARD_CONFORMANCE_ASSETS (hack/conformance-assets.sh) is not set; run `make e2e-dns-conformance`")
	}
	ctx := context.Background()
	dir := t.TempDir()
	var archives []string
	for ref, img := range map[string]func() (v1.Image, error){
		agnhostImage: func() (v1.Image, error) {
			return probeImage(filepath.Join(assets, "agnhost"), filepath.Join(os.Getenv("NETGUARD_NODE_ASSETS"), "coredns"))
		},
		glibcImage: func() (v1.Image, error) { return probeImage("", "") },
	} {
		image, err := img()
		if err != nil {
			t.Fatalf("image %s: %v", ref, err)
		}
		archive := filepath.Join(dir, fmt.Sprintf("image-%d.tar", len(archives)))
		if err := ociimage.WriteArchive(archive, image, ref); err != nil {
			t.Fatal(err)
		}
		archives = append(archives, archive)
	}
	if err := cluster.ImportImages(archives...); err != nil {
		t.Fatal(err)
	}

	set := []string{"--set", "namespaces.mode=cluster-wide", "--wait", "--timeout", "180s"}
	if r := os.Getenv("NETGUARD_DNS_RESOLVER_DEFAULT"); r != "" {
		set = append(set, "--set", "dns.resolver.default="+r)
	}
	if err := cluster.Helm(ctx, "upgrade", set...); err != nil {
		t.Fatal(err)
	}
	if err := cluster.WaitNetguard(ctx); err != nil {
		t.Fatal(err)
	}

	report := filepath.Join(dir, "report")
	cmd := exec.CommandContext(ctx, filepath.Join(assets, "e2e.test"),
		"--kubeconfig="+cluster.Kubeconfig,
		"--provider=local",
		"--dns-domain="+node.ClusterDomain,
		"--report-dir="+report,
		// The namespaces stay, so that their pods show what netguard did.
		"--delete-namespace=false",
		"--ginkgo.focus="+focus,
		"--ginkgo.skip="+skip,
		// A spec that fails waits 10 minutes for its probes.
		"--ginkgo.timeout=75m",
		"--ginkgo.no-color",
	)
	// e2e.test leaves files in its temporary directory (kubectl's kuberc):
	// give it the test's own.
	cmd.Env = append(os.Environ(), "TMPDIR="+dir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	began := time.Now()
	runErr := cmd.Run()
	t.Logf("e2e.test ran %s (exit: %v); output tail:\n%s", time.Since(began).Round(time.Second), runErr, tail(out.String(), 40))

	specs := readJUnit(t, report)
	passed := 0
	for _, s := range specs {
		t.Logf("%-7s %s (%.0fs)", s.result(), s.Name, s.Time)
		if s.result() == "passed" {
			passed++
		}
	}
	t.Logf("%d of %d specs passed with netguard cluster-wide (dns.resolver.default %q)", passed, len(specs), os.Getenv("NETGUARD_DNS_RESOLVER_DEFAULT"))
	if len(specs) == 0 {
		t.Fatal("no spec ran")
	}
	for _, s := range specs {
		if r := s.result(); r == "failed" {
			t.Errorf("spec failed: %s\n%s", s.Name, tail(s.Failure.Text, 15))
		}
	}
	checkMutated(t, ctx)
}

// checkMutated: the specs' probe pods went through netguard (status
// annotation), and shows what it made of one.
func checkMutated(t *testing.T, ctx context.Context) {
	nss, err := cluster.Client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	probes, mutated := 0, 0
	for _, ns := range nss.Items {
		if !strings.HasPrefix(ns.Name, "dns-") && !strings.HasPrefix(ns.Name, "hostnetworkdns-") {
			continue
		}
		pods, err := cluster.Client.CoreV1().Pods(ns.Name).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pods.Items {
			if !strings.HasPrefix(p.Name, "dns-test-") {
				continue
			}
			probes++
			st, ok := p.Annotations[podpolicy.AnnotationStatus]
			if !ok {
				continue
			}
			mutated++
			if mutated == 1 {
				t.Logf("probe pod %s/%s: %s= %s; dnsPolicy %s, dnsConfig %s", p.Namespace, p.Name, podpolicy.AnnotationStatus, st, p.Spec.DNSPolicy, dnsConfig(p.Spec.DNSConfig))
				if resolv, _, err := cluster.Exec(ctx, p.Namespace, p.Name, p.Spec.Containers[0].Name, "cat", "/etc/resolv.conf"); err == nil {
					t.Logf("its /etc/resolv.conf:\n%s", resolv)
				}
			}
		}
		grace := int64(0)
		_ = cluster.Client.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{GracePeriodSeconds: &grace})
	}
	t.Logf("%d of %d probe pods carry %s", mutated, probes, podpolicy.AnnotationStatus)
	if probes == 0 || mutated != probes {
		t.Errorf("%d of %d probe pods went through netguard: the run proves nothing about netguard", mutated, probes)
	}
}

func dnsConfig(dc *corev1.PodDNSConfig) string {
	if dc == nil {
		return "none"
	}
	var opts []string
	for _, o := range dc.Options {
		if o.Value != nil {
			opts = append(opts, o.Name+":"+*o.Value)
		} else {
			opts = append(opts, o.Name)
		}
	}
	return fmt.Sprintf("nameservers %v, searches %v, options %v", dc.Nameservers, dc.Searches, opts)
}

// probeImage holds what the specs' probe scripts run: a shell and its
// tools (Debian's static busybox), dig and getent (this machine's, with
// their libraries), and, when given, agnhost at /agnhost, its entrypoint,
// and CoreDNS at /coredns, as in the agnhost image (a spec runs its own
// DNS server from it).
func probeImage(agnhost, coredns string) (v1.Image, error) {
	files, err := ociimage.HostProgram("/usr/bin/dig")
	if err != nil {
		return nil, err
	}
	getent, err := ociimage.HostProgram("/usr/bin/getent")
	if err != nil {
		return nil, err
	}
	files = append(files, getent...)
	bb, err := ociimage.HostFile("/bin/busybox", "/bin/busybox")
	if err != nil {
		return nil, fmt.Errorf("%w (Debian package busybox-static)", err)
	}
	files = append(files, bb)
	for _, tool := range []string{"sh", "seq", "sleep", "test", "echo", "cat", "ls", "grep", "hostname"} {
		files = append(files, ociimage.File{Path: "/bin/" + tool, Link: "busybox"})
	}
	files = append(files,
		ociimage.File{Path: "/etc/nsswitch.conf", Data: []byte("hosts: files dns\n"), Mode: 0o644},
		ociimage.File{Path: "/results", Dir: true, Mode: 0o777},
		ociimage.File{Path: "/tmp", Dir: true, Mode: 0o1777})
	cfg := ociimage.Config{Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, Cmd: []string{"sh"}}
	if agnhost != "" {
		f, err := ociimage.HostFile(agnhost, "/agnhost")
		if err != nil {
			return nil, err
		}
		c, err := ociimage.HostFile(coredns, "/coredns")
		if err != nil {
			return nil, err
		}
		files = append(files, f, c)
		cfg.Entrypoint, cfg.Cmd = []string{"/agnhost"}, []string{"pause"}
	}
	return ociimage.Build(files, cfg)
}

// junitCase is a spec in e2e.test's JUnit report.
type junitCase struct {
	Name    string  `xml:"name,attr"`
	Time    float64 `xml:"time,attr"`
	Status  string  `xml:"status,attr"`
	Skipped *struct {
		Message string `xml:"message,attr"`
	} `xml:"skipped"`
	Failure *struct {
		Text string `xml:",chardata"`
	} `xml:"failure"`
}

func (c junitCase) result() string {
	switch {
	case c.Failure != nil:
		return "failed"
	case c.Skipped != nil || c.Status == "skipped" || c.Status == "pending":
		return "skipped"
	}
	return "passed"
}

// readJUnit returns the specs of the report that ran (ginkgo lists the
// ones the focus left out as skipped, and the suite's setup as
// [SynchronizedBeforeSuite] and the like).
func readJUnit(t *testing.T, dir string) []junitCase {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "junit*.xml"))
	if len(files) == 0 {
		t.Fatalf("no JUnit report in %s", dir)
	}
	var out []junitCase
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var suites struct {
			Suites []struct {
				Cases []junitCase `xml:"testcase"`
			} `xml:"testsuite"`
		}
		if err := xml.Unmarshal(b, &suites); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, s := range suites.Suites {
			for _, c := range s.Cases {
				if c.result() == "skipped" || !strings.Contains(c.Name, "[sig-network] DNS") {
					continue
				}
				out = append(out, c)
			}
		}
	}
	return out
}

func tail(s string, lines int) string {
	parts := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}
