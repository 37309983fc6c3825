package dnsproxy

import (
	"errors"
	"net"
	"net/netip"
	"time"
)

// udpListener is one UDP socket bound to the listen address and the code
// that serves it.
type udpListener interface {
	// serve answers queries until stopReading is called; then it returns,
	// possibly before the queries it started are answered (those are
	// tracked by Proxy.queries).
	serve() error
	// stopReading makes serve stop taking new queries.
	stopReading()
	// close releases the socket, once nothing will write to it any more.
	close()
}

// connListener serves one net.UDPConn with a goroutine per query, the
// runtime's netpoller doing the waiting. It is the portable path; on
// Linux the epoll loop in udp_linux.go replaces it.
type connListener struct {
	p    *Proxy
	conn *net.UDPConn
}

func (l *connListener) stopReading() { _ = l.conn.SetReadDeadline(time.Unix(1, 0)) }
func (l *connListener) close()       { _ = l.conn.Close() }

func (l *connListener) serve() error {
	p := l.p
	for {
		b := getBuf(smallBuf)
		n, from, err := l.conn.ReadFromUDPAddrPort(*b)
		if err != nil {
			putBuf(b)
			if p.stopping.Load() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Errors such as ENOBUFS concern one packet; keep serving.
			p.log.V(1).Info("Reading a UDP query failed", "error", err.Error())
			continue
		}
		p.m.queries[protoUDP].Inc()
		start := time.Now()
		if n == len(*b) {
			// Larger than any sane query, and cut by the kernel.
			l.replyInPlace(b, n, from, rcodeFormErr, start)
			continue
		}
		if !p.acquire() {
			if reply := p.overloadReply((*b)[:n], *b); reply != nil {
				_, _ = l.conn.WriteToUDPAddrPort(reply, from)
				p.observe(reply, start)
			}
			putBuf(b)
			continue
		}
		p.queries.Add(1)
		go l.serveQuery(b, n, from, start)
	}
}

func (l *connListener) serveQuery(b *[]byte, n int, from netip.AddrPort, start time.Time) {
	p := l.p
	defer p.queries.Done()
	reply, rb := p.handle((*b)[:n], protoUDP)
	p.release()
	if reply != nil {
		if _, err := l.conn.WriteToUDPAddrPort(reply, from); err != nil {
			p.log.V(1).Info("Writing a UDP reply failed", "client", from.String(), "error", err.Error())
		}
		p.observe(reply, start)
		putBuf(rb)
	}
	putBuf(b)
}

// replyInPlace answers the query in b with an error rcode, writing the
// reply over the query, without forwarding.
func (l *connListener) replyInPlace(b *[]byte, n int, from netip.AddrPort, rcode int, start time.Time) {
	defer putBuf(b)
	if reply := l.p.errorReplyFor((*b)[:n], *b, rcode); reply != nil {
		_, _ = l.conn.WriteToUDPAddrPort(reply, from)
		l.p.observe(reply, start)
	}
}

// errorReplyFor writes into buf an error reply with rcode to msg (or
// NOTIMP or FORMERR if msg calls for it) and returns it, or nil when msg is
// to be dropped. buf may be the buffer that holds msg: the reply is written
// over the query.
func (p *Proxy) errorReplyFor(msg, buf []byte, rcode int) []byte {
	var q query
	switch err := parseQuery(msg, &q); err {
	case errShortMessage, errNotQuery:
		p.m.dropped.Inc()
		return nil
	case errNotImplemented:
		rcode = rcodeNotImp
	case errFormat:
		rcode = rcodeFormErr
	}
	return errorReply(buf, msg, &q, rcode)
}

// overloadReply is errorReplyFor a query over the in-flight bound: SERVFAIL
// unless msg calls for another rcode or for no reply.
func (p *Proxy) overloadReply(msg, buf []byte) []byte {
	reply := p.errorReplyFor(msg, buf, rcodeServFail)
	if reply != nil && reply[3]&rcodeMask == rcodeServFail {
		p.m.servfails[causeInFlightLimit].Inc()
	}
	return reply
}
