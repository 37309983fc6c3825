//go:build linux

package dnsproxy

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sockaddrBuf holds a struct sockaddr_in or sockaddr_in6.
type sockaddrBuf [unix.SizeofSockaddrInet6]byte

// rawSockaddr encodes addr as the kernel takes it.
func rawSockaddr(addr netip.AddrPort) (family int, sa sockaddrBuf, salen uint32) {
	if a := addr.Addr().Unmap(); a.Is4() {
		var raw unix.RawSockaddrInet4
		raw.Family = unix.AF_INET
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&raw.Port))[:], addr.Port())
		raw.Addr = a.As4()
		copy(sa[:], (*[unix.SizeofSockaddrInet4]byte)(unsafe.Pointer(&raw))[:])
		return unix.AF_INET, sa, unix.SizeofSockaddrInet4
	}
	var raw unix.RawSockaddrInet6
	raw.Family = unix.AF_INET6
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&raw.Port))[:], addr.Port())
	raw.Addr = addr.Addr().As16()
	if z := addr.Addr().Zone(); z != "" {
		if ifi, err := net.InterfaceByName(z); err == nil {
			raw.Scope_id = uint32(ifi.Index)
		} else if n, err := strconv.ParseUint(z, 10, 32); err == nil {
			raw.Scope_id = uint32(n)
		}
	}
	copy(sa[:], (*[unix.SizeofSockaddrInet6]byte)(unsafe.Pointer(&raw))[:])
	return unix.AF_INET6, sa, unix.SizeofSockaddrInet6
}

// rawUpstream is an upstream address encoded for connect(2).
type rawUpstream struct {
	family int
	sa     sockaddrBuf
	salen  uint32
}

func newRawUpstream(addr netip.AddrPort) rawUpstream {
	var r rawUpstream
	r.family, r.sa, r.salen = rawSockaddr(addr)
	return r
}

// warmSockets holds, per upstream, sockets whose last attempt was answered,
// still connected. Behind a Service VIP, conntrack pins a socket's port to
// the backend kube-proxy picked for it, so a warm socket reaches a backend
// that answered it a moment ago. A query's first attempt takes one, oldest
// first: while some backends are silent, first attempts go to backends
// that answer instead of to a random one, and hedging is left for the rare
// miss. A socket is warm only for Config.WarmPortAge after it got its port; then
// it goes back to the spares and leaves from a new port, so new flows keep
// spreading the load over every backend. A warm socket whose backend went
// silent carries one lost attempt and is closed; a silent backend is
// never asked twice from one port. Hedges and retries always leave from
// new ports.
type warmSockets struct {
	byUp   [][]warmSocket
	maxAge time.Duration // none is kept when negative
}
type warmSocket struct {
	fd     int
	lastID uint16
	born   time.Time
}

// take sends msg from the oldest warm socket to upstream up that is young
// enough, and returns it, its stale ID and when it got its port; fd -1
// when there is none. Sockets too old go to spares.
func (w *warmSockets) take(up int, msg []byte, now time.Time, spares *spareSockets, family int) (int, uint32, time.Time) {
	q := &w.byUp[up]
	for len(*q) > 0 {
		ws := (*q)[0]
		*q = (*q)[1:]
		if now.Sub(ws.born) >= w.maxAge {
			spares.put(family, ws.fd, ws.lastID)
			continue
		}
		if write(ws.fd, msg) != 0 {
			_, _, _ = syscall.RawSyscall(unix.SYS_CLOSE, uintptr(ws.fd), 0, 0)
			continue
		}
		return ws.fd, uint32(ws.lastID) + 1, ws.born
	}
	return -1, 0, now
}

// put keeps fd, whose attempt with message ID id to upstream up was
// answered, warm if it got its port recently, or gives it to spares.
func (w *warmSockets) put(up, fd int, id uint16, born, now time.Time, spares *spareSockets, family int) {
	if q := &w.byUp[up]; now.Sub(born) < w.maxAge && len(*q) < maxWarm {
		*q = append(*q, warmSocket{fd: fd, lastID: id, born: born})
		return
	}
	spares.put(family, fd, id)
}
func (w *warmSockets) close() {
	for i, q := range w.byUp {
		for _, ws := range q {
			_ = unix.Close(ws.fd)
		}
		w.byUp[i] = nil
	}
}

// spareSockets holds upstream sockets whose attempt was answered,
// disconnected. Disconnecting a UDP socket that bind(2) never pinned to a
// port releases its port, so connecting it again picks a new random
// ephemeral one: the next attempt leaves from a new source port, a new
// 5-tuple for conntrack, as from a new socket, without the cost of
// creating and destroying one (about a third of the forwarder's CPU per
// query). Only answered sockets are reused: one whose attempt failed or
// timed out may hold an error or a late reply, and is closed.
type spareSockets struct {
	fds [2][]spare // by family: AF_INET, AF_INET6
	// reuse is set per family where a disconnect was seen to release the
	// port (see probeSocketReuse); elsewhere every attempt has a new socket.
	reuse [2]bool
}
type spare struct {
	fd     int
	lastID uint16
}

