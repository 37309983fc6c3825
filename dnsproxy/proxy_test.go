package dnsproxy

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestForwardsAddressQueries(t *testing.T) {
	tests := map[string]struct {
		network string
		qtype   uint16
		want    string
	}{
		"A over UDP":     {network: "udp", qtype: dns.TypeA, want: "198.51.100.1"},
		"AAAA over UDP":  {network: "udp", qtype: dns.TypeAAAA, want: "2001:db8::1"},
		"A over TCP":     {network: "tcp", qtype: dns.TypeA, want: "198.51.100.1"},
		"AAAA over TCP":  {network: "tcp", qtype: dns.TypeAAAA, want: "2001:db8::1"},
		"MX (no answer)": {network: "udp", qtype: dns.TypeMX},
	}
	for path, portable := range udpPaths {
		t.Run(path, func(t *testing.T) {
			up := startUpstream(t, "127.0.0.2", nil)
			p := startProxy(t, Config{Upstreams: []netip.AddrPort{up.addr}}, portable)
			for name, tc := range tests {
				t.Run(name, func(t *testing.T) {
					q := question("svc.upstream.test", tc.qtype)
					r := exchange(t, tc.network, p.addr, q)
					if r.Id != q.Id || r.Rcode != dns.RcodeSuccess {
						t.Fatalf("reply id %d rcode %s, want id %d NOERROR", r.Id, dns.RcodeToString[r.Rcode], q.Id)
					}
					if tc.want == "" {
						if len(r.Answer) != 0 {
							t.Fatalf("answer %v, want none", r.Answer)
						}
						return
					}
					if len(r.Answer) != 1 || !strings.HasSuffix(r.Answer[0].String(), tc.want) {
						t.Fatalf("answer %v, want %s", r.Answer, tc.want)
					}
				})
			}
			p.wantCounter(t, 2, "netguard_dnsproxy_queries_total", "proto", "tcp")
			p.wantCounter(t, float64(len(tests)), "netguard_dnsproxy_responses_total", "rcode", "NOERROR")
		})
	}
}

// TestEveryUpstreamQueryUsesANewSourcePort is the reason the forwarder
// exists: a pooled socket that keeps its port would show one source port
// (or a few). On the poll loop these sequential queries go out on reused
// sockets, each disconnected in between so that it gets a new port. The
// kernel picks each ephemeral port at random, so two attempts in a row
// can get the same port by chance (about 7% for 64 queries over the
// default 28,000-port range); allowing two repeats keeps the test
// deterministic while any socket that keeps its port fails it.
func TestEveryUpstreamQueryUsesANewSourcePort(t *testing.T) {
	const n = 64
	for path, portable := range udpPaths {
		for _, network := range []string{"udp", "tcp"} {
			for _, ip := range []string{"127.0.0.2", "::1"} {
				t.Run(path+"/"+network+"/"+ip, func(t *testing.T) {
					testNewSourcePorts(t, portable, network, ip, n)
				})
			}
		}
	}
}

func testNewSourcePorts(t *testing.T, portable bool, network, ip string, n int) {
	if !loopbackAvailable(ip) {
		t.Skipf("no %s on this machine", ip)
	}
	up := startUpstream(t, ip, nil)
	// Without warm ports (TestWarmPort): every attempt from a new port.
	p := startProxy(t, Config{Upstreams: []netip.AddrPort{up.addr}, WarmPortAge: -1}, portable)
	c := &dns.Client{Net: network, Timeout: 5 * time.Second}
	conn, err := c.Dial(p.addr) // one client socket, as nginx has
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i := range n {
		if _, _, err := c.ExchangeWithConn(question("fresh.upstream.test", dns.TypeA), conn); err != nil {
			t.Fatalf("query %d: %v", i, err)
		}
	}
	// One attempt per query, plus a hedge for any answer that
	// came later than the hedge delay (a loaded machine).
	ports, ids, _, nets := up.seen()
	hedged := p.counter(t, "netguard_dnsproxy_hedged_attempts_total")
	if len(ports) < n || float64(len(ports)) > float64(n)+hedged {
		t.Fatalf("upstream saw %d queries, want %d plus at most the %v hedged attempts", len(ports), n, hedged)
	}
	if got := distinct(ports); got < len(ports)-2 {
		t.Fatalf("upstream saw %d distinct source ports over %d queries, want at least %d: %v", got, len(ports), len(ports)-2, ports)
	}
	for _, got := range nets {
		if got != network {
			t.Fatalf("upstream saw a %s query for a %s client", got, network)
		}
	}
	// The upstream ID is random, not the client's: the
	// client's is fixed per query by dns.Client only by chance.
	if distinct(idsToInts(ids)) < n/2 {
		t.Errorf("upstream message IDs are not random: %v", ids)
	}
}

