package dnsproxy

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"net"
	"net/netip"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// upstream is one configured DNS server.
type upstream struct {
	addr netip.AddrPort
	// errs counts failed attempts by reason (metrics resolved at start).
	errs *[numReasons]prometheus.Counter
}

// handle answers one client message and returns the reply to send (nil:
// drop the message) and the pooled buffer holding it, to give back with
// putBuf once the reply is written. msg is modified while the query is
// forwarded and restored before handle returns. It serves TCP clients,
// and UDP clients off Linux; the Linux poll loop has its own copy of the
// attempt policy in udp_attempts_linux.go.
func (p *Proxy) handle(msg []byte, proto int) ([]byte, *[]byte) {
	var q query
	switch err := parseQuery(msg, &q); err {
	case nil:
	case errShortMessage, errNotQuery:
		p.m.dropped.Inc()
		return nil, nil
	case errNotImplemented:
		b := getBuf(smallBuf)
		return errorReply(*b, msg, &q, rcodeNotImp), b
	default:
		b := getBuf(smallBuf)
		return errorReply(*b, msg, &q, rcodeFormErr), b
	}

	maxSize := q.udpSize
	if proto == protoTCP {
		maxSize = dns.MaxMsgSize
	}
	var key []byte
	var keyBuf [keyLen]byte
	if p.cache != nil {
		key = cacheKey(&keyBuf, msg, &q)
		b := getBuf(maxSize)
		if n := p.cache.get(key, *b, maxSize); n > 0 {
			p.m.cacheHits.Inc()
			binary.BigEndian.PutUint16(*b, q.id)
			return (*b)[:n], b
		}
		putBuf(b)
		p.m.cacheMisses.Inc()
	}

	start := time.Now()
	res := p.exchange(msg, &q, proto, int(p.preferred.Load()), start.Add(p.cfg.Deadline))
	p.policy.finished(res.attempts)
	binary.BigEndian.PutUint16(msg, q.id)
	if res.buf == nil {
		p.m.attempts.Observe(float64(res.attempts))
		p.log.V(1).Info("Query failed", "cause", causeNames[res.cause], "attempts", res.attempts)
		b := getBuf(smallBuf)
		p.m.servfails[res.cause].Inc()
		return errorReply(*b, msg, &q, rcodeServFail), b
	}
	b := res.buf
	reply := (*b)[:res.n]
	if res.truncated {
		var more int
		reply, b, more = p.retryOverTCP(res.up, msg, &q, b, res.n, start.Add(p.cfg.Deadline))
		res.attempts += more
	}
	p.m.attempts.Observe(float64(res.attempts))
	if reply[3]&rcodeMask == rcodeServFail {
		p.m.servfails[causeUpstream].Inc()
	}
	if p.cache != nil {
		p.cache.put(key, reply)
	}
	binary.BigEndian.PutUint16(reply, q.id)
	return reply, b
}

// exchangeResult is the outcome of exchange.
type exchangeResult struct {
	// buf holds the reply, (*buf)[:n]: an answer, or the last SERVFAIL or
	// REFUSED when no attempt answered otherwise; nil when no upstream
	// replied, then cause says why (causeDeadline or causeAttemptLimit).
	buf       *[]byte
	n         int
	cause     int
	truncated bool   // a UDP reply with TC set, or larger than the client takes
	up        int    // the upstream that answered
	attempts  int    // attempts made
	id        uint16 // message ID of the attempt that was answered
}

