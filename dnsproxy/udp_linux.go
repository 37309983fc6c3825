//go:build linux

package dnsproxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// On Linux each UDP listener is a poll loop on raw non-blocking sockets:
// the listener socket and the upstream sockets of its queries in flight.
// System calls are what a forwarder spends its time on, so the loop makes
// few: per query connect, write, recv and a disconnect on the upstream
// side (the new source port is the point; see spareSockets), and on the
// client side queries are read with recvmmsg and replies sent with
// sendmmsg, many per call. There is no goroutine, netpoller registration
// or allocation per query. The goroutine-per-query path (connListener)
// makes about three times the calls.
// Loops run one per listener socket (Config.Listeners), so the kernel can
// spread clients over cores.

const (
	// batch is the most messages one recvmmsg or sendmmsg call moves.
	batch = 32
	// drainRounds bounds the recvmmsg calls per wakeup, so upstream
	// replies are not starved under load.
	drainRounds = 2
	// maxSpares bounds the idle upstream sockets a loop keeps per address
	// family.
	maxSpares = 128
	// maxWarm bounds the warm sockets a loop keeps per upstream.
	maxWarm = 64
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

// mmsghdr is struct mmsghdr of recvmmsg(2) and sendmmsg(2).
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [unsafe.Sizeof(uintptr(0)) - 4]byte
}

// attempt is one upstream attempt of a query in a loop.
type attempt struct {
	fd int // the attempt's socket
	// stale is the message ID of the attempt the socket carried before,
	// plus one (0: a new socket): a duplicate of that answer may still
	// be queued on it.
	stale    uint32
	id       uint16
	up       int
	n        int // 1 for the query's first attempt, 2 for the next...
	sent     time.Time
	deadline time.Time
	born     time.Time // when the socket got its port
}

// pending is a query in a loop, from being read to its reply being sent.
type pending struct {
	qb       *[]byte // the query, then the reply
	qlen     int
	rlen     int // reply length, once the reply is in qb
	q        query
	inFlight bool // holds an in-flight slot
	first    int  // upstream tried first
	sent     int  // attempts made
	open     int  // attempts waiting for an answer: atts[:open]
	// atts has Config.MaxParallelAttempts slots, allocated once and kept
	// when the pending is reused.
	atts    []attempt
	start   time.Time
	overall time.Time
	next    time.Time // when the next attempt is due
	// paced says next is lastSent plus the hedge delay, so that it moves
	// up when the delay shrinks.
	paced    bool
	lastSent time.Time
	wake     time.Time // earliest of next, overall and the attempts' deadlines
	heapIdx  int
	client   sockaddrBuf
	clen     uint32
	// fallback holds the last SERVFAIL or REFUSED reply, the client's
	// answer if no attempt answers otherwise; heldWithFallback says an
	// attempt was held back once since.
	fallback         *[]byte
	heldWithFallback bool
	// flight is the query's key in udpLoop.flights while it is asked
	// upstream; followers are identical queries that arrived meanwhile and
	// get its reply.
	flight    string
	followers []*pending
}

func (pd *pending) msg() []byte { return (*pd.qb)[:pd.qlen] }

// attemptRef names an attempt polled in the current iteration.
type attemptRef struct {
	pd   *pending
	slot int
}

// udpLoop serves one listener socket.
type udpLoop struct {
	p      *Proxy
	lfd    int
	wakefd int
	ups    []rawUpstream

	timers []*pending // queries being forwarded; min-heap on wake
	// flights are the queries being asked upstream by their bytes but the
	// message ID (flightKey): an identical query joins one as a follower
	// instead of asking again.
	flights map[string]*pending
	free    []*pending
	outbox  []*pending // replies to send at the end of the iteration
	rbuf    []byte
	now     time.Time // when the last poll returned
	// pacing is at least the hedge delay the queries in the heap were
	// paced with; when the delay falls well below it, they are re-paced.
	pacing time.Duration

	pollfds []unix.PollFd
	polled  []attemptRef // polled[i] owns pollfds[pollHeader+i]

	rxBufs  [batch]*[]byte
	rxNames [batch]sockaddrBuf
	rxIov   [batch]unix.Iovec
	rxHdr   [batch]mmsghdr
	txIov   [batch]unix.Iovec
	txHdr   [batch]mmsghdr

	spares spareSockets
	warm   warmSockets

	active  int // queries holding an in-flight slot
	stopped bool
	grace   time.Time
}

