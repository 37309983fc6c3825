package dnsproxy

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"
)

// This file talks to upstreams. Every attempt leaves from a new ephemeral
// source port (here a new socket; the Linux poll loop also reuses answered
// sockets after a disconnect releases their port, see spareSockets):
// conntrack sees a new 5-tuple and makes a new NAT decision (for a Service
// VIP, a new backend). A socket that keeps its port across attempts,
// pooled or long-lived, is exactly what pins a client to a dead DNS server
// (see docs/dns-proxy.md); do not add one.

// dialUDPConn opens a new UDP socket connected to up, so the kernel picks
// a fresh ephemeral port and delivers only up's packets and ICMP errors,
// and sends msg (whose ID is already the attempt's).
func dialUDPConn(up netip.AddrPort, msg []byte) (*net.UDPConn, error) {
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(up))
	if err != nil {
		return nil, classify(err)
	}
	if _, err := conn.Write(msg); err != nil {
		conn.Close()
		return nil, classify(err)
	}
	return conn, nil
}

// readUDPReply reads replies into buf until one answers the query msg sent
// with message ID id, or deadline passes. Replies that do not match are
// ignored, as a spoofed or late packet would be, and counted in ignored.
// It returns the reply length; a reply that does not fit buf is reported
// as errTruncated, as is one with TC.
func readUDPReply(conn *net.UDPConn, msg []byte, q *query, id uint16, buf []byte, deadline time.Time) (n, ignored int, err error) {
	if err := conn.SetReadDeadline(deadline); err != nil {
		return 0, 0, classify(err)
	}
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return 0, ignored, classify(err)
		}
		if !checkReply(msg, q, id, buf[:n]) {
			ignored++
			continue
		}
		if n == len(buf) || binary.BigEndian.Uint16(buf[2:])&flagTC != 0 {
			return n, ignored, errTruncated
		}
		return n, ignored, nil
	}
}

// frameTCP writes msg with its 2-byte length prefix and message ID id into
// buf (a new slice when it does not fit), so an attempt's goroutine sends
// its own copy of the query.
func frameTCP(msg []byte, id uint16, buf []byte) []byte {
	if len(msg)+2 > len(buf) {
		buf = make([]byte, len(msg)+2)
	}
	binary.BigEndian.PutUint16(buf, uint16(len(msg)))
	copy(buf[2:], msg)
	binary.BigEndian.PutUint16(buf[2:], id)
	return buf[:len(msg)+2]
}

// exchangeTCP sends framed (from frameTCP) to up over a new TCP connection
// and returns the reply to msg, (*b)[:n], in a pooled buffer of its size
// (nil on error). Cancelling ctx ends it at once.
func exchangeTCP(ctx context.Context, up netip.AddrPort, framed, msg []byte, q *query, id uint16, deadline time.Time) (*[]byte, int, error) {
	d := net.Dialer{Deadline: deadline}
	conn, err := d.DialContext(ctx, "tcp", up.String())
	if err != nil {
		return nil, 0, classify(err)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	defer conn.Close()
	if err := conn.SetDeadline(deadline); err != nil {
		return nil, 0, classify(err)
	}
	if _, err := conn.Write(framed); err != nil {
		return nil, 0, classify(err)
	}
	b, n, err := readTCPMessage(conn)
	if err != nil {
		return nil, 0, classify(err)
	}
	if !checkReply(msg, q, id, (*b)[:n]) {
		putBuf(b)
		return nil, 0, errBadReply
	}
	return b, n, nil
}

// readTCPMessage reads one length-prefixed message into a pooled buffer of
// its size, (*b)[:n], so that a connection waiting for a message holds
// none.
func readTCPMessage(r io.Reader) (b *[]byte, n int, err error) {
	var l [2]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, 0, err
	}
	n = int(binary.BigEndian.Uint16(l[:]))
	if n < headerLen {
		return nil, 0, errBadReply
	}
	b = getBuf(n)
	if _, err := io.ReadFull(r, (*b)[:n]); err != nil {
		putBuf(b)
		return nil, 0, err
	}
	return b, n, nil
}

// classify maps a socket error to the package's upstream errors.
func classify(err error) error {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return errUpstreamTimeout
	case errors.Is(err, syscall.ECONNREFUSED):
		return errUpstreamRefused
	case errors.Is(err, errBadReply), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return errBadReply
	}
	return err
}