// exchange sends the query msg to the upstreams over proto under the
// attempt policy (see policy.go), starting with upstream first, each
// attempt from a new socket with a new random message ID, and returns the
// first valid reply that is not an error (isErrorReply), or else the last
// error reply. A UDP query's first attempt waits in the calling
// goroutine until the hedge delay; most are answered by then. After that,
// and for TCP, each attempt waits in a goroutine of its own. All of them
// have ended when exchange returns.
func (p *Proxy) exchange(msg []byte, q *query, proto, first int, overall time.Time) exchangeResult {
	if proto != protoUDP {
		return p.newExchange(msg, q, proto, first, overall).run(time.Now())
	}
	now := time.Now()
	a := goAttempt{n: 1, up: first % len(p.ups), id: uint16(rand.Uint32()), sent: now}
	up := &p.ups[a.up]
	deadline := earliest(now.Add(p.cfg.Timeout), overall)
	a.deadline = deadline
	binary.BigEndian.PutUint16(msg, a.id)
	conn, err := dialUDPConn(up.addr, msg)
	if err == nil {
		a.buf = getBuf(q.udpSize + 1)
		// One byte more than the client takes, so a reply that overflows it
		// is seen as truncated instead of silently cut by the kernel.
		var n, ignored int
		n, ignored, err = readUDPReply(conn, msg, q, a.id, (*a.buf)[:q.udpSize+1], earliest(now.Add(p.policy.hedgeDelay()), deadline))
		up.errs[reasonBadReply].Add(float64(ignored))
		if err == nil && isErrorReply((*a.buf)[:n]) {
			// Another backend may answer: ask again at once.
			conn.Close()
			up.errs[errorReason((*a.buf)[:n])].Inc()
			ex := p.newExchange(msg, q, proto, first, overall)
			ex.keep(a.buf, n, a.up)
			ex.sent = 1
			return ex.run(time.Now())
		}
		if err == nil || err == errTruncated {
			conn.Close()
			p.policy.answered(time.Since(now), true)
			p.answeredBy(first, a.up)
			return exchangeResult{buf: a.buf, n: n, truncated: err == errTruncated, up: a.up, attempts: 1, id: a.id}
		}
		if err == errUpstreamTimeout && time.Now().Before(deadline) {
			// The hedge delay passed: the attempt goes on waiting in a
			// goroutine while the next ones are sent.
			ex := p.newExchange(msg, q, proto, first, overall)
			ex.slots[0], ex.sent, ex.open = a, 1, 1
			go ex.awaitUDP(0, conn, a.id, (*a.buf)[:q.udpSize+1], deadline)
			return ex.run(now.Add(p.policy.hedgeDelay()))
		}
		conn.Close()
		putBuf(a.buf)
	}
	up.errs[reasonOf(err)].Inc()
	p.log.V(1).Info("Upstream attempt failed", "upstream", up.addr.String(), "attempt", 1, "error", err.Error())
	ex := p.newExchange(msg, q, proto, first, overall)
	ex.sent = 1
	next := now.Add(p.policy.hedgeDelay())
	if err == errUpstreamTimeout {
		next = time.Now() // nothing left to wait for
	}
	return ex.run(next)
}

func (p *Proxy) newExchange(msg []byte, q *query, proto, first int, overall time.Time) *goExchange {
	ex := &goExchange{p: p, msg: msg, q: q, proto: proto, first: first, overall: overall,
		results: make(chan attemptResult, p.cfg.MaxParallelAttempts),
		slots:   make([]goAttempt, p.cfg.MaxParallelAttempts)}
	ex.ctx, ex.cancel = context.WithCancel(context.Background())
	return ex
}

// run sends the query's next attempts, the first of them at next, until
// one is answered, the deadline passes, or no attempt is left.
func (ex *goExchange) run(next time.Time) exchangeResult {
	p := ex.p
	defer ex.finish()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := time.Now()
		if !now.Before(ex.overall) {
			// The attempts still open time out now; finish ends them.
			for _, a := range ex.slots {
				if a.buf != nil {
					p.ups[a.up].errs[reasonTimeout].Inc()
				}
			}
			return ex.failed(causeDeadline)
		}
		if !now.Before(next) {
			next = now.Add(p.policy.hedgeDelay())
			switch ok, why := p.policy.admit(ex.sent, ex.open, now); {
			case ok:
				ex.start(now)
			case why == heldExhausted:
				if ex.open == 0 {
					return ex.failed(causeAttemptLimit)
				}
				next = ex.overall
			case why == heldBudget:
				p.m.held[why].Inc()
				if ex.open == 0 && ex.fallback != nil {
					if ex.heldWithFallback {
						return ex.failed(causeAttemptLimit) // the error, without waiting longer
					}
					ex.heldWithFallback = true
				}
				next = now.Add(p.policy.budgetWait())
			default:
				// A slot frees up when the oldest attempt times out.
				p.m.held[why].Inc()
				next = ex.overall
				for _, a := range ex.slots {
					if a.buf != nil {
						next = earliest(next, a.deadline)
					}
				}
				// Past it already: the goroutine is about to report.
				next = later(next, now.Add(p.cfg.HedgeDelayMin))
			}
		}
		timer.Reset(earliest(next, ex.overall).Sub(now))
		select {
		case r := <-ex.results:
			ex.open--
			a := &ex.slots[r.slot]
			if r.buf != nil {
				putBuf(a.buf)
				a.buf = r.buf
			}
			up := &p.ups[a.up]
			up.errs[reasonBadReply].Add(float64(r.ignored))
			if r.err == nil && isErrorReply((*a.buf)[:r.n]) {
				// Another backend may answer: ask again at once.
				up.errs[errorReason((*a.buf)[:r.n])].Inc()
				ex.keep(a.buf, r.n, a.up)
				a.buf = nil
				next = time.Now()
				continue
			}
			if r.err == nil || r.err == errTruncated {
				p.policy.answered(time.Since(a.sent), ex.proto == protoUDP)
				p.answeredBy(ex.first, a.up)
				if a.n > 1 {
					p.m.answeredLate.Inc()
				}
				if ex.fallback != nil {
					p.m.replaced.Inc()
				}
				res := exchangeResult{buf: a.buf, n: r.n, truncated: r.err == errTruncated, up: a.up, attempts: ex.sent, id: a.id}
				a.buf = nil
				return res
			}
			up.errs[reasonOf(r.err)].Inc()
			p.log.V(1).Info("Upstream attempt failed", "upstream", up.addr.String(), "attempt", a.n, "error", r.err.Error())
			ex.free(r.slot)
			if r.err == errUpstreamTimeout && ex.open == 0 {
				next = time.Now() // nothing left to wait for
			}
		case <-timer.C:
		}
	}
}