// pollHeader is the number of pollfds before the upstream sockets: the
// wake eventfd and the listener.
const pollHeader = 2

// repaceEvery bounds how long a loop with queries in flight sleeps.
const repaceEvery = 100 * time.Millisecond

func newUDPLoop(p *Proxy, lfd int, reuse [2]bool) (*udpLoop, error) {
	wakefd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	l := &udpLoop{p: p, lfd: lfd, wakefd: wakefd, rbuf: make([]byte, largeBuf+1), pacing: p.policy.hedgeDelay()}
	l.spares.reuse = reuse
	for _, up := range p.cfg.Upstreams {
		l.ups = append(l.ups, newRawUpstream(up))
	}
	l.warm.byUp = make([][]warmSocket, len(l.ups))
	l.flights = make(map[string]*pending)
	l.warm.maxAge = p.cfg.WarmPortAge
	return l, nil
}

// stopReading wakes the loop, which stops reading the listener and exits
// once its queries in flight are answered or the grace period ends.
func (l *udpLoop) stopReading() {
	one := [8]byte{1}
	_, _ = unix.Write(l.wakefd, one[:])
}

func (l *udpLoop) close() {
	_ = unix.Close(l.lfd)
	_ = unix.Close(l.wakefd)
	l.warm.close()
	l.spares.close()
	for _, b := range l.rxBufs {
		if b != nil {
			putBuf(b)
		}
	}
}

func (l *udpLoop) serve() error {
	for {
		l.flush()
		now := time.Now()
		if l.stopped && (l.active == 0 || !now.Before(l.grace)) {
			l.abandon()
			return nil
		}
		if err := l.wait(now); err != nil {
			return err
		}
		l.now = time.Now()
		for i := pollHeader; i < len(l.pollfds); i++ {
			pfd := &l.pollfds[i]
			if pfd.Revents == 0 {
				continue
			}
			// An attempt that ended earlier in this iteration no longer
			// owns the descriptor (its slot may hold another attempt).
			if ref := l.polled[i-pollHeader]; ref.slot < ref.pd.open && ref.pd.atts[ref.slot].fd == int(pfd.Fd) {
				l.upstreamReadable(ref.pd, ref.slot)
			}
		}
		if l.pollfds[0].Revents != 0 {
			l.stop()
		}
		if l.pollfds[1].Revents != 0 {
			l.drainListener()
		}
		l.repace()
		l.expire(time.Now())
	}
}

// repace moves up the next attempts of the queries in the heap when the
// hedge delay has fallen to less than half of what they were paced with:
// the first answers of a new forwarder (whose delay starts at the
// maximum), or the end of a slow period.
func (l *udpLoop) repace() {
	h := l.p.policy.hedgeDelay()
	if h >= l.pacing/2 {
		l.pacing = max(l.pacing, h)
		return
	}
	l.pacing = h
	for _, pd := range l.timers {
		if next := pd.lastSent.Add(h); pd.paced && next.Before(pd.next) {
			pd.next = next
			pd.wake = l.wakeOf(pd)
		}
	}
	for i := len(l.timers)/2 - 1; i >= 0; i-- {
		l.down(i)
	}
}

