package dnsproxy

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"
)

// This file talks to upstreams. Every attempt opens a new socket, so every
// attempt leaves from a new ephemeral source port: conntrack sees a new
// 5-tuple and makes a new NAT decision (for a Service VIP, a new backend).
// A pooled or long-lived upstream socket is exactly what pins a client to
// a dead DNS server (see docs/dns-proxy.md); do not add one.

// exchangeUDP sends msg (whose ID is already the upstream ID id) to up from
// a fresh UDP socket and reads replies into buf until one answers the
// query or deadline passes. Replies that do not match are ignored, as a
// spoofed or late packet would be, and counted in ignored. It returns the
// reply length; a reply that does not fit buf is reported as errTruncated,
// as is one with TC.
func exchangeUDP(up netip.AddrPort, msg []byte, q *query, id uint16, buf []byte, deadline time.Time) (n, ignored int, err error) {
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(up))
	if err != nil {
		return 0, 0, classify(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(deadline); err != nil {
		return 0, 0, classify(err)
	}
	if _, err := conn.Write(msg); err != nil {
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

// exchangeTCP sends msg to up over a new TCP connection and returns the
// reply, read into buf (which must hold 65535 bytes).
func exchangeTCP(up netip.AddrPort, msg []byte, q *query, id uint16, buf []byte, deadline time.Time) (int, error) {
	d := net.Dialer{Deadline: deadline}
	conn, err := d.Dial("tcp", up.String())
	if err != nil {
		return 0, classify(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(deadline); err != nil {
		return 0, classify(err)
	}
	if err := writeTCPMessage(conn, msg, buf); err != nil {
		return 0, classify(err)
	}
	n, err := readTCPMessage(conn, buf)
	if err != nil {
		return 0, classify(err)
	}
	if !checkReply(msg, q, id, buf[:n]) {
		return 0, errBadReply
	}
	return n, nil
}

// writeTCPMessage writes msg with its 2-byte length prefix in one write,
// staging it in scratch when it fits (RFC 7766 8: avoid splitting).
func writeTCPMessage(w io.Writer, msg, scratch []byte) error {
	if len(msg)+2 <= len(scratch) {
		binary.BigEndian.PutUint16(scratch, uint16(len(msg)))
		copy(scratch[2:], msg)
		_, err := w.Write(scratch[:len(msg)+2])
		return err
	}
	var l [2]byte
	binary.BigEndian.PutUint16(l[:], uint16(len(msg)))
	if _, err := w.Write(l[:]); err != nil {
		return err
	}
	_, err := w.Write(msg)
	return err
}

// readTCPMessage reads one length-prefixed message into buf.
func readTCPMessage(r io.Reader, buf []byte) (int, error) {
	var l [2]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return 0, err
	}
	n := int(binary.BigEndian.Uint16(l[:]))
	if n < headerLen || n > len(buf) {
		return 0, errBadReply
	}
	if _, err := io.ReadFull(r, buf[:n]); err != nil {
		return 0, err
	}
	return n, nil
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