// goExchange is one query's attempts on the goroutine path.
type goExchange struct {
	p       *Proxy
	msg     []byte
	q       *query
	proto   int
	first   int
	overall time.Time

	ctx     context.Context
	cancel  context.CancelFunc
	results chan attemptResult
	slots   []goAttempt // MaxParallelAttempts slots
	sent    int
	open    int
	// fallback holds the last error reply, (*fallback)[:fallbackN], from
	// upstream fallbackUp: the client's answer if no attempt answers.
	fallback              *[]byte
	fallbackN, fallbackUp int
	heldWithFallback      bool // an attempt was held back once since
}

// keep makes the error reply (*b)[:n] from upstream up the query's
// fallback, taking b.
func (ex *goExchange) keep(b *[]byte, n, up int) {
	if ex.fallback != nil {
		putBuf(ex.fallback)
	}
	ex.fallback, ex.fallbackN, ex.fallbackUp = b, n, up
}

// failed ends a query no attempt answered: with the last error reply, or
// with cause.
func (ex *goExchange) failed(cause int) exchangeResult {
	if ex.fallback == nil {
		return exchangeResult{cause: cause, attempts: ex.sent}
	}
	res := exchangeResult{buf: ex.fallback, n: ex.fallbackN, up: ex.fallbackUp, attempts: ex.sent}
	ex.fallback = nil
	return res
}

// goAttempt is one attempt waiting for its answer.
type goAttempt struct {
	buf      *[]byte // the reply; nil while the slot is free
	n        int     // 1 for the query's first attempt, 2 for the next...
	up       int
	id       uint16
	sent     time.Time
	deadline time.Time
}

// attemptResult is what an attempt's goroutine reports.
type attemptResult struct {
	slot    int
	n       int // reply length
	ignored int // replies that did not match the query
	err     error
	// buf, if set, holds the reply (TCP) and replaces the slot's buffer.
	buf *[]byte
}

// start sends the next attempt: to the next upstream, from a new socket.
func (ex *goExchange) start(now time.Time) {
	p := ex.p
	slot := 0
	for ex.slots[slot].buf != nil {
		slot++
	}
	a := &ex.slots[slot]
	ex.sent++
	deadline := earliest(now.Add(p.cfg.Timeout), ex.overall)
	*a = goAttempt{n: ex.sent, up: (ex.first + ex.sent - 1) % len(p.ups), id: uint16(rand.Uint32()), sent: now, deadline: deadline}
	up := &p.ups[a.up]
	if ex.proto == protoTCP {
		// The slot's buffer holds the framed query; the reply comes in a
		// buffer of its own size (attemptResult.buf).
		a.buf = getBuf(len(ex.msg) + 2)
		framed := frameTCP(ex.msg, a.id, *a.buf)
		go ex.awaitTCP(slot, up.addr, framed, a.id, deadline)
	} else {
		// The message is written here, not in the goroutine, so that the
		// next attempt's ID cannot overwrite it before it is sent.
		binary.BigEndian.PutUint16(ex.msg, a.id)
		conn, err := dialUDPConn(up.addr, ex.msg)
		if err != nil {
			up.errs[reasonOf(err)].Inc()
			p.log.V(1).Info("Upstream attempt failed", "upstream", up.addr.String(), "attempt", a.n, "error", err.Error())
			return
		}
		a.buf = getBuf(ex.q.udpSize + 1)
		go ex.awaitUDP(slot, conn, a.id, (*a.buf)[:ex.q.udpSize+1], deadline)
	}
	if ex.open > 0 {
		p.m.hedged.Inc()
	}
	ex.open++
}