// wait polls the sockets. It first asks without blocking and in a raw
// system call, which under load finds work at once; only when there is
// none does it block, in a call the Go scheduler knows about.
func (l *udpLoop) wait(now time.Time) error {
	l.pollfds = append(l.pollfds[:0],
		unix.PollFd{Fd: int32(l.wakefd), Events: unix.POLLIN},
		unix.PollFd{Fd: int32(l.lfd), Events: unix.POLLIN})
	if l.stopped {
		l.pollfds[1].Fd = -1 // ignored by poll
	}
	l.polled = l.polled[:0]
	for _, pd := range l.timers {
		for i, a := range pd.atts[:pd.open] {
			l.pollfds = append(l.pollfds, unix.PollFd{Fd: int32(a.fd), Events: unix.POLLIN})
			l.polled = append(l.polled, attemptRef{pd: pd, slot: i})
		}
	}
	fds, nfds := uintptr(unsafe.Pointer(&l.pollfds[0])), uintptr(len(l.pollfds))
	var zero unix.Timespec
	r, _, e := syscall.RawSyscall6(unix.SYS_PPOLL, fds, nfds, uintptr(unsafe.Pointer(&zero)), 0, 0, 0)
	if e == 0 && r > 0 {
		return nil
	}
	var tsp uintptr
	if next, ok := l.nextWake(now); ok {
		ts := unix.NsecToTimespec(max(0, int64(next.Sub(now))))
		tsp = uintptr(unsafe.Pointer(&ts))
		_, _, e = syscall.Syscall6(unix.SYS_PPOLL, fds, nfds, tsp, 0, 0, 0)
	} else {
		_, _, e = syscall.Syscall6(unix.SYS_PPOLL, fds, nfds, 0, 0, 0, 0)
	}
	if e != 0 && e != unix.EINTR {
		return fmt.Errorf("ppoll: %w", e)
	}
	if e == unix.EINTR {
		for i := range l.pollfds {
			l.pollfds[i].Revents = 0
		}
	}
	return nil
}

// nextWake is the earliest time a query needs attention, or the end of the
// grace period when stopping. With queries in flight the loop also wakes
// every repaceEvery, to see a hedge delay that another loop's answers
// shortened (see repace).
func (l *udpLoop) nextWake(now time.Time) (time.Time, bool) {
	var next time.Time
	if len(l.timers) > 0 {
		next = earliest(l.timers[0].wake, now.Add(repaceEvery))
	}
	if l.stopped && (next.IsZero() || l.grace.Before(next)) {
		next = l.grace
	}
	return next, !next.IsZero()
}

func (l *udpLoop) stop() {
	if l.stopped {
		return
	}
	l.stopped = true
	l.grace = time.Now().Add(l.p.cfg.Deadline + shutdownSlack)
}

// abandon closes the upstream sockets of queries still in flight at the
// end of the grace period; their clients get no answer.
func (l *udpLoop) abandon() {
	for len(l.timers) > 0 {
		pd := l.timers[0]
		l.closeAll(pd)
		for _, f := range pd.followers {
			l.complete(f)
		}
		l.complete(pd)
	}
}

// drainListener reads queued queries, many per recvmmsg, and starts them.
func (l *udpLoop) drainListener() {
	for range drainRounds {
		for i := range batch {
			if l.rxBufs[i] == nil {
				l.rxBufs[i] = getBuf(smallBuf)
			}
			b := *l.rxBufs[i]
			l.rxIov[i].Base = &b[0]
			l.rxIov[i].SetLen(len(b))
			h := &l.rxHdr[i]
			h.hdr = unix.Msghdr{Name: &l.rxNames[i][0], Namelen: uint32(len(l.rxNames[i])), Iov: &l.rxIov[i]}
			h.hdr.SetIovlen(1)
			h.n = 0
		}
		r, _, e := syscall.RawSyscall6(unix.SYS_RECVMMSG, uintptr(l.lfd), uintptr(unsafe.Pointer(&l.rxHdr[0])), batch, unix.MSG_DONTWAIT, 0, 0)
		if e != 0 {
			if e != unix.EAGAIN && e != unix.EINTR {
				l.p.log.V(1).Info("Reading UDP queries failed", "error", e.Error())
			}
			return
		}
		start := time.Now()
		for i := range int(r) {
			l.p.m.queries[protoUDP].Inc()
			pd := l.alloc()
			pd.qb, pd.qlen, pd.start = l.rxBufs[i], int(l.rxHdr[i].n), start
			pd.client, pd.clen = l.rxNames[i], l.rxHdr[i].hdr.Namelen
			l.rxBufs[i] = nil
			if l.rxHdr[i].hdr.Flags&unix.MSG_TRUNC != 0 {
				l.errorReply(pd, rcodeFormErr) // larger than any sane query
				continue
			}
			l.startQuery(pd)
		}
		if int(r) < batch {
			return
		}
	}
}

