//go:build linux

package dnsproxy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// TestSpareSocketLeavesFromANewPort: the poll loop's reused socket, once
// disconnected, leaves from a new ephemeral port on its next connect, for
// IPv4 and IPv6 upstreams alike, and is the same socket (no new one).
// Where reuse is off (a stack that keeps the port), every attempt has a
// socket of its own.
func TestSpareSocketLeavesFromANewPort(t *testing.T) {
	const rounds = 16
	for _, ip := range []string{"127.0.0.2", "::1"} {
		for _, reuse := range []bool{true, false} {
			name := ip + "/reuse"
			if !reuse {
				name = ip + "/no reuse"
			}
			t.Run(name, func(t *testing.T) {
				if !loopbackAvailable(ip) {
					t.Skipf("no %s on this machine", ip)
				}
				pc, err := net.ListenPacket("udp", net.JoinHostPort(ip, "0"))
				if err != nil {
					t.Fatal(err)
				}
				defer pc.Close()
				up := newRawUpstream(pc.LocalAddr().(*net.UDPAddr).AddrPort())
				if !disconnectReleasesPort(&up) {
					t.Fatal("this kernel keeps a disconnected UDP socket's port; Linux releases it")
				}

				var s spareSockets
				s.reuse[familyIndex(up.family)] = reuse
				defer s.close()
				msg := []byte("query")
				sockets := map[uint64]bool{} // by inode: fd numbers are reused
				ports := make([]int, 0, rounds)
				for i := range rounds {
					fd, stale, e := s.dial(&up, msg)
					if e != 0 {
						t.Fatalf("round %d: %v", i, e)
					}
					if want := reuse && i > 0; want != (stale != 0) {
						t.Fatalf("round %d: stale %d: a reused socket carries the last ID, a new one none", i, stale)
					}
					var st unix.Stat_t
					if err := unix.Fstat(fd, &st); err != nil {
						t.Fatal(err)
					}
					sockets[st.Ino] = true
					buf := make([]byte, 64)
					_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
					_, from, err := pc.ReadFrom(buf)
					if err != nil {
						t.Fatalf("round %d: upstream: %v", i, err)
					}
					ports = append(ports, int(netip.MustParseAddrPort(from.String()).Port()))
					s.put(up.family, fd, uint16(i))
				}
				if want := map[bool]int{true: 1, false: rounds}[reuse]; len(sockets) != want {
					t.Fatalf("%d sockets used over %d sequential attempts, want %d", len(sockets), rounds, want)
				}
				// Ports are random, so two in a row may repeat by chance.
				if distinct(ports) < rounds-1 {
					t.Fatalf("an attempt reused a port: %v", ports)
				}
			})
		}
	}
}

// TestNoOtherSocketTakesTheListenAddress: another socket of the same user
// (the sidecar's UID, shared by other containers of the pod) that asks for
// the listen address with SO_REUSEPORT is refused while one listener
// holds it; with several listeners, which must share the address, it
// binds but receives none of the queries.
func TestNoOtherSocketTakesTheListenAddress(t *testing.T) {
	const queries = 200
	intruder := func(addr string) (int, error) {
		ap := netip.MustParseAddrPort(addr)
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			t.Fatal(err)
		}
		if err := unix.Bind(fd, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}); err != nil {
			unix.Close(fd)
			return -1, err
		}
		return fd, nil
	}
	for path, portable := range udpPaths {
		t.Run(path+"/one listener", func(t *testing.T) {
			up := startUpstream(t, "127.0.0.2", nil)
			p := startProxy(t, Config{Upstreams: []netip.AddrPort{up.addr}, Listeners: 1}, portable)
			fd, err := intruder(p.addr)
			if err == nil {
				unix.Close(fd)
				t.Fatalf("a second socket bound %s with SO_REUSEPORT", p.addr)
			}
			if !errors.Is(err, unix.EADDRINUSE) {
				t.Fatalf("binding %s: %v, want EADDRINUSE", p.addr, err)
			}
		})
		t.Run(path+"/several listeners", func(t *testing.T) {
			up := startUpstream(t, "127.0.0.2", nil)
			p := startProxy(t, Config{Upstreams: []netip.AddrPort{up.addr}, Listeners: 2}, portable)
			fd, err := intruder(p.addr)
			if err != nil {
				t.Fatalf("binding %s with SO_REUSEPORT: %v (the listeners share it, so a socket of their user can join)", p.addr, err)
			}
			defer unix.Close(fd)
			var wg sync.WaitGroup
			var answered atomic.Int32
			for i := range queries {
				wg.Go(func() {
					// Each from its own socket: a new 4-tuple for the kernel's pick.
					r, err := tryExchange("udp", p.addr, question(fmt.Sprintf("q%d.upstream.test", i), dns.TypeA))
					if err == nil && r.Rcode == dns.RcodeSuccess {
						answered.Add(1)
					}
				})
			}
			wg.Wait()
			stolen := 0
			buf := make([]byte, 512)
			for {
				if _, _, err := unix.Recvfrom(fd, buf, unix.MSG_DONTWAIT); err != nil {
					break
				}
				stolen++
			}
			t.Logf("%d of %d queries answered by the forwarder, %d received by the other socket", answered.Load(), queries, stolen)
			if stolen != 0 || answered.Load() != queries {
				t.Errorf("the other socket received %d queries and the forwarder answered %d of %d; want 0 and all", stolen, answered.Load(), queries)
			}
		})
	}
}