func (ex *goExchange) awaitUDP(slot int, conn *net.UDPConn, id uint16, buf []byte, deadline time.Time) {
	stop := context.AfterFunc(ex.ctx, func() { _ = conn.Close() })
	defer stop()
	defer conn.Close()
	var r attemptResult
	r.n, r.ignored, r.err = readUDPReply(conn, ex.msg, ex.q, id, buf, deadline)
	r.slot = slot
	ex.results <- r
}

func (ex *goExchange) awaitTCP(slot int, up netip.AddrPort, framed []byte, id uint16, deadline time.Time) {
	var r attemptResult
	r.buf, r.n, r.err = exchangeTCP(ex.ctx, up, framed, ex.msg, ex.q, id, deadline)
	r.slot = slot
	ex.results <- r
}

// free gives a slot's buffer back.
func (ex *goExchange) free(slot int) {
	putBuf(ex.slots[slot].buf)
	ex.slots[slot].buf = nil
}

// finish stops the attempts still open and waits for their goroutines,
// which read the query.
func (ex *goExchange) finish() {
	ex.cancel()
	if ex.fallback != nil {
		putBuf(ex.fallback)
		ex.fallback = nil
	}
	for ex.open > 0 {
		r := <-ex.results
		ex.open--
		ex.free(r.slot)
		if r.buf != nil {
			putBuf(r.buf)
		}
	}
}

// answeredBy makes upstream i the first one tried by the next queries.
func (p *Proxy) answeredBy(first, i int) {
	if i != first {
		p.preferred.Store(int32(i))
	}
}

// retryOverTCP handles a truncated UDP reply (in (*b)[:n]; n is one past the
// client's size when the reply overflowed it) for a UDP client: it asks
// over TCP, starting with the upstream up that answered, and relays that
// answer, truncated to what the client accepts (keeping whole records, with
// TC set, as an authoritative server would). If TCP fails, or
// maxTCPRetries retries are running already, the client gets the truncated
// reply, or a bare one with TC set, and can retry over TCP itself. It
// returns the reply, its buffer, and the TCP attempts made.
func (p *Proxy) retryOverTCP(up int, msg []byte, q *query, b *[]byte, n int, overall time.Time) ([]byte, *[]byte, int) {
	var res exchangeResult
	select {
	case p.tcpRetries <- struct{}{}:
		res = p.exchange(msg, q, protoTCP, up, overall)
		<-p.tcpRetries
	default:
		p.m.tcpRetriesShed.Inc()
	}
	if res.buf != nil {
		if res.n <= q.udpSize {
			putBuf(b)
			return (*res.buf)[:res.n], res.buf, res.attempts
		}
		reply, ok := truncateReply((*res.buf)[:res.n], q.udpSize, *b)
		putBuf(res.buf)
		if ok {
			return reply, b, res.attempts
		}
		p.ups[res.up].errs[reasonBadReply].Inc()
	}
	p.log.V(1).Info("No TCP answer for a truncated reply", "upstream", p.ups[up].addr.String())
	if n <= q.udpSize {
		return (*b)[:n], b, res.attempts
	}
	reply := errorReply(*b, msg, q, rcodeSuccess)
	binary.BigEndian.PutUint16(reply[2:], binary.BigEndian.Uint16(reply[2:])|flagTC)
	return reply, b, res.attempts
}

// truncateReply repacks reply to fit size into dst. This is the one place
// a message is unpacked: a UDP client asked, the answer needs TCP, and the
// client may not be able to use TCP (musl before 1.2.4, for one).
func truncateReply(reply []byte, size int, dst []byte) ([]byte, bool) {
	var m dns.Msg
	if err := m.Unpack(reply); err != nil {
		return nil, false
	}
	m.Truncate(size)
	out, err := m.PackBuffer(dst)
	if err != nil || len(out) > size {
		return nil, false
	}
	if &out[0] != &dst[0] {
		out = dst[:copy(dst, out)]
	}
	return out, true
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