// loopbackAvailable says whether a UDP socket can bind ip (::1 is missing
// where IPv6 is disabled).
func loopbackAvailable(ip string) bool {
	pc, err := net.ListenPacket("udp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return false
	}
	pc.Close()
	return true
}

func idsToInts(ids []uint16) []int {
	out := make([]int, len(ids))
	for i, id := range ids {
		out[i] = int(id)
	}
	return out
}

func TestFailover(t *testing.T) {
	for path, portable := range udpPaths {
		t.Run(path, func(t *testing.T) {
			t.Run("first upstream silent", func(t *testing.T) {
				dead := startBlackhole(t, "127.0.0.2")
				live := startUpstream(t, "127.0.0.3", nil)
				p := startProxy(t, Config{
					Upstreams: []netip.AddrPort{dead.addr, live.addr},
					Timeout:   200 * time.Millisecond, Deadline: 2 * time.Second,
				}, portable)
				for i := range 3 {
					r := exchange(t, "udp", p.addr, question("failover.upstream.test", dns.TypeA))
					if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
						t.Fatalf("query %d: rcode %s answers %d, want the live upstream's answer", i, dns.RcodeToString[r.Rcode], len(r.Answer))
					}
				}
				// After the first failover the live upstream is tried first;
				// the silent one sees only the first query and hedges (sent
				// when the live one is slower than the hedge delay, as it
				// can be on a loaded machine).
				hedged := p.counter(t, "netguard_dnsproxy_hedged_attempts_total")
				if got := len(dead.seen()); got < 1 || float64(got) > 1+hedged {
					t.Errorf("silent upstream got %d queries, want 1 plus at most the %v hedged attempts", got, hedged)
				}
				// The first query's attempt timed out; hedges to the silent
				// one end with the answer, or time out later.
				if got := p.counter(t, "netguard_dnsproxy_upstream_errors_total", "upstream", dead.addr.String(), "reason", "timeout"); got < 1 || got > float64(len(dead.seen())) {
					t.Errorf("%v timeouts of the silent upstream, want 1 to %d", got, len(dead.seen()))
				}
			})
			t.Run("first upstream refuses", func(t *testing.T) {
				closed := closedPort(t, "127.0.0.2")
				live := startUpstream(t, "127.0.0.3", nil)
				p := startProxy(t, Config{
					Upstreams: []netip.AddrPort{closed, live.addr},
					// A timeout longer than the test may wait: only the
					// ICMP error can move the query on in time.
					Timeout: time.Minute, Deadline: time.Minute,
				}, portable)
				r := exchange(t, "udp", p.addr, question("refused.upstream.test", dns.TypeA))
				if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
					t.Fatalf("rcode %s answers %d, want the live upstream's answer", dns.RcodeToString[r.Rcode], len(r.Answer))
				}
				p.wantCounter(t, 1, "netguard_dnsproxy_upstream_errors_total", "upstream", closed.String(), "reason", "refused")
			})
		})
	}
}

