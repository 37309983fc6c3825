package dnsproxy

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
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
// forwarded and restored before handle returns.
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

	// One byte more than the client takes, so a reply that overflows it is
	// seen as truncated instead of silently cut by the kernel.
	b := getBuf(maxSize + 1)
	reply, b, err := p.forward(msg, &q, proto, b)
	binary.BigEndian.PutUint16(msg, q.id)
	if err != nil {
		p.log.V(1).Info("Query failed", "error", err.Error())
		return errorReply(*b, msg, &q, rcodeServFail), b
	}
	if p.cache != nil {
		p.cache.put(key, reply)
	}
	binary.BigEndian.PutUint16(reply, q.id)
	return reply, b
}

// forward sends the query to the upstreams, each attempt from a new socket
// with a new random message ID, until one answers or the deadline passes.
// It starts with the upstream that answered last and moves on after a
// failed attempt, wrapping around, so a single upstream (a Service VIP) is
// retried from a fresh source port. Queries from UDP clients go over UDP
// and are retried over TCP when the reply is truncated; queries from TCP
// clients go over TCP. The reply is returned in b, or in a buffer that
// replaced it (b is then returned to the pool).
func (p *Proxy) forward(msg []byte, q *query, proto int, b *[]byte) ([]byte, *[]byte, error) {
	start := time.Now()
	overall := start.Add(p.cfg.Deadline)
	first := int(p.preferred.Load())
	for attempt := range p.maxAttempts {
		now := time.Now()
		if attempt > 0 && !now.Before(overall) {
			break
		}
		i := (first + attempt) % len(p.ups)
		up := &p.ups[i]
		deadline := earliest(now.Add(p.cfg.Timeout), overall)
		id := uint16(rand.Uint32())
		binary.BigEndian.PutUint16(msg, id)

		var n int
		var err error
		if proto == protoTCP {
			n, err = exchangeTCP(up.addr, msg, q, id, *b, deadline)
		} else {
			var ignored int
			n, ignored, err = exchangeUDP(up.addr, msg, q, id, (*b)[:q.udpSize+1], deadline)
			up.errs[reasonBadReply].Add(float64(ignored))
			if errors.Is(err, errTruncated) {
				var reply []byte
				reply, b = p.retryOverTCP(up, msg, q, id, b, n, overall)
				p.answeredBy(first, i)
				return reply, b, nil
			}
		}
		if err == nil {
			p.answeredBy(first, i)
			return (*b)[:n], b, nil
		}
		up.errs[reasonOf(err)].Inc()
		p.log.V(1).Info("Upstream attempt failed", "upstream", up.addr.String(), "attempt", attempt+1, "error", err.Error())
	}
	return nil, b, errNoAttemptsLeft
}

// answeredBy makes upstream i the first one tried by the next queries.
func (p *Proxy) answeredBy(first, i int) {
	if i != first {
		p.preferred.Store(int32(i))
	}
}

// retryOverTCP handles a truncated UDP reply (in (*b)[:n]; n is one past the
// client's size when the reply overflowed it) for a UDP client: it asks the
// same upstream over TCP and relays that answer, truncated to what the
// client accepts (keeping whole records, with TC set, as an authoritative
// server would). If TCP fails the client gets the truncated reply, or a
// bare one with TC set, and can retry over TCP itself.
func (p *Proxy) retryOverTCP(up *upstream, msg []byte, q *query, id uint16, b *[]byte, n int, overall time.Time) ([]byte, *[]byte) {
	tb := getBuf(largeBuf)
	deadline := earliest(time.Now().Add(p.cfg.Timeout), overall)
	tn, err := exchangeTCP(up.addr, msg, q, id, *tb, deadline)
	if err == nil {
		if tn <= q.udpSize {
			putBuf(b)
			return (*tb)[:tn], tb
		}
		if reply, ok := truncateReply((*tb)[:tn], q.udpSize, *b); ok {
			putBuf(tb)
			return reply, b
		}
		err = errBadReply
	}
	putBuf(tb)
	up.errs[reasonOf(err)].Inc()
	p.log.V(1).Info("TCP retry of a truncated reply failed", "upstream", up.addr.String(), "error", err.Error())
	if n <= q.udpSize {
		return (*b)[:n], b
	}
	reply := errorReply(*b, msg, q, rcodeSuccess)
	binary.BigEndian.PutUint16(reply[2:], binary.BigEndian.Uint16(reply[2:])|flagTC)
	return reply, b
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
