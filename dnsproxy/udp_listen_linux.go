//go:build linux

package dnsproxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// listenUDP binds cfg.Listeners UDP sockets to the listen address (see
// shareListen). A port of 0 is resolved by the first bind and reused.
func (p *Proxy) listenUDP(ctx context.Context) ([]udpListener, netip.AddrPort, error) {
	if p.portableUDP {
		return p.listenUDPConns(ctx)
	}
	host, port, err := net.SplitHostPort(p.cfg.Listen)
	if err != nil {
		return nil, netip.AddrPort{}, fmt.Errorf("listening on udp %s: %w", p.cfg.Listen, err)
	}
	addr := netip.IPv4Unspecified()
	if host != "" {
		if addr, err = netip.ParseAddr(host); err != nil {
			return nil, netip.AddrPort{}, fmt.Errorf("listening on udp %s: %w", p.cfg.Listen, err)
		}
	}
	pn, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil, netip.AddrPort{}, fmt.Errorf("listening on udp %s: bad port: %w", p.cfg.Listen, err)
	}
	bound := netip.AddrPortFrom(addr, uint16(pn))
	reuse := p.probeSocketReuse()
	var ls []udpListener
	fail := func(err error) ([]udpListener, netip.AddrPort, error) {
		for _, l := range ls {
			l.close()
		}
		return nil, netip.AddrPort{}, fmt.Errorf("listening on udp %s: %w", bound, err)
	}
	for i := range p.cfg.Listeners {
		fd, err := bindUDP(bound, p.cfg.Listeners, i == 0)
		if err != nil {
			return fail(err)
		}
		l, err := newUDPLoop(p, fd, reuse)
		if err != nil {
			_ = unix.Close(fd)
			return fail(err)
		}
		ls = append(ls, l)
		if bound.Port() == 0 {
			port, err := localPort(fd)
			if err != nil {
				return fail(err)
			}
			bound = netip.AddrPortFrom(bound.Addr(), uint16(port))
		}
	}
	return ls, bound, nil
}

// bindUDP returns a non-blocking UDP socket bound to addr, one of n
// listeners on it; first says it is the first (see shareListen).
func bindUDP(addr netip.AddrPort, n int, first bool) (int, error) {
	family, sa, salen := rawSockaddr(addr)
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := reusePort(fd, n); err != nil {
		_ = unix.Close(fd)
		return -1, err
	}
	if _, _, e := syscall.RawSyscall(unix.SYS_BIND, uintptr(fd), uintptr(unsafe.Pointer(&sa)), uintptr(salen)); e != 0 {
		_ = unix.Close(fd)
		return -1, e
	}
	if first {
		if err := steerToFirst(fd, n); err != nil {
			_ = unix.Close(fd)
			return -1, err
		}
	}
	return fd, nil
}

// The pod's DNS is the forwarder's alone. One listener socket takes the
// address exclusively: no other socket of any user can bind it. Several
// listeners need SO_REUSEPORT, and Linux lets any later socket of the same
// user (65532 is the usual non-root UID of distroless images, so another
// container of the pod may have it) join such a group and receive a share
// of its packets. So the group gets a classic BPF program that picks the
// socket by CPU among its first n, the forwarder's own: a socket that
// joins later never receives a query.

// reusePort sets SO_REUSEPORT on a socket of n > 1 listeners.
func reusePort(fd, n int) error {
	if n == 1 {
		return nil
	}
	return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
}

// Classic BPF's ancillary load of the current CPU (linux/filter.h).
const (
	skfAdOff = 0xfffff000 // SKF_AD_OFF, -0x1000
	skfAdCPU = 36         // SKF_AD_CPU
)

// steerToFirst attaches, for n > 1 listeners, the program that sends each
// packet to socket (CPU mod n) of fd's SO_REUSEPORT group.
func steerToFirst(fd, n int) error {
	if n == 1 {
		return nil
	}
	prog := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: skfAdOff + skfAdCPU},
		{Code: unix.BPF_ALU | unix.BPF_MOD | unix.BPF_K, K: uint32(n)},
		{Code: unix.BPF_RET | unix.BPF_A},
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_CBPF, &fprog); err != nil {
		return fmt.Errorf("steering the %d listeners' packets: %w", n, err)
	}
	return nil
}

// listenUDPConns binds net.UDPConns for the portable goroutine-per-query
// path, shared as the loops share theirs.
func (p *Proxy) listenUDPConns(ctx context.Context) ([]udpListener, netip.AddrPort, error) {
	n := p.cfg.Listeners
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var opErr error
		if err := c.Control(func(fd uintptr) { opErr = reusePort(int(fd), n) }); err != nil {
			return err
		}
		return opErr
	}}
	addr := p.cfg.Listen
	var ls []udpListener
	var bound netip.AddrPort
	fail := func(err error) ([]udpListener, netip.AddrPort, error) {
		for _, l := range ls {
			l.close()
		}
		return nil, netip.AddrPort{}, fmt.Errorf("listening on udp %s: %w", addr, err)
	}
	for i := range n {
		pc, err := lc.ListenPacket(ctx, "udp", addr)
		if err != nil {
			return fail(err)
		}
		c := pc.(*net.UDPConn)
		if i == 0 {
			rc, err := c.SyscallConn()
			if err != nil {
				c.Close()
				return fail(err)
			}
			var opErr error
			if err := rc.Control(func(fd uintptr) { opErr = steerToFirst(int(fd), n) }); err != nil || opErr != nil {
				c.Close()
				return fail(errors.Join(err, opErr))
			}
		}
		ls = append(ls, &connListener{p: p, conn: c})
		bound = c.LocalAddr().(*net.UDPAddr).AddrPort()
		addr = bound.String()
	}
	return ls, bound, nil
}