// TestPerAttemptTimeout: with one silent upstream, each attempt times out
// after Timeout and the next leaves from a new source port, until the overall
// Deadline, when the client gets SERVFAIL.
func TestPerAttemptTimeout(t *testing.T) {
	for path, portable := range udpPaths {
		t.Run(path, func(t *testing.T) {
			dead := startBlackhole(t, "127.0.0.2")
			p := startProxy(t, Config{
				Upstreams: []netip.AddrPort{dead.addr},
				Timeout:   100 * time.Millisecond, Deadline: time.Second,
			}, portable)
			r := exchange(t, "udp", p.addr, question("timeout.upstream.test", dns.TypeA))
			if r.Rcode != dns.RcodeServerFailure {
				t.Fatalf("rcode %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
			}
			ports := dead.seen()
			// 10 attempts fit the deadline (and are the most allowed); a
			// loaded machine may start fewer, but a single attempt would
			// mean no per-attempt timeout.
			if len(ports) < 2 || len(ports) > 10 {
				t.Fatalf("silent upstream got %d attempts, want 2 to 10", len(ports))
			}
			if distinct(ports) != len(ports) {
				t.Errorf("retries reused a source port: %v", ports)
			}
			p.wantCounter(t, float64(len(ports)), "netguard_dnsproxy_upstream_errors_total", "reason", "timeout")
		})
	}
}

// TestAllUpstreamsRefusingAnswersServfailWithoutSpinning: a refused
// attempt ends at once, but the next one waits for the hedge delay, and a
// query makes at most MaxParallelAttempts × ⌈Deadline/Timeout⌉ attempts.
func TestAllUpstreamsRefusingAnswersServfailWithoutSpinning(t *testing.T) {
	for path, portable := range udpPaths {
		t.Run(path, func(t *testing.T) {
			closed := closedPort(t, "127.0.0.2")
			p := startProxy(t, Config{
				Upstreams: []netip.AddrPort{closed}, Timeout: time.Second, Deadline: 3 * time.Second,
				MaxParallelAttempts: 1, HedgeDelayMin: 100 * time.Millisecond, HedgeDelayMax: 100 * time.Millisecond,
			}, portable)
			r := exchange(t, "udp", p.addr, question("refused.upstream.test", dns.TypeA))
			if r.Rcode != dns.RcodeServerFailure {
				t.Fatalf("rcode %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
			}
			p.wantCounter(t, 3, "netguard_dnsproxy_upstream_errors_total", "reason", "refused")
			p.wantCounter(t, 1, "netguard_dnsproxy_servfail_total", "cause", "attempt_limit")
			p.wantCounter(t, 0, "netguard_dnsproxy_hedged_attempts_total")
		})
	}
}

// truncatingUpstream answers over UDP with TC set and no records, and
// over TCP with n A records.
func truncatingUpstream(n int) dns.HandlerFunc {
	return func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		if opt := r.IsEdns0(); opt != nil {
			m.SetEdns0(opt.UDPSize(), false)
		}
		if w.RemoteAddr().Network() == "udp" {
			m.Truncated = true
			_ = w.WriteMsg(m)
			return
		}
		for i := range n {
			m.Answer = append(m.Answer, &dns.A{Hdr: rrHeader(r.Question[0].Name, dns.TypeA, 60), A: net.IPv4(198, 51, 100, byte(i+1))})
		}
		_ = w.WriteMsg(m)
	}
}

func TestTruncatedReplyIsRetriedOverTCP(t *testing.T) {
	tests := map[string]struct {
		records   int
		network   string
		edns      uint16 // 0: no EDNS0
		wantTC    bool
		wantFewer bool // fewer records than the upstream sent
	}{
		"fits 512 bytes":                    {records: 3, network: "udp"},
		"too large for 512, no EDNS0":       {records: 60, network: "udp", wantTC: true, wantFewer: true},
		"fits the client's EDNS0 size":      {records: 60, network: "udp", edns: 4096},
		"too large for the EDNS0 size 1232": {records: 100, network: "udp", edns: 1232, wantTC: true, wantFewer: true},
		"TCP client gets all":               {records: 100, network: "tcp"},
	}
	for path, portable := range udpPaths {
		t.Run(path, func(t *testing.T) {
			for name, tc := range tests {
				t.Run(name, func(t *testing.T) {
					up := startUpstream(t, "127.0.0.2", truncatingUpstream(tc.records))
					// One attempt at a time, so the upstream sees exactly one
					// UDP query and its TCP retry.
					p := startProxy(t, Config{Upstreams: []netip.AddrPort{up.addr}, MaxParallelAttempts: 1}, portable)
					q := question("big.upstream.test", dns.TypeA)
					if tc.edns > 0 {
						q.SetEdns0(tc.edns, false)
					}
					var r *dns.Msg
					size := 512
					if tc.edns > 0 {
						size = int(tc.edns)
					}
					if tc.network == "udp" {
						raw := rawExchange(t, p.addr, pack(t, q), 5*time.Second)
						if len(raw) > size {
							t.Errorf("reply of %d bytes exceeds the client's %d", len(raw), size)
						}
						r = new(dns.Msg)
						if err := r.Unpack(raw); err != nil {
							t.Fatalf("reply does not parse: %v", err)
						}
					} else {
						r = exchange(t, tc.network, p.addr, q)
					}
					if r.Truncated != tc.wantTC {
						t.Errorf("TC = %v, want %v", r.Truncated, tc.wantTC)
					}
					if got := len(r.Answer); (got < tc.records) != tc.wantFewer || got == 0 {
						t.Errorf("%d of %d records relayed (want fewer: %v)", got, tc.records, tc.wantFewer)
					}
					_, _, _, nets := up.seen()
					if tc.network == "udp" && (len(nets) != 2 || nets[0] != "udp" || nets[1] != "tcp") {
						t.Errorf("upstream saw %v, want a UDP query then its TCP retry", nets)
					}
				})
			}
		})
	}
}

func TestEDNS0IsPassedThrough(t *testing.T) {
	for path, portable := range udpPaths {
		t.Run(path, func(t *testing.T) {
			up := startUpstream(t, "127.0.0.2", nil)
			p := startProxy(t, Config{Upstreams: []netip.AddrPort{up.addr}}, portable)
			q := question("edns.upstream.test", dns.TypeA)
			q.SetEdns0(1232, true)
			opt := q.IsEdns0()
			opt.Option = append(opt.Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: net.ParseIP("192.0.2.0").To4()})
			r := exchange(t, "udp", p.addr, q)
			if r.IsEdns0() == nil {
				t.Fatal("reply lost its OPT record")
			}
			_, _, msgs, _ := up.seen()
			got := msgs[0].IsEdns0()
			if got == nil || got.UDPSize() != 1232 || !got.Do() || len(got.Option) != 1 || got.Option[0].String() != opt.Option[0].String() {
				t.Fatalf("upstream saw OPT %v, want the client's %v", got, opt)
			}
		})
	}
}