// startQuery answers a query from the cache or sends its first attempt.
func (l *udpLoop) startQuery(pd *pending) {
	p := l.p
	msg := pd.msg()
	switch err := parseQuery(msg, &pd.q); err {
	case nil:
	case errShortMessage, errNotQuery:
		p.m.dropped.Inc()
		l.complete(pd)
		return
	case errNotImplemented:
		l.errorReply(pd, rcodeNotImp)
		return
	default:
		l.errorReply(pd, rcodeFormErr)
		return
	}
	if p.cache != nil {
		var kb [keyLen]byte
		key := cacheKey(&kb, msg, &pd.q)
		if n := p.cache.get(key, l.rbuf, pd.q.udpSize); n > 0 {
			p.m.cacheHits.Inc()
			binary.BigEndian.PutUint16(l.rbuf, pd.q.id)
			l.reply(pd, l.rbuf[:n])
			return
		}
		p.m.cacheMisses.Inc()
	}
	if !p.acquire() {
		p.m.servfails[causeInFlightLimit].Inc()
		l.errorReply(pd, rcodeServFail)
		return
	}
	pd.inFlight = true
	l.active++
	if leader := l.flights[string(flightKey(msg))]; leader != nil {
		// nginx workers and a pod's processes often ask the same name at
		// once: one set of attempts answers them all.
		leader.followers = append(leader.followers, pd)
		p.m.coalesced.Inc()
		return
	}
	pd.flight = string(flightKey(msg))
	l.flights[pd.flight] = pd
	pd.first = int(p.preferred.Load())
	pd.overall = pd.start.Add(p.cfg.Deadline)
	l.send(pd, pd.start)
	l.pace(pd, pd.start)
	l.schedule(pd)
}

// advance runs a query's timers at now: it ends the attempts whose timeout
// passed, answers SERVFAIL when the deadline passed or no attempt is left,
// and sends the next attempt when it is due and the policy admits it.
func (l *udpLoop) advance(pd *pending, now time.Time) {
	p := l.p
	timedOut := false
	for i := 0; i < pd.open; {
		a := &pd.atts[i]
		if now.Before(a.deadline) {
			i++
			continue
		}
		up, n := a.up, a.n
		l.closeAttempt(pd, i)
		timedOut = true
		p.ups[up].errs[reasonTimeout].Inc()
		p.log.V(1).Info("Upstream attempt failed", "upstream", p.cfg.Upstreams[up].String(), "attempt", n, "error", errUpstreamTimeout.Error())
	}
	if timedOut && pd.open == 0 {
		pd.next, pd.paced = now, false // nothing left to wait for
	}
	if !now.Before(pd.overall) {
		l.fail(pd, causeDeadline)
		return
	}
	if !now.Before(pd.next) {
		switch ok, why := p.policy.admit(pd.sent, pd.open, now); {
		case ok:
			l.send(pd, now)
			l.pace(pd, now)
		case why == heldExhausted:
			if pd.open == 0 {
				l.fail(pd, causeAttemptLimit)
				return
			}
			pd.next, pd.paced = pd.overall, false
		case why == heldParallel:
			// A slot frees up when the oldest attempt times out.
			p.m.held[why].Inc()
			pd.next, pd.paced = pd.overall, false
			for _, a := range pd.atts[:pd.open] {
				pd.next = earliest(pd.next, a.deadline)
			}
		default:
			p.m.held[why].Inc()
			if pd.open == 0 && pd.fallback != nil {
				if pd.heldWithFallback {
					l.fail(pd, causeAttemptLimit) // the error, without waiting longer
					return
				}
				pd.heldWithFallback = true
			}
			pd.next, pd.paced = now.Add(p.policy.budgetWait()), false
		}
	}
	l.schedule(pd)
}

