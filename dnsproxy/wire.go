package dnsproxy

import "encoding/binary"

// This file reads just enough of the DNS wire format (RFC 1035 4.1) to
// forward a message without unpacking it: the header, the question, and a
// walk over the resource records to find the OPT record (RFC 6891) and
// the TTL fields. Upstream bytes are relayed as they came, after checking
// that they answer the query that was sent.

const (
	headerLen = 12
	maxName   = 255 // RFC 1035 2.3.4, in wire bytes
	// minUDPSize is the payload every DNS client accepts over UDP.
	minUDPSize = 512
	// ourUDPSize is advertised in the OPT records the forwarder writes
	// itself (error replies): the DNS flag day 2020 value.
	ourUDPSize = 1232

	flagQR     = 1 << 15
	flagAA     = 1 << 10
	flagTC     = 1 << 9
	flagRD     = 1 << 8
	flagRA     = 1 << 7
	flagCD     = 1 << 4
	opcodeMask = 0xf << 11
	rcodeMask  = 0xf

	typeSOA = 6
	typeOPT = 41

	rcodeSuccess  = 0
	rcodeFormErr  = 1
	rcodeServFail = 2
	rcodeNXDomain = 3
	rcodeNotImp   = 4
	rcodeRefused  = 5
)

// query is what the forwarder needs to know about a client's query.
type query struct {
	// id is the client's message ID, restored on the reply.
	id uint16
	// flags is the header's second 16 bits.
	flags uint16
	// qEnd is the offset just past the question section.
	qEnd int
	// hasOPT says the query carries an EDNS0 OPT record.
	hasOPT bool
	// do is the EDNS0 DNSSEC OK bit.
	do bool
	// udpSize is the largest UDP reply the client accepts: 512 without
	// EDNS0, else the OPT record's payload size (at least 512).
	udpSize int
}

// parseQuery reads the header and question of msg and looks for an OPT
// record. Its error says what to do: errShortMessage and errNotQuery mean
// drop, errNotImplemented means NOTIMP, errFormat means FORMERR (with the
// question echoed when q.qEnd > 0).
func parseQuery(msg []byte, q *query) error {
	*q = query{udpSize: minUDPSize}
	if len(msg) < headerLen {
		return errShortMessage
	}
	q.id = binary.BigEndian.Uint16(msg)
	q.flags = binary.BigEndian.Uint16(msg[2:])
	if q.flags&flagQR != 0 {
		return errNotQuery
	}
	if q.flags&opcodeMask != 0 {
		return errNotImplemented
	}
	if binary.BigEndian.Uint16(msg[4:]) != 1 {
		return errFormat
	}
	end, ok := questionEnd(msg)
	if !ok {
		return errFormat
	}
	q.qEnd = end
	an := int(binary.BigEndian.Uint16(msg[6:]))
	ns := int(binary.BigEndian.Uint16(msg[8:]))
	ar := int(binary.BigEndian.Uint16(msg[10:]))
	if an+ns+ar == 0 {
		if end != len(msg) {
			return errFormat
		}
		return nil
	}
	off := end
	for i := 0; i < an+ns+ar; i++ {
		r, next, ok := nextRecord(msg, off)
		if !ok {
			return errFormat
		}
		if i >= an+ns && r.typ == typeOPT {
			if q.hasOPT || r.nameLen != 1 {
				return errFormat // RFC 6891 6.1.1: one OPT, owner is the root
			}
			q.hasOPT = true
			q.udpSize = max(minUDPSize, int(r.class))
			q.do = msg[r.ttlOff+2]&0x80 != 0
		}
		off = next
	}
	if off != len(msg) {
		return errFormat
	}
	return nil
}

// questionEnd returns the offset just past the one question at offset 12:
// an uncompressed name (a pointer in a query's only question cannot point
// anywhere valid), then type and class.
func questionEnd(msg []byte) (int, bool) {
	off := headerLen
	for {
		if off >= len(msg) {
			return 0, false
		}
		l := int(msg[off])
		if l == 0 {
			off++
			break
		}
		if l&0xc0 != 0 {
			return 0, false
		}
		off += 1 + l
		if off-headerLen >= maxName {
			return 0, false
		}
	}
	off += 4
	if off > len(msg) {
		return 0, false
	}
	return off, true
}

// record locates one resource record's fields in a message.
type record struct {
	typ     uint16
	class   uint16
	nameLen int // wire length of the owner name where it is written
	ttlOff  int
	rdOff   int
	rdLen   int
}

