package dnsproxy

import (
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// cacheFixture packs a query and a reply to it built by edit.
func cacheFixture(t *testing.T, name string, edit func(q, r *dns.Msg)) (key, reply []byte) {
	t.Helper()
	q := question(name, dns.TypeA)
	r := new(dns.Msg)
	r.SetReply(q)
	edit(q, r)
	msg := pack(t, q)
	var pq query
	if err := parseQuery(msg, &pq); err != nil {
		t.Fatal(err)
	}
	var kb [keyLen]byte
	return append([]byte(nil), cacheKey(&kb, msg, &pq)...), pack(t, r)
}

func soa(ttl, minimum uint32) *dns.SOA {
	return &dns.SOA{Hdr: rrHeader("example.test.", dns.TypeSOA, ttl), Ns: "ns.example.test.", Mbox: "admin.example.test.", Serial: 1, Refresh: 60, Retry: 60, Expire: 600, Minttl: minimum}
}

func aRecord(name string, ttl uint32) *dns.A {
	return &dns.A{Hdr: rrHeader(dns.Fqdn(name), dns.TypeA, ttl), A: net.IPv4(198, 51, 100, 7)}
}

func TestCacheHonoursTTLs(t *testing.T) {
	tests := map[string]struct {
		edit     func(q, r *dns.Msg)
		wantLife time.Duration // 0: not cached
	}{
		"smallest TTL of the answer": {edit: func(_, r *dns.Msg) {
			r.Answer = []dns.RR{aRecord("a.example.test", 300), aRecord("a.example.test", 120)}
		}, wantLife: 120 * time.Second},
		"additional records count": {edit: func(_, r *dns.Msg) {
			r.Answer = []dns.RR{aRecord("a.example.test", 300)}
			r.Extra = []dns.RR{aRecord("b.example.test", 30)}
		}, wantLife: 30 * time.Second},
		"OPT record ignored": {edit: func(q, r *dns.Msg) {
			q.SetEdns0(1232, true) // DO sets a bit in the OPT "TTL"
			r.SetEdns0(1232, true)
			r.Answer = []dns.RR{aRecord("a.example.test", 90)}
		}, wantLife: 90 * time.Second},
		"positive capped at an hour": {edit: func(_, r *dns.Msg) {
			r.Answer = []dns.RR{aRecord("a.example.test", 86400)}
		}, wantLife: time.Hour},
		"NXDOMAIN: SOA minimum below its TTL": {edit: func(_, r *dns.Msg) {
			r.Rcode = dns.RcodeNameError
			r.Ns = []dns.RR{soa(300, 45)}
		}, wantLife: 45 * time.Second},
		"NODATA: SOA TTL below its minimum": {edit: func(_, r *dns.Msg) {
			r.Ns = []dns.RR{soa(20, 900)}
		}, wantLife: 20 * time.Second},
		"negative capped at 5 minutes": {edit: func(_, r *dns.Msg) {
			r.Rcode = dns.RcodeNameError
			r.Ns = []dns.RR{soa(3600, 3600)}
		}, wantLife: 5 * time.Minute},
		"NXDOMAIN without SOA": {edit: func(_, r *dns.Msg) {
			r.Rcode = dns.RcodeNameError
		}},
		"referral (NS, no SOA)": {edit: func(_, r *dns.Msg) {
			r.Ns = []dns.RR{&dns.NS{Hdr: rrHeader("example.test.", dns.TypeNS, 300), Ns: "ns.example.test."}}
		}},
		"SERVFAIL": {edit: func(_, r *dns.Msg) { r.Rcode = dns.RcodeServerFailure }},
		"REFUSED":  {edit: func(_, r *dns.Msg) { r.Rcode = dns.RcodeRefused }},
		"truncated": {edit: func(_, r *dns.Msg) {
			r.Truncated = true
			r.Answer = []dns.RR{aRecord("a.example.test", 300)}
		}},
		"TTL 0": {edit: func(_, r *dns.Msg) { r.Answer = []dns.RR{aRecord("a.example.test", 0)} }},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			now := time.Unix(1_700_000_000, 0)
			c := newCache(4)
			c.now = func() time.Time { return now }
			key, reply := cacheFixture(t, "a.example.test", tc.edit)
			c.put(key, reply)
			dst := make([]byte, 4096)
			if tc.wantLife == 0 {
				if n := c.get(key, dst, 4096); n != 0 {
					t.Fatal("reply was cached")
				}
				return
			}
			now = now.Add(tc.wantLife - time.Second)
			n := c.get(key, dst, 4096)
			if n == 0 {
				t.Fatalf("not cached for %s", tc.wantLife-time.Second)
			}
			var got, orig dns.Msg
			if err := got.Unpack(dst[:n]); err != nil {
				t.Fatal(err)
			}
			if err := orig.Unpack(reply); err != nil {
				t.Fatal(err)
			}
			age := uint32(tc.wantLife/time.Second) - 1
			for i, rr := range append(append(got.Answer, got.Ns...), got.Extra...) {
				want := append(append(orig.Answer, orig.Ns...), orig.Extra...)[i].Header().Ttl
				if rr.Header().Rrtype == dns.TypeOPT {
					if rr.Header().Ttl != want {
						t.Errorf("OPT flags changed: %x, want %x", rr.Header().Ttl, want)
					}
					continue
				}
				if rr.Header().Ttl != want-min(want, age) {
					t.Errorf("%s: TTL %d after %ds, want %d", rr.Header().Name, rr.Header().Ttl, age, want-min(want, age))
				}
			}
			now = now.Add(time.Second)
			if n := c.get(key, dst, 4096); n != 0 {
				t.Fatalf("still cached after %s", tc.wantLife)
			}
			if c.len() != 0 {
				t.Errorf("expired entry kept")
			}
		})
	}
}

func TestCacheKeyAndBounds(t *testing.T) {
	c := newCache(2)
	answer := func(_, r *dns.Msg) { r.Answer = []dns.RR{aRecord(r.Question[0].Name, 300)} }
	k1, r1 := cacheFixture(t, "one.example.test", answer)
	k2, r2 := cacheFixture(t, "two.example.test", answer)
	k3, r3 := cacheFixture(t, "three.example.test", answer)
	kUpper, _ := cacheFixture(t, "ONE.Example.TEST", answer)
	kDO, _ := cacheFixture(t, "one.example.test", func(q, r *dns.Msg) { q.SetEdns0(1232, true) })
	dst := make([]byte, 4096)
	c.put(k1, r1)
	if c.get(kUpper, dst, 4096) == 0 {
		t.Error("name case changed the key")
	}
	if c.get(kDO, dst, 4096) != 0 {
		t.Error("a DO query was answered from a non-DNSSEC entry")
	}
	if c.get(k1, dst, len(r1)-1) != 0 {
		t.Error("served a reply larger than the client takes")
	}
	c.put(k2, r2)
	c.get(k1, dst, 4096) // one is now the most recently used
	c.put(k3, r3)
	if c.len() != 2 {
		t.Fatalf("cache holds %d entries, want its bound 2", c.len())
	}
	if c.get(k2, dst, 4096) != 0 || c.get(k1, dst, 4096) == 0 || c.get(k3, dst, 4096) == 0 {
		t.Error("the least recently used entry was not the one evicted")
	}
	big := make([]byte, maxCachedReply+1)
	copy(big, r1)
	c.put(k1, big)
	if n := c.get(k1, dst, 65535); n == len(big) {
		t.Error("a reply over the size limit was cached")
	}
}