// send sends the query to the next upstream: a first attempt from a warm
// socket if there is one, every other attempt from a new source port. A
// failure to send counts as a failed attempt.
func (l *udpLoop) send(pd *pending, now time.Time) {
	p := l.p
	up := (pd.first + pd.sent) % len(l.ups)
	pd.sent++
	id := uint16(rand.Uint32())
	binary.BigEndian.PutUint16(*pd.qb, id)
	fd, stale, born := -1, uint32(0), now
	if pd.sent == 1 {
		fd, stale, born = l.warm.take(up, pd.msg(), now, &l.spares, l.ups[up].family)
	}
	if fd < 0 {
		var e syscall.Errno
		if fd, stale, e = l.spares.dial(&l.ups[up], pd.msg()); e != 0 {
			l.attemptFailed(up, pd.sent, e)
			return
		}
		born = now
	}
	if pd.open > 0 {
		p.m.hedged.Inc()
	}
	pd.atts[pd.open] = attempt{fd: fd, stale: stale, id: id, up: up, n: pd.sent, sent: now, deadline: earliest(now.Add(p.cfg.Timeout), pd.overall), born: born}
	pd.open++
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

// flightKey is what makes two queries identical for a flight: every byte
// but the message ID, so the question exactly (case too: a client that
// randomises it checks the echo), the flags, and the EDNS0 record with its
// options (a client cookie keeps a query to itself).
func flightKey(msg []byte) []byte { return msg[2:] }

// upstreamReadable reads the replies queued on one attempt's socket. The
// first valid one answers the query and ends its other attempts.
func (l *udpLoop) upstreamReadable(pd *pending, slot int) {
	p := l.p
	a := &pd.atts[slot]
	buf := l.rbuf[:pd.q.udpSize+1]
	for {
		r, _, e := syscall.RawSyscall6(unix.SYS_RECVFROM, uintptr(a.fd),
			uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0, 0, 0)
		if e == unix.EAGAIN {
			return
		}
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			up, n := a.up, a.n
			l.closeAttempt(pd, slot)
			l.attemptFailed(up, n, e)
			l.advance(pd, l.now)
			return
		}
		reply := buf[:r]
		if !checkReply(pd.msg(), &pd.q, a.id, reply) {
			if r < 2 || uint32(binary.BigEndian.Uint16(reply))+1 != a.stale {
				p.ups[a.up].errs[reasonBadReply].Inc()
			}
			continue
		}
		up, id, born := a.up, a.id, a.born
		truncated := int(r) == len(buf) || binary.BigEndian.Uint16(reply[2:])&flagTC != 0
		if !truncated && isErrorReply(reply) {
			// Another backend may answer: keep the error, ask again at once.
			p.ups[up].errs[errorReason(reply)].Inc()
			l.keep(pd, reply)
			l.spares.put(l.ups[up].family, l.detach(pd, slot), id)
			pd.next, pd.paced = l.now, false
			l.advance(pd, l.now)
			return
		}
		p.policy.answered(l.now.Sub(a.sent), true)
		p.answeredBy(pd.first, up)
		if a.n > 1 {
			p.m.answeredLate.Inc()
		}
		if pd.fallback != nil {
			p.m.replaced.Inc()
		}
		l.warm.put(up, l.detach(pd, slot), id, born, l.now, &l.spares, l.ups[up].family)
		l.closeAll(pd)
		if truncated {
			l.retryOverTCP(pd, reply, up)
			return
		}
		p.m.attempts.Observe(float64(pd.sent))
		if reply[3]&rcodeMask == rcodeServFail {
			p.m.servfails[causeUpstream].Inc()
		}
		if p.cache != nil {
			var kb [keyLen]byte
			p.cache.put(cacheKey(&kb, pd.msg(), &pd.q), reply)
		}
		binary.BigEndian.PutUint16(reply, pd.q.id)
		l.reply(pd, reply)
		return
	}
}

