//go:build linux

package dnsproxy

import (
	"net"
	"net/netip"
	"testing"
	"time"

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