// TestWarmPort: a query's first attempt leaves from a socket whose last
// attempt was answered, while that socket got its port less than
// WarmPortAge ago; later, from a new port. A warm socket whose attempt is
// lost is closed: the next query does not leave from its port again.
func TestWarmPort(t *testing.T) {
	// A hedge only for the query whose attempt is lost: an answer slower
	// than the hedge delay (a stall on a busy machine) would hedge too.
	const age, hedge = time.Second, time.Second
	var drop atomic.Bool
	up := startUpstream(t, "127.0.0.2", func(w dns.ResponseWriter, r *dns.Msg) {
		if !drop.CompareAndSwap(true, false) { // drop one query when asked
			answerAddress(w, r)
		}
	})
	p := startProxy(t, Config{Upstreams: []netip.AddrPort{up.addr}, Listeners: 1, WarmPortAge: age,
		HedgeDelayMin: hedge, HedgeDelayMax: hedge}, false)
	ask := func(name string) int {
		t.Helper()
		exchange(t, "udp", p.addr, question(name, dns.TypeA))
		ports, _, _, _ := up.seen()
		return ports[len(ports)-1]
	}
	first := ask("a.upstream.test")
	if got := ask("b.upstream.test"); got != first {
		t.Fatalf("second query from port %d, want the warm port %d", got, first)
	}
	time.Sleep(age + 200*time.Millisecond)
	fresh := ask("c.upstream.test")
	if fresh == first {
		t.Fatalf("query from port %d after the warm age, want a new port", fresh)
	}
	// The warm socket's next attempt is lost; the hedge answers from a new port.
	drop.Store(true)
	before := up.count()
	hedgedFrom := ask("d.upstream.test")
	ports, _, _, _ := up.seen()
	if up.count() != before+2 || ports[before] != fresh || hedgedFrom == fresh {
		t.Fatalf("ports %v after %d queries: want the lost attempt from the warm port %d and its hedge from a new one", ports, before, fresh)
	}
	if got := ask("e.upstream.test"); got == fresh {
		t.Fatalf("query from port %d, whose last attempt was lost", got)
	}
	p.wantCounter(t, 1, "netguard_dnsproxy_hedged_attempts_total")
}

// TestIdenticalQueriesShareAttempts: queries identical but for their
// message ID, in flight at once, share one set of upstream attempts, and
// each client gets the answer with its own ID. A query that differs in any
// other byte (the name's case, the DO bit) asks for itself.
func TestIdenticalQueriesShareAttempts(t *testing.T) {
	const clients = 20
	up := startUpstream(t, "127.0.0.2", func(w dns.ResponseWriter, r *dns.Msg) {
		time.Sleep(200 * time.Millisecond) // long enough for every client to ask
		answerAddress(w, r)
	})
	p := startProxy(t, Config{Upstreams: []netip.AddrPort{up.addr}, Listeners: 1,
		HedgeDelayMin: time.Second, HedgeDelayMax: time.Second}, false)
	var wg sync.WaitGroup
	ask := func(m *dns.Msg) {
		wg.Go(func() {
			r, err := tryExchange("udp", p.addr, m)
			if err != nil || r.Id != m.Id || len(r.Answer) != 1 || r.Question[0].Name != m.Question[0].Name {
				t.Errorf("query %d %s: %v, %v; want its answer with its ID and question", m.Id, m.Question[0].Name, r, err)
			}
		})
	}
	for range clients {
		ask(question("shared.upstream.test", dns.TypeA))
	}
	ask(question("SHARED.upstream.test", dns.TypeA))
	withDO := question("shared.upstream.test", dns.TypeA)
	withDO.SetEdns0(1232, true)
	ask(withDO)
	wg.Wait()
	if got := up.count(); got != 3 {
		t.Errorf("upstream got %d queries, want 3: one for the %d identical ones, one per different one", got, clients)
	}
	p.wantCounter(t, clients-1, "netguard_dnsproxy_coalesced_queries_total")
	// Once answered, the same question asks again.
	exchange(t, "udp", p.addr, question("shared.upstream.test", dns.TypeA))
	if got := up.count(); got != 4 {
		t.Errorf("upstream got %d queries after the flight landed, want 4", got)
	}
}

// TestIdenticalQueriesShareATCPRetry: identical queries whose shared
// answer is truncated all get the TCP answer, each with its own ID, from
// one UDP and one TCP upstream query.
func TestIdenticalQueriesShareATCPRetry(t *testing.T) {
	const clients = 10
	slow := truncatingUpstream(3)
	up := startUpstream(t, "127.0.0.2", func(w dns.ResponseWriter, r *dns.Msg) {
		time.Sleep(200 * time.Millisecond)
		slow(w, r)
	})
	p := startProxy(t, Config{Upstreams: []netip.AddrPort{up.addr}, Listeners: 1,
		HedgeDelayMin: time.Second, HedgeDelayMax: time.Second}, false)
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			m := question("big.upstream.test", dns.TypeA)
			r, err := tryExchange("udp", p.addr, m)
			if err != nil || r.Id != m.Id || len(r.Answer) != 3 {
				t.Errorf("query %d: %v, %v; want the 3 records of the TCP answer with its ID", m.Id, r, err)
			}
		})
	}
	wg.Wait()
	if _, _, _, nets := up.seen(); len(nets) != 2 || nets[0] != "udp" || nets[1] != "tcp" {
		t.Errorf("upstream saw %v, want one UDP query and one TCP query", nets)
	}
}