// TestInFlightBound: past MaxInFlight queries a new one is answered
// SERVFAIL at once, and the queries in flight still complete.
func TestInFlightBound(t *testing.T) {
	for path, portable := range udpPaths {
		t.Run(path, func(t *testing.T) {
			arrived := make(chan struct{}, 8)
			release := make(chan struct{})
			up := startUpstream(t, "127.0.0.2", func(w dns.ResponseWriter, r *dns.Msg) {
				arrived <- struct{}{}
				<-release
				answerAddress(w, r)
			})
			// One attempt at a time: held queries are not hedged.
			p := startProxy(t, Config{Upstreams: []netip.AddrPort{up.addr}, MaxInFlight: 2, Timeout: 10 * time.Second, Deadline: 10 * time.Second, MaxParallelAttempts: 1}, portable)
			var wg sync.WaitGroup
			results := make(chan *dns.Msg, 2)
			for i := range 2 {
				wg.Go(func() {
					// Distinct names: identical queries in flight share attempts.
					r, err := tryExchange("udp", p.addr, question(fmt.Sprintf("slow%d.upstream.test", i), dns.TypeA))
					if err != nil {
						t.Errorf("held query: %v", err)
						return
					}
					results <- r
				})
			}
			for range 2 {
				select {
				case <-arrived:
				case <-time.After(10 * time.Second):
					t.Fatal("held queries did not reach the upstream")
				}
			}
			for _, network := range []string{"udp", "tcp"} {
				r := exchange(t, network, p.addr, question("over.upstream.test", dns.TypeA))
				if r.Rcode != dns.RcodeServerFailure {
					t.Errorf("%s query over the bound: rcode %s, want SERVFAIL", network, dns.RcodeToString[r.Rcode])
				}
			}
			if got := p.counter(t, "netguard_dnsproxy_in_flight_queries"); got != 2 {
				t.Errorf("in-flight gauge = %v, want 2", got)
			}
			close(release)
			wg.Wait()
			close(results)
			for r := range results {
				if r.Rcode != dns.RcodeSuccess {
					t.Errorf("held query: rcode %s, want NOERROR", dns.RcodeToString[r.Rcode])
				}
			}
			if got := up.count(); got != 2 {
				t.Errorf("upstream got %d queries, want 2 (the rejected ones are never forwarded)", got)
			}
		})
	}
}