// nextRecord reads the resource record at off and returns the offset of
// the next one. Compression pointers end a name; they are not followed,
// since only the record's extent is needed.
func nextRecord(msg []byte, off int) (record, int, bool) {
	start := off
	for {
		if off >= len(msg) {
			return record{}, 0, false
		}
		l := int(msg[off])
		if l == 0 {
			off++
			break
		}
		if l&0xc0 == 0xc0 {
			off += 2
			break
		}
		if l&0xc0 != 0 {
			return record{}, 0, false
		}
		off += 1 + l
		if off-start >= maxName {
			return record{}, 0, false
		}
	}
	if off+10 > len(msg) {
		return record{}, 0, false
	}
	r := record{
		typ:     binary.BigEndian.Uint16(msg[off:]),
		class:   binary.BigEndian.Uint16(msg[off+2:]),
		nameLen: off - start,
		ttlOff:  off + 4,
		rdLen:   int(binary.BigEndian.Uint16(msg[off+8:])),
		rdOff:   off + 10,
	}
	next := r.rdOff + r.rdLen
	if next > len(msg) {
		return record{}, 0, false
	}
	return r, next, true
}

// checkReply reports whether reply answers the query msg (parsed into q)
// sent upstream with message ID id: RFC 5452 matching on ID, QR, opcode and
// the question, the name compared case-insensitively.
// isErrorReply reports whether reply, a valid reply, is SERVFAIL or REFUSED:
// an error of the backend that sent it, which another backend may not
// have. Every other rcode, NXDOMAIN included, is the answer.
func isErrorReply(reply []byte) bool {
	rc := reply[3] & rcodeMask
	return rc == rcodeServFail || rc == rcodeRefused
}

func checkReply(msg []byte, q *query, id uint16, reply []byte) bool {
	if len(reply) < headerLen || binary.BigEndian.Uint16(reply) != id {
		return false
	}
	flags := binary.BigEndian.Uint16(reply[2:])
	if flags&flagQR == 0 || flags&opcodeMask != q.flags&opcodeMask {
		return false
	}
	switch binary.BigEndian.Uint16(reply[4:]) {
	case 1:
	case 0:
		// Servers may leave the question out of an error they cannot tie
		// to one (RFC 6891 7, RFC 1035 4.1.1).
		rc := flags & rcodeMask
		return rc == rcodeFormErr || rc == rcodeServFail || rc == rcodeNotImp || rc == rcodeRefused
	default:
		return false
	}
	if len(reply) < q.qEnd {
		return false
	}
	return sameQuestion(msg[headerLen:q.qEnd], reply[headerLen:q.qEnd])
}

// sameQuestion compares two wire questions: the name ASCII
// case-insensitively (resolvers may randomise case, and servers should
// echo it), type and class exactly.
func sameQuestion(a, b []byte) bool {
	n := len(a) - 4
	for i := range n {
		x, y := a[i], b[i]
		if x != y && lower(x) != lower(y) {
			return false
		}
	}
	return string(a[n:]) == string(b[n:])
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + ('a' - 'A')
	}
	return c
}

// errorReply writes into dst a reply to msg with rcode: the header with QR
// and RA set, the opcode, RD and CD copied, the question echoed when it
// parsed (q.qEnd > 0), and an OPT record when the query had one (RFC 6891
// 7: a responder that knows EDNS0 answers with it). dst must hold at least
// q.qEnd+11 bytes. It returns the reply.
func errorReply(dst, msg []byte, q *query, rcode int) []byte {
	n := headerLen
	var qd uint16
	if q.qEnd > 0 {
		n = copy(dst, msg[:q.qEnd])
		qd = 1
	} else {
		copy(dst, msg[:headerLen])
	}
	flags := flagQR | flagRA | q.flags&(opcodeMask|flagRD|flagCD) | uint16(rcode)
	binary.BigEndian.PutUint16(dst[2:], flags)
	binary.BigEndian.PutUint16(dst[4:], qd)
	binary.BigEndian.PutUint16(dst[6:], 0)
	binary.BigEndian.PutUint16(dst[8:], 0)
	binary.BigEndian.PutUint16(dst[10:], 0)
	if q.hasOPT && rcode != rcodeFormErr {
		binary.BigEndian.PutUint16(dst[10:], 1)
		opt := dst[n : n+11]
		opt[0] = 0 // root owner
		binary.BigEndian.PutUint16(opt[1:], typeOPT)
		binary.BigEndian.PutUint16(opt[3:], ourUDPSize)
		clear(opt[5:]) // extended rcode, version, flags, rdlength
		n += 11
	}
	return dst[:n]
}
