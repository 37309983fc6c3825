//go:build linux

package dnsproxy

import (
	"encoding/binary"
	"math/rand/v2"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

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