func TestMalformedInput(t *testing.T) {
	valid := pack(t, question("ok.upstream.test", dns.TypeA))
	withQR := append([]byte(nil), valid...)
	withQR[2] |= 0x80
	status := append([]byte(nil), valid...)
	status[2] |= 2 << 3 // opcode STATUS
	noQuestion := append([]byte(nil), valid[:12]...)
	noQuestion[5] = 0
	twoQuestions := append([]byte(nil), valid...)
	twoQuestions[5] = 2
	cutName := append([]byte(nil), valid[:16]...)
	pointer := append(append([]byte(nil), valid[:12]...), 0xc0, 12, 0, 1, 0, 1)
	trailing := append(append([]byte(nil), valid...), 0xde, 0xad)
	tests := map[string]struct {
		msg       []byte
		wantRcode int // -1: dropped
	}{
		"empty":                {msg: []byte{}, wantRcode: -1},
		"shorter than header":  {msg: []byte{1, 2, 3}, wantRcode: -1},
		"a response":           {msg: withQR, wantRcode: -1},
		"opcode STATUS":        {msg: status, wantRcode: dns.RcodeNotImplemented},
		"no question":          {msg: noQuestion, wantRcode: dns.RcodeFormatError},
		"two questions":        {msg: twoQuestions, wantRcode: dns.RcodeFormatError},
		"name cut short":       {msg: cutName, wantRcode: dns.RcodeFormatError},
		"compressed question":  {msg: pointer, wantRcode: dns.RcodeFormatError},
		"trailing garbage":     {msg: trailing, wantRcode: dns.RcodeFormatError},
		"label over 63 (0x40)": {msg: append(append([]byte(nil), valid[:12]...), 0x40, 'a', 0, 0, 1, 0, 1), wantRcode: dns.RcodeFormatError},
		"oversized datagram":   {msg: append(append([]byte(nil), valid...), make([]byte, 5000)...), wantRcode: dns.RcodeFormatError},
	}
	for path, portable := range udpPaths {
		t.Run(path, func(t *testing.T) {
			up := startUpstream(t, "127.0.0.2", nil)
			p := startProxy(t, Config{Upstreams: []netip.AddrPort{up.addr}}, portable)
			for name, tc := range tests {
				t.Run(name, func(t *testing.T) {
					wait := 5 * time.Second
					if tc.wantRcode < 0 {
						wait = 300 * time.Millisecond
					}
					reply := rawExchange(t, p.addr, tc.msg, wait)
					if tc.wantRcode < 0 {
						if reply != nil {
							t.Fatalf("got a %d-byte reply, want the packet dropped", len(reply))
						}
						return
					}
					var r dns.Msg
					if err := r.Unpack(reply); err != nil {
						t.Fatalf("reply does not parse: %v", err)
					}
					if r.Rcode != tc.wantRcode || !r.Response || r.Id != binary.BigEndian.Uint16(tc.msg) {
						t.Fatalf("reply rcode %s response %v id %d, want %s to id %d", dns.RcodeToString[r.Rcode], r.Response, r.Id, dns.RcodeToString[tc.wantRcode], binary.BigEndian.Uint16(tc.msg))
					}
				})
			}
			// Garbage over TCP closes that connection only.
			c, err := net.Dial("tcp", p.addr)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = c.Write([]byte{0, 3, 1, 2, 3})
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if n, err := c.Read(make([]byte, 16)); err == nil || os.IsTimeout(err) {
				t.Errorf("TCP garbage: read %d bytes, err %v; want the connection closed", n, err)
			}
			c.Close()
			if up.count() != 0 {
				t.Errorf("malformed queries reached the upstream")
			}
			for _, network := range []string{"udp", "tcp"} {
				if r := exchange(t, network, p.addr, question("after.upstream.test", dns.TypeA)); r.Rcode != dns.RcodeSuccess {
					t.Fatalf("valid %s query after garbage: rcode %s", network, dns.RcodeToString[r.Rcode])
				}
			}
			p.wantCounter(t, 3, "netguard_dnsproxy_dropped_queries_total")
		})
	}
}

