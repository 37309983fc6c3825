package resolvers

import (
	"context"
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

	"github.com/netguard-io/netguard/test/musl"
)

// This file holds the plumbing: a network namespace whose only DNS server
// is a query-counting stand-in for the cluster DNS, and the resolvers that
// look names up in it.

// dnsIP is the cluster DNS Service IP in these tests.
const dnsIP = "192.0.2.10"

// clusterDNS answers like CoreDNS's kubernetes plugin for the records it
// holds (A, and SRV for _port._proto names), NODATA for their other types,
// NXDOMAIN for every other name; it records every question it receives.
type clusterDNS struct {
	a   map[string]string // FQDN -> IPv4
	srv map[string]string // FQDN -> target FQDN (port 80)

	mu      sync.Mutex
	queries []string
}

func (c *clusterDNS) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	if len(r.Question) == 1 {
		q := r.Question[0]
		name := strings.ToLower(q.Name)
		c.mu.Lock()
		c.queries = append(c.queries, dns.TypeToString[q.Qtype]+" "+name)
		c.mu.Unlock()
		hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Rrtype: q.Qtype, Ttl: 5}
		ip, isA := c.a[name]
		target, isSRV := c.srv[name]
		switch {
		case isA && q.Qtype == dns.TypeA:
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: net.ParseIP(ip)})
		case isSRV && q.Qtype == dns.TypeSRV:
			m.Answer = append(m.Answer, &dns.SRV{Hdr: hdr, Port: 80, Target: target})
		case isA || isSRV:
			// NODATA: the name exists without records of this type.
		default:
			m.Rcode = dns.RcodeNameError
		}
	}
	_ = w.WriteMsg(m)
}

func (c *clusterDNS) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.queries
	c.queries = nil
	return out
}

// netns is a network namespace holding dnsIP, whose resolv.conf `ip netns
// exec` bind-mounts from /etc/netns/NAME.
type netns struct {
	t    *testing.T
	name string
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
}

// newNetns creates the namespace with dnsIP on its loopback and a global
// IPv6 address, so that glibc asks for AAAA too (AI_ADDRCONFIG), as in a
// dual-stack pod; it serves h on dnsIP:53.
func newNetns(t *testing.T, h dns.Handler) *netns {
	t.Helper()
	ns := &netns{t: t, name: fmt.Sprintf("ng-resolvers-%d", os.Getpid())}
	run(t, "ip", "netns", "add", ns.name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", ns.name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", ns.name, err, out)
		}
		_ = os.RemoveAll(filepath.Join("/etc/netns", ns.name))
	})
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"addr", "add", dnsIP + "/32", "dev", "lo"},
		// A veth pair: not every kernel has the dummy link type.
		{"link", "add", "v6a", "type", "veth", "peer", "name", "v6b"},
		{"link", "set", "v6a", "up"},
		{"link", "set", "v6b", "up"},
		{"addr", "add", "2001:db8::10/64", "dev", "v6a", "nodad"},
	} {
		run(t, "ip", append([]string{"-n", ns.name}, args...)...)
	}
	ns.serve(h)
	return ns
}

// serve opens UDP and TCP sockets on dnsIP:53 inside the namespace (a
// socket belongs to the namespace it was created in, whichever thread
// serves it later) and serves h on them.
func (ns *netns) serve(h dns.Handler) {
	var pc net.PacketConn
	var ln net.Listener
	err := inNetns(ns.name, func() error {
		var err error
		if pc, err = net.ListenPacket("udp4", dnsIP+":53"); err != nil {
			return err
		}
		ln, err = net.Listen("tcp4", dnsIP+":53")
		return err
	})
	if err != nil {
		ns.t.Fatalf("listening in %s: %v", ns.name, err)
	}
	for _, s := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}} {
		go func() { _ = s.ActivateAndServe() }()
		ns.t.Cleanup(func() { _ = s.Shutdown() })
	}
}

func inNetns(name string, fn func() error) error {
	runtime.LockOSThread()
	// The thread is left locked on purpose: it is discarded when the
	// goroutine ends rather than reused in the wrong namespace.
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return err
	}
	defer orig.Close()
	target, err := os.Open(filepath.Join("/run/netns", name))
	if err != nil {
		return err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("setns %s: %w", name, err)
	}
	fnErr := fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("restoring namespace: %w", err)
	}
	runtime.UnlockOSThread()
	return fnErr
}

// setResolvConf makes text the namespace's /etc/resolv.conf.
func (ns *netns) setResolvConf(text string) {
	dir := filepath.Join("/etc/netns", ns.name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		ns.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte(text), 0o644); err != nil {
		ns.t.Fatal(err)
	}
}

// resolver looks a name up the way one stub resolver does.
type resolver struct {
	// name as in the report: glibc, musl, go, dig.
	name string
	// command returns the command line that looks name up with qtype
	// (A for addresses, SRV), or nil when this resolver has no such lookup.
	command func(name string, qtype uint16) []string
	// found reports whether the command's output holds an answer.
	found func(out string) bool
}

// resolvers are the four the issue of record names: glibc's getaddrinfo
// (getent), musl's (a static musl-gcc build), Go's own, and BIND's dig
// +search, the probe of Kubernetes' DNS conformance tests.
func resolvers(t *testing.T) []resolver {
	t.Helper()
	musl := buildMusl(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	hasAddr := func(out string) bool {
		for _, f := range strings.Fields(out) {
			if net.ParseIP(f) != nil {
				return true
			}
		}
		return false
	}
	return []resolver{
		{name: "glibc", found: hasAddr, command: func(name string, qtype uint16) []string {
			if qtype != dns.TypeA {
				return nil
			}
			return []string{"getent", "ahosts", name}
		}},
		{name: "musl", found: hasAddr, command: func(name string, qtype uint16) []string {
			if qtype != dns.TypeA {
				return nil
			}
			return []string{musl, name}
		}},
		{name: "go", found: func(out string) bool { return hasAddr(out) || strings.Contains(out, "SRV ") }, command: func(name string, qtype uint16) []string {
			return []string{"env", goLookupEnv + "=" + dns.TypeToString[qtype] + " " + name, "GODEBUG=netdns=go", self}
		}},
		{name: "dig", found: func(out string) bool { return hasAddr(out) || strings.Contains(out, " 80 ") }, command: func(name string, qtype uint16) []string {
			return []string{"dig", "+search", "+short", "+tries=1", "+time=2", name, dns.TypeToString[qtype]}
		}},
	}
}

// buildMusl builds the static musl getaddrinfo program (test/musl).
func buildMusl(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "musl-getaddrinfo")
	if err := musl.Build(bin); err != nil {
		t.Fatal(err)
	}
	return bin
}

// lookup runs one resolver's lookup of name in the namespace and returns
// whether it found an answer and the questions the cluster DNS received.
func (ns *netns) lookup(r resolver, server *clusterDNS, name string, qtype uint16) (found bool, queries []string) {
	ns.t.Helper()
	args := r.command(name, qtype)
	server.take()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns.name}, args...)...).CombinedOutput()
	if ctx.Err() != nil {
		ns.t.Fatalf("%s lookup of %s did not end: %s", r.name, name, out)
	}
	// Every question was recorded before it was answered, and the lookup
	// ended only after its answers: nothing is still on its way.
	queries = server.take()
	return err == nil && r.found(string(out)), queries
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