func familyIndex(family int) int {
	if family == unix.AF_INET6 {
		return 1
	}
	return 0
}

// dial sends msg to up from a spare socket connected again, or from a new
// one. It returns the socket and its stale ID (see attempt.stale).
func (s *spareSockets) dial(up *rawUpstream, msg []byte) (int, uint32, syscall.Errno) {
	free := &s.fds[familyIndex(up.family)]
	if n := len(*free); n > 0 {
		sp := (*free)[n-1]
		*free = (*free)[:n-1]
		if connectAndWrite(sp.fd, up, msg) == 0 {
			return sp.fd, uint32(sp.lastID) + 1, 0
		}
		// Whatever the spare's trouble, a new socket decides the attempt.
		_, _, _ = syscall.RawSyscall(unix.SYS_CLOSE, uintptr(sp.fd), 0, 0)
	}
	fd, e := dialUDP(up, msg)
	return fd, 0, e
}

// put disconnects fd, whose attempt with message ID id was answered, and
// keeps it for another attempt, or closes it.
func (s *spareSockets) put(family, fd int, id uint16) {
	i := familyIndex(family)
	if s.reuse[i] && len(s.fds[i]) < maxSpares && disconnect(fd) == 0 {
		s.fds[i] = append(s.fds[i], spare{fd: fd, lastID: id})
		return
	}
	_, _, _ = syscall.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0)
}

// probeSocketReuse finds, for the families of the upstreams, whether a
// disconnected socket gets a new port when it connects again, as Linux
// does. A sandboxed network stack might keep the port, and a reused
// socket would then pin its attempts to one backend: the very outage the
// forwarder exists for. connect sends nothing, so this costs no traffic.
func (p *Proxy) probeSocketReuse() [2]bool {
	var reuse, probed [2]bool
	for _, addr := range p.cfg.Upstreams {
		up := newRawUpstream(addr)
		i := familyIndex(up.family)
		if probed[i] {
			continue
		}
		probed[i] = true
		if reuse[i] = disconnectReleasesPort(&up); !reuse[i] {
			p.log.Info("A disconnected UDP socket keeps its port here; every upstream attempt opens a new socket", "upstream", addr.String())
		}
	}
	return reuse
}

// disconnectReleasesPort connects a socket to up, disconnects it and
// connects it again, up to three times (the kernel may pick the same
// random port again by chance), and reports whether the port changed.
func disconnectReleasesPort(up *rawUpstream) bool {
	fd, err := unix.Socket(up.family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	last := -1
	for range 4 {
		if connect(fd, up) != 0 {
			return false
		}
		port, err := localPort(fd)
		if err != nil {
			return false
		}
		if last >= 0 && port != last {
			return true
		}
		last = port
		if disconnect(fd) != 0 {
			return false
		}
	}
	return false
}

// localPort is the port the IPv4 or IPv6 socket fd is bound to.
func localPort(fd int) (int, error) {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return 0, err
	}
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return sa.Port, nil
	case *unix.SockaddrInet6:
		return sa.Port, nil
	}
	return 0, fmt.Errorf("socket of family %T", sa)
}
func (s *spareSockets) close() {
	for i := range s.fds {
		for _, sp := range s.fds[i] {
			_ = unix.Close(sp.fd)
		}
		s.fds[i] = nil
	}
}

// dialUDP opens a new UDP socket, connects it to up, so the kernel picks a
// fresh ephemeral port and delivers only up's packets and ICMP errors, and
// sends msg.
func dialUDP(up *rawUpstream, msg []byte) (int, syscall.Errno) {
	r, _, e := syscall.RawSyscall(unix.SYS_SOCKET, uintptr(up.family), unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if e != 0 {
		return -1, e
	}
	fd := int(r)
	if e = connectAndWrite(fd, up, msg); e != 0 {
		_, _, _ = syscall.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0)
		return -1, e
	}
	return fd, 0
}

// connectAndWrite connects the unconnected socket fd to up, which binds it
// to a new ephemeral port, and sends msg.
func connectAndWrite(fd int, up *rawUpstream, msg []byte) syscall.Errno {
	if e := connect(fd, up); e != 0 {
		return e
	}
	return write(fd, msg)
}

// write sends msg on the connected socket fd.
func write(fd int, msg []byte) syscall.Errno {
	_, _, e := syscall.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&msg[0])), uintptr(len(msg)))
	return e
}

// connect connects fd to up; an unbound socket is bound to an ephemeral
// port on the way.
func connect(fd int, up *rawUpstream) syscall.Errno {
	_, _, e := syscall.RawSyscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&up.sa)), uintptr(up.salen))
	return e
}

// disconnect dissolves fd's association (connect with AF_UNSPEC), which
// also releases the port of a socket that bind(2) did not pin.
func disconnect(fd int) syscall.Errno {
	unspec := unix.RawSockaddr{Family: unix.AF_UNSPEC}
	_, _, e := syscall.RawSyscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&unspec)), unsafe.Sizeof(unspec))
	return e
}