func TestReplyThatDoesNotMatchIsIgnored(t *testing.T) {
	for path, portable := range udpPaths {
		t.Run(path, func(t *testing.T) {
			up := startUpstream(t, "127.0.0.2", func(w dns.ResponseWriter, r *dns.Msg) {
				bad := new(dns.Msg)
				bad.SetReply(r)
				bad.Question[0].Name = "other.upstream.test."
				_ = w.WriteMsg(bad) // a different question: must be ignored
				wrongID := new(dns.Msg)
				wrongID.SetReply(r)
				wrongID.Id++
				_ = w.WriteMsg(wrongID)
				answerAddress(w, r)
			})
			// One attempt at a time, so the count of bad replies is exact.
			p := startProxy(t, Config{Upstreams: []netip.AddrPort{up.addr}, MaxParallelAttempts: 1}, portable)
			r := exchange(t, "udp", p.addr, question("match.upstream.test", dns.TypeA))
			if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
				t.Fatalf("rcode %s answers %v, want the matching reply", dns.RcodeToString[r.Rcode], r.Answer)
			}
			p.wantCounter(t, 2, "netguard_dnsproxy_upstream_errors_total", "reason", "bad_reply")
		})
	}
}

// TestDuplicateAnswerIsNotABadReply: an upstream (or the network) may
// deliver an answer twice. The poll loop reuses an answered socket for a
// later attempt (with a new source port), so the duplicate can be waiting
// on it; it is neither taken for the later query's answer nor counted as
// a bad reply.
func TestDuplicateAnswerIsNotABadReply(t *testing.T) {
	const n = 32
	for path, portable := range udpPaths {
		for _, warm := range []time.Duration{-1, time.Minute} {
			t.Run(fmt.Sprintf("%s/warm port age %s", path, warm), func(t *testing.T) {
				up := startUpstream(t, "127.0.0.2", func(w dns.ResponseWriter, r *dns.Msg) {
					answerAddress(w, r)
					answerAddress(w, r)
				})
				p := startProxy(t, Config{Upstreams: []netip.AddrPort{up.addr}, MaxParallelAttempts: 1, WarmPortAge: warm}, portable)
				c := &dns.Client{Net: "udp", Timeout: 5 * time.Second}
				conn, err := c.Dial(p.addr)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				for i := range n {
					name := fmt.Sprintf("dup%d.upstream.test", i)
					r, _, err := c.ExchangeWithConn(question(name, dns.TypeA), conn)
					if err != nil {
						t.Fatalf("query %d: %v", i, err)
					}
					if len(r.Answer) != 1 || r.Answer[0].Header().Name != dns.Fqdn(name) {
						t.Fatalf("query %d: answer %v, want one for %s", i, r.Answer, name)
					}
				}
				p.wantCounter(t, 0, "netguard_dnsproxy_upstream_errors_total", "reason", "bad_reply")
				ports, _, _, _ := up.seen()
				switch {
				case warm < 0 && distinct(ports) < n-2:
					t.Fatalf("upstream saw %d distinct source ports over %d queries: %v", distinct(ports), n, ports)
				case warm > 0 && !portable && distinct(ports) > 2:
					// One warm socket per loop carries every query.
					t.Fatalf("upstream saw %d distinct source ports over %d queries, want the warm ones reused: %v", distinct(ports), n, ports)
				}
			})
		}
	}
}

