package dnsproxy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/netguard-io/netguard/test/ports"
)

// udpPaths are the two ways the proxy serves UDP; tests that exercise the
// UDP path run on both.
var udpPaths = map[string]bool{"poll loop": false, "goroutine per query": true}

// testUpstream is an in-process DNS server on a loopback address that
// records what it receives.
type testUpstream struct {
	addr netip.AddrPort

	mu    sync.Mutex
	ports []int      // source port of every query, UDP and TCP
	ids   []uint16   // message ID of every query
	msgs  []*dns.Msg // every query
	nets  []string   // "udp" or "tcp" for every query
}

// startUpstream serves handler on ip (UDP and TCP, same port) until the
// test ends. handler may be nil for "answer A 198.51.100.1, AAAA
// 2001:db8::1".
func startUpstream(t testing.TB, ip string, handler dns.HandlerFunc) *testUpstream {
	t.Helper()
	if handler == nil {
		handler = answerAddress
	}
	u := &testUpstream{}
	// UDP picks the port; TCP may find it taken, then both try again.
	var pc net.PacketConn
	var ln net.Listener
	for try := 1; ; try++ {
		var err error
		if pc, err = net.ListenPacket("udp", net.JoinHostPort(ip, "0")); err != nil {
			t.Fatalf("upstream: %v", err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
		if try == 10 || !errors.Is(err, syscall.EADDRINUSE) {
			t.Fatalf("upstream tcp on %s: %v", pc.LocalAddr(), err)
		}
	}
	u.addr = pc.LocalAddr().(*net.UDPAddr).AddrPort()
	record := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		ap, _ := netip.ParseAddrPort(w.RemoteAddr().String())
		u.mu.Lock()
		u.ports = append(u.ports, int(ap.Port()))
		u.ids = append(u.ids, r.Id)
		u.msgs = append(u.msgs, r.Copy())
		u.nets = append(u.nets, w.RemoteAddr().Network())
		u.mu.Unlock()
		handler(w, r)
	})
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: record}, {Listener: ln, Handler: record}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() { _ = srv.ActivateAndServe() }()
		<-started
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
	return u
}

func (u *testUpstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.ports)
}

func (u *testUpstream) seen() (ports []int, ids []uint16, msgs []*dns.Msg, nets []string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]int(nil), u.ports...), append([]uint16(nil), u.ids...), append([]*dns.Msg(nil), u.msgs...), append([]string(nil), u.nets...)
}

// answerAddress answers A and AAAA questions with one record, TTL 60.
func answerAddress(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	q := r.Question[0]
	switch q.Qtype {
	case dns.TypeA:
		m.Answer = append(m.Answer, &dns.A{Hdr: rrHeader(q.Name, dns.TypeA, 60), A: net.ParseIP("198.51.100.1")})
	case dns.TypeAAAA:
		m.Answer = append(m.Answer, &dns.AAAA{Hdr: rrHeader(q.Name, dns.TypeAAAA, 60), AAAA: net.ParseIP("2001:db8::1")})
	}
	if opt := r.IsEdns0(); opt != nil {
		m.SetEdns0(opt.UDPSize(), opt.Do())
	}
	_ = w.WriteMsg(m)
}

func rrHeader(name string, rrtype uint16, ttl uint32) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: rrtype, Class: dns.ClassINET, Ttl: ttl}
}

// blackhole is a UDP socket that reads queries and never answers, like a
// DNS server whose packets vanish. It records the source ports.
type blackhole struct {
	addr  netip.AddrPort
	mu    sync.Mutex
	ports []int
}

func startBlackhole(t *testing.T, ip string) *blackhole {
	t.Helper()
	pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(ip), 0)))
	if err != nil {
		t.Fatalf("blackhole: %v", err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	b := &blackhole{addr: pc.LocalAddr().(*net.UDPAddr).AddrPort()}
	go func() {
		buf := make([]byte, 4096)
		for {
			_, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			b.mu.Lock()
			b.ports = append(b.ports, int(from.Port()))
			b.mu.Unlock()
		}
	}()
	return b
}

func (b *blackhole) seen() []int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]int(nil), b.ports...)
}