// retryOverTCP hands a truncated reply to a goroutine that asks over TCP
// (a blocking exchange has no place in the loop).
func (l *udpLoop) retryOverTCP(pd *pending, reply []byte, up int) {
	p := l.p
	rb := getBuf(pd.q.udpSize + 1)
	n := copy(*rb, reply)
	qb, qlen, q, overall, sent := pd.qb, pd.qlen, pd.q, pd.overall, pd.sent
	// The query and its followers are answered from the goroutine; each
	// keeps its in-flight slot until then.
	clients := []tcpWaiter{{client: pd.client, clen: pd.clen, id: pd.q.id, start: pd.start}}
	for _, f := range pd.followers {
		clients = append(clients, tcpWaiter{client: f.client, clen: f.clen, id: f.q.id, start: f.start})
		f.inFlight = false
		l.active--
		l.complete(f)
	}
	pd.followers = nil
	pd.qb, pd.inFlight = nil, false
	l.active--
	p.policy.finished(sent)
	l.release(pd)
	p.queries.Add(1)
	go func() {
		defer p.queries.Done()
		reply, rb, more := p.retryOverTCP(up, (*qb)[:qlen], &q, rb, n, overall)
		p.m.attempts.Observe(float64(sent + more))
		for _, c := range clients {
			if reply[3]&rcodeMask == rcodeServFail {
				p.m.servfails[causeUpstream].Inc()
			}
			binary.BigEndian.PutUint16(reply, c.id)
			l.sendTo(reply, &c.client, c.clen)
			p.release()
			p.observe(reply, c.start)
		}
		putBuf(rb)
		putBuf(qb)
	}()
}

// tcpWaiter is a client whose query's answer is being asked over TCP.
type tcpWaiter struct {
	client sockaddrBuf
	clen   uint32
	id     uint16
	start  time.Time
}

// attemptFailed counts a failed attempt.
func (l *udpLoop) attemptFailed(up, n int, e syscall.Errno) {
	reason := reasonNetwork
	if e == unix.ECONNREFUSED {
		reason = reasonRefused
	}
	l.p.ups[up].errs[reason].Inc()
	l.p.log.V(1).Info("Upstream attempt failed", "upstream", l.p.cfg.Upstreams[up].String(), "attempt", n, "error", e.Error())
}

// expire runs the timers that are due.
func (l *udpLoop) expire(now time.Time) {
	// advance moves a query's wake past now or ends it, so this ends.
	for len(l.timers) > 0 && !now.Before(l.timers[0].wake) {
		l.advance(l.timers[0], now)
	}
}

// keep makes reply, an error reply, the query's fallback.
func (l *udpLoop) keep(pd *pending, reply []byte) {
	if pd.fallback == nil || cap(*pd.fallback) < len(reply) {
		if pd.fallback != nil {
			putBuf(pd.fallback)
		}
		pd.fallback = getBuf(len(reply))
	}
	*pd.fallback = (*pd.fallback)[:copy((*pd.fallback)[:cap(*pd.fallback)], reply)]
}