// TestStopClosesEverySocket: the poll loop keeps answered sockets for
// later attempts; none of them, nor any other, outlives the proxy.
func TestStopClosesEverySocket(t *testing.T) {
	for path, portable := range udpPaths {
		t.Run(path, func(t *testing.T) {
			up := startUpstream(t, "127.0.0.2", nil)
			before := openFiles(t)
			t.Run("queries", func(t *testing.T) {
				p := startProxy(t, Config{Upstreams: []netip.AddrPort{up.addr}}, portable)
				var wg sync.WaitGroup
				for i := range 8 {
					wg.Go(func() {
						for j := range 16 {
							if _, err := tryExchange("udp", p.addr, question(fmt.Sprintf("fd%d-%d.upstream.test", i, j), dns.TypeA)); err != nil {
								t.Errorf("query %d-%d: %v", i, j, err)
							}
						}
					})
				}
				wg.Wait()
			}) // the proxy stops as this subtest ends
			// Files opened meanwhile and still open, by what they are (a
			// socket's inode): a file of an earlier test that closes
			// meanwhile, or a reused descriptor number, does not count.
			var outlived []string
			for f := range openFiles(t) {
				if !before[f] {
					outlived = append(outlived, f)
				}
			}
			if len(outlived) > 0 {
				t.Fatalf("open after the proxy stopped, not before: %v", outlived)
			}
		})
	}
}

// openFiles is the set of what the process's file descriptors refer to
// ("socket:[inode]", a path).
func openFiles(t *testing.T) map[string]bool {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	files := map[string]bool{}
	for _, e := range entries {
		// The descriptor ReadDir itself had open is gone by now.
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil {
			files[target] = true
		}
	}
	return files
}

func TestCache(t *testing.T) {
	nxdomain := func(withSOA bool) dns.HandlerFunc {
		return func(w dns.ResponseWriter, r *dns.Msg) {
			m := new(dns.Msg)
			m.SetRcode(r, dns.RcodeNameError)
			if withSOA {
				m.Ns = append(m.Ns, &dns.SOA{Hdr: rrHeader("upstream.test.", dns.TypeSOA, 300), Ns: "ns.upstream.test.", Mbox: "admin.upstream.test.", Serial: 1, Refresh: 60, Retry: 60, Expire: 60, Minttl: 30})
			}
			_ = w.WriteMsg(m)
		}
	}
	tests := map[string]struct {
		cacheSize   int
		handler     dns.HandlerFunc
		wantQueries int // at the upstream, for 3 identical client queries
		attempts    int // upstream queries per client query not cached (0: 1)
	}{
		"off by default":           {handler: answerAddress, wantQueries: 3},
		"positive answer cached":   {cacheSize: 8, handler: answerAddress, wantQueries: 1},
		"NXDOMAIN with SOA cached": {cacheSize: 8, handler: nxdomain(true), wantQueries: 1},
		"NXDOMAIN without SOA not": {cacheSize: 8, handler: nxdomain(false), wantQueries: 3},
		"SERVFAIL never cached": {cacheSize: 8, handler: func(w dns.ResponseWriter, r *dns.Msg) {
			m := new(dns.Msg)
			m.SetRcode(r, dns.RcodeServerFailure)
			_ = w.WriteMsg(m)
			// Each client query asks twice (SERVFAIL ends an attempt, not
			// the query; one open attempt × ⌈4s/2s⌉ = 2 attempts).
		}, wantQueries: 6, attempts: 2},
		"TTL 0 answer never cached": {cacheSize: 8, handler: func(w dns.ResponseWriter, r *dns.Msg) {
			m := new(dns.Msg)
			m.SetReply(r)
			m.Answer = append(m.Answer, &dns.A{Hdr: rrHeader(r.Question[0].Name, dns.TypeA, 0), A: net.IPv4(198, 51, 100, 9)})
			_ = w.WriteMsg(m)
		}, wantQueries: 3},
	}
	for path, portable := range udpPaths {
		t.Run(path, func(t *testing.T) {
			for name, tc := range tests {
				t.Run(name, func(t *testing.T) {
					up := startUpstream(t, "127.0.0.2", tc.handler)
					// One attempt at a time, so the upstream's count is exact.
					p := startProxy(t, Config{Upstreams: []netip.AddrPort{up.addr}, CacheSize: tc.cacheSize, MaxParallelAttempts: 1}, portable)
					var first *dns.Msg
					for i := range 3 {
						q := question("cached.upstream.test", dns.TypeA)
						r := exchange(t, "udp", p.addr, q)
						if r.Id != q.Id {
							t.Fatalf("reply %d has id %d, want %d", i, r.Id, q.Id)
						}
						if first == nil {
							first = r
						} else if r.Rcode != first.Rcode || len(r.Answer) != len(first.Answer) || len(r.Ns) != len(first.Ns) {
							t.Fatalf("reply %d differs from the first: %v vs %v", i, r, first)
						}
					}
					if got := up.count(); got != tc.wantQueries {
						t.Fatalf("upstream got %d queries, want %d", got, tc.wantQueries)
					}
					// A different question is not answered from the cache.
					if tc.cacheSize > 0 {
						exchange(t, "udp", p.addr, question("cached.upstream.test", dns.TypeAAAA))
						want := tc.wantQueries + max(1, tc.attempts)
						if got := up.count(); got != want {
							t.Fatalf("AAAA after A: upstream got %d queries, want %d", got, want)
						}
					}
				})
			}
		})
	}
}

