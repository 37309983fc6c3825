//go:build linux

package dnsproxy

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestSpareSocketLeavesFromANewPort: the poll loop's reused socket, once
// disconnected, leaves from a new ephemeral port on its next connect, for
// IPv4 and IPv6 upstreams alike, and is the same socket (no new one).
func TestSpareSocketLeavesFromANewPort(t *testing.T) {
	const rounds = 16
	for _, ip := range []string{"127.0.0.2", "::1"} {
		t.Run(ip, func(t *testing.T) {
			if !loopbackAvailable(ip) {
				t.Skipf("no %s on this machine", ip)
			}
			pc, err := net.ListenPacket("udp", net.JoinHostPort(ip, "0"))
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			var up rawUpstream
			up.family, up.sa, up.salen = rawSockaddr(pc.LocalAddr().(*net.UDPAddr).AddrPort())

			var s spareSockets
			defer s.close()
			msg := []byte("query")
			fds := map[int]bool{}
			ports := make([]int, 0, rounds)
			for i := range rounds {
				fd, stale, e := s.dial(&up, msg)
				if e != 0 {
					t.Fatalf("round %d: %v", i, e)
				}
				if (i == 0) != (stale == 0) {
					t.Fatalf("round %d: stale %d: a reused socket carries the last ID, a new one none", i, stale)
				}
				fds[fd] = true
				buf := make([]byte, 64)
				_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
				_, from, err := pc.ReadFrom(buf)
				if err != nil {
					t.Fatalf("round %d: upstream: %v", i, err)
				}
				ports = append(ports, int(netip.MustParseAddrPort(from.String()).Port()))
				s.put(up.family, fd, uint16(i))
			}
			if len(fds) != 1 {
				t.Fatalf("%d sockets used over %d sequential attempts, want 1 reused", len(fds), rounds)
			}
			// Ports are random, so two in a row may repeat by chance.
			if distinct(ports) < rounds-1 {
				t.Fatalf("a reused socket kept its port: %v", ports)
			}
		})
	}
}
