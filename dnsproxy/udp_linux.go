//go:build linux

package dnsproxy

import (
	"fmt"
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

// mmsghdr is struct mmsghdr of recvmmsg(2) and sendmmsg(2).
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [unsafe.Sizeof(uintptr(0)) - 4]byte
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