func TestShutdownLetsInFlightQueriesFinish(t *testing.T) {
	for path, portable := range udpPaths {
		t.Run(path, func(t *testing.T) {
			arrived := make(chan struct{}, 1)
			up := startUpstream(t, "127.0.0.2", func(w dns.ResponseWriter, r *dns.Msg) {
				arrived <- struct{}{}
				time.Sleep(200 * time.Millisecond)
				answerAddress(w, r)
			})
			p, err := New(Config{Listen: "127.0.0.1:0", Upstreams: []netip.AddrPort{up.addr}, Listeners: 2, MaxParallelAttempts: 1}, testLogger(t), nil)
			if err != nil {
				t.Fatal(err)
			}
			p.portableUDP = portable
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- p.Run(ctx) }()
			<-p.started
			if !p.Ready() {
				t.Fatal("not ready after start")
			}
			reply := make(chan *dns.Msg, 1)
			go func() {
				r, err := tryExchange("udp", p.addr.String(), question("inflight.upstream.test", dns.TypeA))
				if err != nil {
					t.Errorf("in-flight query: %v", err)
				}
				reply <- r
			}()
			<-arrived
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not return")
			}
			if p.Ready() {
				t.Error("still ready after shutdown")
			}
			if r := <-reply; r == nil || r.Rcode != dns.RcodeSuccess {
				t.Fatalf("in-flight query got %v, want its answer", r)
			}
			if _, err := tryExchange("udp", p.addr.String(), question("after.upstream.test", dns.TypeA)); err == nil {
				t.Error("a query after shutdown was answered")
			}
		})
	}
}

func TestMetricsAndHealthEndpoints(t *testing.T) {
	up := startUpstream(t, "127.0.0.2", nil)
	p := startProxy(t, Config{Upstreams: []netip.AddrPort{up.addr}, MetricsAddr: "127.0.0.1:0"}, false)
	exchange(t, "udp", p.addr, question("metrics.upstream.test", dns.TypeA))
	tests := map[string]struct {
		path string
		want []string
	}{
		"healthz": {path: "/healthz", want: []string{"ok"}},
		"readyz":  {path: "/readyz", want: []string{"ok"}},
		"metrics": {path: "/metrics", want: []string{
			`netguard_dnsproxy_queries_total{proto="udp"} 1`,
			`netguard_dnsproxy_responses_total{rcode="NOERROR"} 1`,
			`netguard_dnsproxy_upstream_errors_total{reason="timeout",upstream="` + up.addr.String() + `"} 0`,
			`netguard_dnsproxy_request_duration_seconds_count 1`,
			`netguard_dnsproxy_upstream_attempts_per_query_count 1`,
			`netguard_dnsproxy_hedged_attempts_total 0`,
			`netguard_dnsproxy_attempts_held_total{reason="budget"} 0`,
			`netguard_dnsproxy_answered_after_first_attempt_total 0`,
			`netguard_dnsproxy_servfail_total{cause="deadline"} 0`,
			`netguard_dnsproxy_hedge_delay_seconds `,
		}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var missing []string
			// Bounded retries: a reply is counted just after it is sent.
			for range 50 {
				resp, err := http.Get("http://" + p.metricsAddr + tc.path)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("status %d", resp.StatusCode)
				}
				missing = missing[:0]
				for _, w := range tc.want {
					if !strings.Contains(string(body), w) {
						missing = append(missing, w)
					}
				}
				if len(missing) == 0 {
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
			t.Errorf("%s lacks %q", tc.path, missing)
		})
	}
}
