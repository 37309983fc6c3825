package dnsproxy

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// FuzzHandlePacket feeds arbitrary client packets through the packet path
// (parse, forward to a live loopback upstream, relay or error reply) over
// both transports. It must never panic, must leave the packet as it found
// it, and must answer only with a response carrying the client's ID.
func FuzzHandlePacket(f *testing.F) {
	for _, m := range []*dns.Msg{
		question("fuzz.upstream.test", dns.TypeA),
		question("fuzz.upstream.test", dns.TypeAAAA),
		func() *dns.Msg { m := question("edns.upstream.test", dns.TypeTXT); m.SetEdns0(4096, true); return m }(),
		func() *dns.Msg { m := question(".", dns.TypeNS); m.Opcode = dns.OpcodeStatus; return m }(),
	} {
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)-3])
		f.Add(append(b, 0))
	}
	f.Add([]byte{})
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1})
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 1, 0, 0, 41, 16, 0, 0, 0, 0, 0, 0, 0xff})

	up := startUpstream(f, "127.0.0.2", nil)
	p, err := New(Config{
		Listen:    "127.0.0.1:0",
		Upstreams: []netip.AddrPort{up.addr},
		Timeout:   time.Second, Deadline: time.Second,
	}, testLoggerF(f), nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, packet []byte) {
		for _, proto := range []int{protoUDP, protoTCP} {
			msg := append([]byte(nil), packet...)
			reply, b := p.handle(msg, proto)
			if !bytes.Equal(msg, packet) {
				t.Fatalf("handle changed the client's packet")
			}
			if reply == nil {
				continue
			}
			if len(reply) < headerLen || binary.BigEndian.Uint16(reply) != binary.BigEndian.Uint16(packet) || reply[2]&0x80 == 0 {
				t.Fatalf("reply %x is not a response to %x", reply, packet)
			}
			if cq := (query{}); proto == protoUDP && parseQuery(packet, &cq) == nil && len(reply) > cq.udpSize {
				t.Fatalf("UDP reply of %d bytes exceeds the client's %d", len(reply), cq.udpSize)
			}
			putBuf(b)
		}
	})
}

// FuzzUpstreamReply feeds arbitrary upstream replies to the reply checks
// and the cache, which read untrusted bytes.
func FuzzUpstreamReply(f *testing.F) {
	q := question("reply.upstream.test", dns.TypeA)
	r := new(dns.Msg)
	r.SetRcode(q, dns.RcodeNameError)
	r.Ns = []dns.RR{soa(60, 30)}
	nx, _ := r.Pack()
	f.Add(nx)
	r = new(dns.Msg)
	r.SetReply(q)
	r.Answer = []dns.RR{aRecord("reply.upstream.test", 60)}
	r.SetEdns0(1232, false)
	ok, _ := r.Pack()
	f.Add(ok)
	f.Add(ok[:len(ok)-5])
	msg, _ := q.Pack()
	var pq query
	if err := parseQuery(msg, &pq); err != nil {
		f.Fatal(err)
	}
	var kb [keyLen]byte
	key := cacheKey(&kb, msg, &pq)
	f.Fuzz(func(t *testing.T, reply []byte) {
		checkReply(msg, &pq, q.Id, reply)
		c := newCache(1)
		c.put(key, reply)
		dst := make([]byte, 65536)
		if n := c.get(key, dst, 65535); n != 0 && n != len(reply) {
			t.Fatalf("cache returned %d bytes for a %d-byte reply", n, len(reply))
		}
		if out, ok := truncateReply(reply, 512, make([]byte, 4096)); ok && len(out) > 512 {
			t.Fatalf("truncated to %d bytes, want at most 512", len(out))
		}
	})
}