// fail ends a query no attempt answered: with its last error reply, or
// with SERVFAIL for cause.
func (l *udpLoop) fail(pd *pending, cause int) {
	l.closeAll(pd)
	l.p.m.attempts.Observe(float64(pd.sent))
	if pd.fallback != nil {
		reply := *pd.fallback
		if reply[3]&rcodeMask == rcodeServFail {
			l.p.m.servfails[causeUpstream].Inc()
		}
		binary.BigEndian.PutUint16(reply, pd.q.id)
		l.reply(pd, reply)
		return
	}
	l.p.m.servfails[cause].Inc()
	l.p.log.V(1).Info("Query failed", "cause", causeNames[cause], "attempts", pd.sent)
	binary.BigEndian.PutUint16(*pd.qb, pd.q.id)
	l.errorReply(pd, rcodeServFail)
}

// closeAttempt closes the socket of attempt slot.
func (l *udpLoop) closeAttempt(pd *pending, slot int) {
	_, _, _ = syscall.RawSyscall(unix.SYS_CLOSE, uintptr(l.detach(pd, slot)), 0, 0)
}

// detach ends attempt slot and returns its socket; the last open attempt
// takes its slot.
func (l *udpLoop) detach(pd *pending, slot int) int {
	fd := pd.atts[slot].fd
	last := pd.open - 1
	pd.atts[slot] = pd.atts[last]
	pd.atts[last].fd = -1
	pd.open = last
	return fd
}

// closeAll closes the query's attempts, stops its timers and ends its
// flight: a query that arrives now asks upstream itself.
func (l *udpLoop) closeAll(pd *pending) {
	for pd.open > 0 {
		l.closeAttempt(pd, pd.open-1)
	}
	l.remove(pd)
	if pd.flight != "" {
		delete(l.flights, pd.flight)
		pd.flight = ""
	}
}

// pace makes the query's next attempt due a hedge delay after one was sent
// at now.
func (l *udpLoop) pace(pd *pending, now time.Time) {
	pd.lastSent, pd.paced = now, true
	pd.next = now.Add(l.p.policy.hedgeDelay())
}

// wakeOf is the earliest time the query needs attention.
func (l *udpLoop) wakeOf(pd *pending) time.Time {
	wake := earliest(pd.next, pd.overall)
	for _, a := range pd.atts[:pd.open] {
		wake = earliest(wake, a.deadline)
	}
	return wake
}

// schedule sets the query's wake time and places it in the timer heap.
func (l *udpLoop) schedule(pd *pending) {
	pd.wake = l.wakeOf(pd)
	if pd.heapIdx < 0 {
		l.push(pd)
		return
	}
	l.down(pd.heapIdx)
	l.up(pd.heapIdx)
}

// errorReply queues an error reply to the query, written over it, and to
// its followers.
func (l *udpLoop) errorReply(pd *pending, rcode int) {
	for _, f := range pd.followers {
		l.errorReply(f, rcode)
	}
	pd.followers = nil
	reply := l.p.errorReplyFor(pd.msg(), *pd.qb, rcode)
	if reply == nil {
		l.complete(pd)
		return
	}
	pd.rlen = len(reply)
	l.outbox = append(l.outbox, pd)
}

// reply queues reply, copying it into the query's buffer, and to the
// query's followers, each with its own message ID.
func (l *udpLoop) reply(pd *pending, reply []byte) {
	for _, f := range pd.followers {
		l.reply(f, reply)
		binary.BigEndian.PutUint16(*f.qb, f.q.id)
	}
	pd.followers = nil
	if len(reply) > len(*pd.qb) {
		b := getBuf(len(reply))
		putBuf(pd.qb)
		pd.qb = b
	}
	pd.rlen = copy(*pd.qb, reply)
	l.outbox = append(l.outbox, pd)
}

