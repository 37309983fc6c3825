// Package glibc measures what glibc's resolver really sends for the
// resolv.conf netguard renders, against the kubelet default: getent runs in
// a network namespace (ip netns exec bind-mounts /etc/netns/NAME/resolv.conf)
// whose only DNS server is a query-counting server created by the test.
package glibc

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

const (
	dnsIP        = "192.0.2.10" // the cluster DNS Service IP in this test
	externalName = "api.example.com"
	externalIP   = "198.51.100.80"
)

// queryLog records every question the server receives.
type queryLog struct {
	mu      sync.Mutex
	queries []string
}

func (q *queryLog) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	if len(r.Question) == 1 {
		question := r.Question[0]
		q.mu.Lock()
		q.queries = append(q.queries, dns.TypeToString[question.Qtype]+" "+question.Name)
		q.mu.Unlock()
		switch {
		case question.Name == externalName+"." && question.Qtype == dns.TypeA:
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: question.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 30}, A: net.ParseIP(externalIP)})
		case question.Name == externalName+".":
			// NODATA for AAAA: the name exists.
		default:
			m.Rcode = dns.RcodeNameError
		}
	}
	_ = w.WriteMsg(m)
}

func (q *queryLog) take() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := q.queries
	q.queries = nil
	return out
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	for _, tool := range []string{"ip", "getent"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s: %v", tool, err)
		}
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// newNetns creates a network namespace with dnsIP on its loopback and a
// global IPv6 address.
func newNetns(t *testing.T) string {
	t.Helper()
	ns := fmt.Sprintf("ng-glibc-%d", os.Getpid())
	run(t, "ip", "netns", "add", ns)
	t.Cleanup(func() {
		_ = exec.Command("ip", "netns", "del", ns).Run()
		_ = os.RemoveAll(filepath.Join("/etc/netns", ns))
	})
	run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	run(t, "ip", "-n", ns, "addr", "add", dnsIP+"/32", "dev", "lo")
	// A global IPv6 address makes glibc ask for AAAA too (AI_ADDRCONFIG),
	// as in a dual-stack pod.
	// (A veth pair: not every kernel has the dummy link type.)
	run(t, "ip", "-n", ns, "link", "add", "v6a", "type", "veth", "peer", "name", "v6b")
	run(t, "ip", "-n", ns, "link", "set", "v6a", "up")
	run(t, "ip", "-n", ns, "link", "set", "v6b", "up")
	run(t, "ip", "-n", ns, "addr", "add", "2001:db8::10/64", "dev", "v6a", "nodad")
	return ns
}

// serveInNetns opens UDP and TCP sockets on dnsIP:53 inside the namespace
// (a socket belongs to the namespace it was created in, whichever thread
// serves it later) and serves h on them.
func serveInNetns(t *testing.T, ns string, h dns.Handler) {
	t.Helper()
	var pc net.PacketConn
	var ln net.Listener
	err := inNetns(ns, func() error {
		var err error
		if pc, err = net.ListenPacket("udp4", dnsIP+":53"); err != nil {
			return err
		}
		ln, err = net.Listen("tcp4", dnsIP+":53")
		return err
	})
	if err != nil {
		t.Fatalf("listening in %s: %v", ns, err)
	}
	for _, s := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}} {
		go func() { _ = s.ActivateAndServe() }()
		t.Cleanup(func() { _ = s.Shutdown() })
	}
}

func inNetns(ns string, fn func() error) error {
	runtime.LockOSThread()
	// The thread is left locked on purpose: it is discarded when the
	// goroutine ends rather than reused in the wrong namespace.
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return err
	}
	defer orig.Close()
	target, err := os.Open(filepath.Join("/run/netns", ns))
	if err != nil {
		return err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("setns %s: %w", ns, err)
	}
	fnErr := fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("restoring namespace: %w", err)
	}
	runtime.UnlockOSThread()
	return fnErr
}

// lookup runs `getent ahosts name` in the namespace with resolvConf as its
// /etc/resolv.conf and returns the queries the server saw.
func lookup(t *testing.T, ns, resolvConf string, log *queryLog) (queries []string, answer string) {
	t.Helper()
	dir := filepath.Join("/etc/netns", ns)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte(resolvConf), 0o644); err != nil {
		t.Fatal(err)
	}
	log.take()
	cmd := exec.Command("ip", "netns", "exec", ns, "getent", "ahosts", externalName)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("getent ahosts %s: %v\n%s", externalName, err, out)
	}
	time.Sleep(50 * time.Millisecond) // let the server record the last answer
	return log.take(), string(out)
}

func buildNetguard(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "netguard")
	run(t, "go", "build", "-o", bin, "github.com/netguard-io/netguard/cmd/netguard")
	return bin
}

// TestNetguardResolvConfCutsQueriesForExternalNames renders the pod's
// resolv.conf with `netguard resolv` on a node that leaked `search
// example.org`, then counts what glibc sends to look up an external name.
func TestNetguardResolvConfCutsQueriesForExternalNames(t *testing.T) {
	requireRoot(t)
	bin := buildNetguard(t)
	dir := t.TempDir()
	podFile := filepath.Join(dir, "pod.yaml")
	nodeResolv := filepath.Join(dir, "node-resolv.conf")
	if err := os.WriteFile(podFile, []byte("apiVersion: v1\nkind: Pod\nmetadata:\n  name: app\nspec:\n  containers:\n  - name: app\n    image: registry.example/app:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(nodeResolv, []byte("nameserver 192.0.2.53\nsearch example.org\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"resolv", "-f", podFile, "--namespace", "team", "--node-resolv", nodeResolv, "--cluster-dns", dnsIP, "--cluster-domain", "cluster.local"}
	kubelet := run(t, bin, append(args, "--unmutated")...)
	hardened := run(t, bin, args...)
	t.Logf("kubelet default resolv.conf:\n%s", kubelet)
	t.Logf("netguard resolv.conf:\n%s", hardened)

	for _, want := range []string{"search team.svc.cluster.local svc.cluster.local cluster.local\n", "ndots:2", "single-request-reopen", "nameserver " + dnsIP} {
		if !strings.Contains(hardened, want) {
			t.Errorf("netguard resolv.conf lacks %q", want)
		}
	}
	if strings.Contains(hardened, "example.org") {
		t.Errorf("netguard resolv.conf still searches the node's example.org")
	}

	ns := newNetns(t)
	log := &queryLog{}
	serveInNetns(t, ns, log)

	before, answer := lookup(t, ns, kubelet, log)
	if !strings.Contains(answer, externalIP) {
		t.Fatalf("kubelet default: getent did not resolve %s: %q", externalName, answer)
	}
	after, answer := lookup(t, ns, hardened, log)
	if !strings.Contains(answer, externalIP) {
		t.Fatalf("netguard: getent did not resolve %s: %q", externalName, answer)
	}
	t.Logf("queries for %s with the kubelet default: %d %v", externalName, len(before), before)
	t.Logf("queries for %s with netguard: %d %v", externalName, len(after), after)
	if len(after) > 2 {
		t.Errorf("netguard resolv.conf: glibc sent %d queries, want at most 2 (A and AAAA of the name itself)", len(after))
	}
	if len(before) < 10 {
		t.Errorf("kubelet default sent only %d queries, want 10 (5 names × A and AAAA); the test no longer reproduces the search-list amplification", len(before))
	}
	for _, q := range after {
		if strings.Contains(q, "example.org") || strings.Contains(q, "cluster.local") {
			t.Errorf("netguard resolv.conf: glibc still walked the search list: %s", q)
		}
	}
}