// closedPort returns a loopback UDP address nothing listens on, so
// packets to it draw ICMP port unreachable: a port reserved for the test
// from below the kernel's ephemeral range (test/ports), which no socket
// bound to port 0 can get, held until the test ends.
func closedPort(t *testing.T, ip string) netip.AddrPort {
	t.Helper()
	p, err := ports.Reserve()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Release)
	return netip.AddrPortFrom(netip.MustParseAddr(ip), uint16(p.Port))
}

// testProxy is a running Proxy with its registry.
type testProxy struct {
	*Proxy
	reg  *prometheus.Registry
	addr string
}

// startProxy runs a Proxy on 127.0.0.1 with a free port until the test
// ends, and checks that Run returns nil after cancellation.
func startProxy(t *testing.T, cfg Config, portable bool) *testProxy {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.Listeners == 0 {
		cfg.Listeners = 2
	}
	reg := prometheus.NewRegistry()
	p, err := New(cfg, testr.NewWithOptions(t, testr.Options{Verbosity: 0}), reg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	p.portableUDP = portable
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	select {
	case <-p.started:
	case err := <-done:
		cancel()
		t.Fatalf("Run: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("proxy did not start")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v after cancellation", err)
			}
		case <-time.After(p.cfg.Deadline + 5*time.Second):
			t.Error("Run did not return after cancellation")
		}
	})
	return &testProxy{Proxy: p, reg: reg, addr: p.addr.String()}
}

// counter reads one sample of a metric family by its labels.
func (tp *testProxy) counter(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := tp.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue metrics
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			}
		}
	}
	return 0
}

// histogram reads the sum and count of a histogram without labels.
func (tp *testProxy) histogram(t *testing.T, name string) (sum float64, count uint64) {
	t.Helper()
	mfs, err := tp.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			h := mf.GetMetric()[0].GetHistogram()
			return h.GetSampleSum(), h.GetSampleCount()
		}
	}
	return 0, 0
}

// wantCounter waits (boundedly: replies are sent before they are counted)
// for a metric to reach want, and fails the test if it does not.
func (tp *testProxy) wantCounter(t *testing.T, want float64, name string, labels ...string) {
	t.Helper()
	var got float64
	for range 100 {
		if got = tp.counter(t, name, labels...); got == want {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("%s%v = %v, want %v", name, labels, got, want)
}

// exchange sends m to the proxy over network ("udp" or "tcp").
func exchange(t *testing.T, network, addr string, m *dns.Msg) *dns.Msg {
	t.Helper()
	r, err := tryExchange(network, addr, m)
	if err != nil {
		t.Fatalf("%s query %s: %v", network, m.Question[0].Name, err)
	}
	return r
}

func tryExchange(network, addr string, m *dns.Msg) (*dns.Msg, error) {
	c := &dns.Client{Net: network, Timeout: 5 * time.Second, UDPSize: 65535}
	r, _, err := c.Exchange(m, addr)
	return r, err
}

func question(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	return m
}

// rawExchange sends raw bytes over UDP and returns the reply, or nil when
// none comes within wait.
func rawExchange(t *testing.T, addr string, msg []byte, wait time.Duration) []byte {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 65536)
	n, err := c.Read(buf)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil
		}
		t.Fatalf("reading raw reply: %v", err)
	}
	return buf[:n]
}

func pack(t *testing.T, m *dns.Msg) []byte {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func distinct(ports []int) int {
	set := map[int]bool{}
	for _, p := range ports {
		set[p] = true
	}
	return len(set)
}

func testLogger(t *testing.T) logr.Logger {
	return testr.NewWithOptions(t, testr.Options{Verbosity: 0})
}

// testLoggerF discards: fuzzing logs nothing worth reading per input.
func testLoggerF(testing.TB) logr.Logger { return logr.Discard() }