// flush sends the queued replies, many per sendmmsg. A reply the kernel
// refuses is dropped (the client retries) and the rest still go out.
func (l *udpLoop) flush() {
	out := l.outbox
	for len(out) > 0 {
		k := min(len(out), batch)
		for i, pd := range out[:k] {
			l.txIov[i].Base = &(*pd.qb)[0]
			l.txIov[i].SetLen(pd.rlen)
			h := &l.txHdr[i]
			h.hdr = unix.Msghdr{Name: &pd.client[0], Namelen: pd.clen, Iov: &l.txIov[i]}
			h.hdr.SetIovlen(1)
		}
		r, _, e := syscall.RawSyscall6(unix.SYS_SENDMMSG, uintptr(l.lfd), uintptr(unsafe.Pointer(&l.txHdr[0])), uintptr(k), unix.MSG_DONTWAIT, 0, 0)
		sent := int(r)
		if e != 0 {
			l.p.log.V(1).Info("Writing a UDP reply failed", "error", e.Error())
			sent = 1
		}
		for _, pd := range out[:sent] {
			l.p.observe((*pd.qb)[:pd.rlen], pd.start)
			l.complete(pd)
		}
		out = out[sent:]
	}
	clear(l.outbox)
	l.outbox = l.outbox[:0]
}

func (l *udpLoop) sendTo(reply []byte, client *sockaddrBuf, clen uint32) {
	_, _, e := syscall.RawSyscall6(unix.SYS_SENDTO, uintptr(l.lfd),
		uintptr(unsafe.Pointer(&reply[0])), uintptr(len(reply)), 0,
		uintptr(unsafe.Pointer(client)), uintptr(clen))
	if e != 0 {
		l.p.log.V(1).Info("Writing a UDP reply failed", "error", e.Error())
	}
}

// complete releases what a finished query holds.
func (l *udpLoop) complete(pd *pending) {
	if pd.inFlight {
		l.active--
		l.p.release()
		if pd.sent > 0 { // a follower made no attempt of its own
			l.p.policy.finished(pd.sent)
		}
	}
	if pd.qb != nil {
		putBuf(pd.qb)
	}
	l.release(pd)
}

func (l *udpLoop) alloc() *pending {
	if n := len(l.free); n > 0 {
		pd := l.free[n-1]
		l.free = l.free[:n-1]
		return pd
	}
	return &pending{heapIdx: -1, atts: make([]attempt, l.p.cfg.MaxParallelAttempts)}
}

// release resets pd, whose attempts are closed, for reuse.
func (l *udpLoop) release(pd *pending) {
	if pd.fallback != nil {
		putBuf(pd.fallback)
	}
	*pd = pending{heapIdx: -1, atts: pd.atts}
	l.free = append(l.free, pd)
}

// The timer heap orders queries being forwarded by wake time.

func (l *udpLoop) push(pd *pending) {
	pd.heapIdx = len(l.timers)
	l.timers = append(l.timers, pd)
	l.up(pd.heapIdx)
}

func (l *udpLoop) remove(pd *pending) {
	i := pd.heapIdx
	if i < 0 {
		return
	}
	last := len(l.timers) - 1
	if i != last {
		l.swap(i, last)
	}
	l.timers[last] = nil
	l.timers = l.timers[:last]
	pd.heapIdx = -1
	if i != last {
		l.down(i)
		l.up(i)
	}
}

func (l *udpLoop) less(i, j int) bool { return l.timers[i].wake.Before(l.timers[j].wake) }

func (l *udpLoop) swap(i, j int) {
	l.timers[i], l.timers[j] = l.timers[j], l.timers[i]
	l.timers[i].heapIdx = i
	l.timers[j].heapIdx = j
}

func (l *udpLoop) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if !l.less(i, parent) {
			return
		}
		l.swap(i, parent)
		i = parent
	}
}

func (l *udpLoop) down(i int) {
	n := len(l.timers)
	for {
		c := 2*i + 1
		if c >= n {
			return
		}
		if c+1 < n && l.less(c+1, c) {
			c++
		}
		if !l.less(c, i) {
			return
		}
		l.swap(i, c)
		i = c
	}
}
