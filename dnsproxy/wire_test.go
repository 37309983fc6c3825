package dnsproxy

import (
	"encoding/binary"
	"testing"

	"github.com/miekg/dns"
)

func TestParseQuery(t *testing.T) {
	plain := question("www.example.test", dns.TypeA)
	withEDNS := question("www.example.test", dns.TypeA)
	withEDNS.SetEdns0(4096, true)
	smallEDNS := question("www.example.test", dns.TypeA)
	smallEDNS.SetEdns0(100, false)
	twoOPT := question("www.example.test", dns.TypeA)
	twoOPT.SetEdns0(1232, false)
	twoOPT.Extra = append(twoOPT.Extra, twoOPT.Extra[0])
	tests := map[string]struct {
		msg     *dns.Msg
		wantErr error
		want    query
	}{
		"plain":            {msg: plain, want: query{hasOPT: false, udpSize: 512}},
		"EDNS0 with DO":    {msg: withEDNS, want: query{hasOPT: true, do: true, udpSize: 4096}},
		"EDNS0 size < 512": {msg: smallEDNS, want: query{hasOPT: true, udpSize: 512}},
		"two OPT records":  {msg: twoOPT, wantErr: errFormat},
		"response":         {msg: func() *dns.Msg { m := question("a.test", dns.TypeA); m.Response = true; return m }(), wantErr: errNotQuery},
		"opcode NOTIFY":    {msg: func() *dns.Msg { m := question("a.test", dns.TypeSOA); m.Opcode = dns.OpcodeNotify; return m }(), wantErr: errNotImplemented},
		"answer in a query": {msg: func() *dns.Msg {
			m := question("a.test", dns.TypeA)
			m.Answer = []dns.RR{&dns.A{Hdr: rrHeader("a.test.", dns.TypeA, 1)}}
			return m
		}(), want: query{udpSize: 512}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			b := pack(t, tc.msg)
			var q query
			err := parseQuery(b, &q)
			if err != tc.wantErr {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if q.id != tc.msg.Id || q.hasOPT != tc.want.hasOPT || q.do != tc.want.do || q.udpSize != tc.want.udpSize {
				t.Fatalf("got %+v, want %+v", q, tc.want)
			}
			if wantEnd := 12 + len("www.example.test") + 2 + 4; name != "answer in a query" && name != "response" && q.qEnd != wantEnd {
				t.Fatalf("qEnd %d, want %d", q.qEnd, wantEnd)
			}
		})
	}
}

func TestCheckReply(t *testing.T) {
	q := question("Case.Example.Test", dns.TypeA)
	msg := pack(t, q)
	var pq query
	if err := parseQuery(msg, &pq); err != nil {
		t.Fatal(err)
	}
	reply := func(edit func(*dns.Msg)) []byte {
		r := new(dns.Msg)
		r.SetReply(q)
		edit(r)
		return pack(t, r)
	}
	tests := map[string]struct {
		reply []byte
		want  bool
	}{
		"matching":                    {reply: reply(func(*dns.Msg) {}), want: true},
		"name in other case":          {reply: reply(func(r *dns.Msg) { r.Question[0].Name = "case.EXAMPLE.test." }), want: true},
		"other name":                  {reply: reply(func(r *dns.Msg) { r.Question[0].Name = "other.example.test." })},
		"other type":                  {reply: reply(func(r *dns.Msg) { r.Question[0].Qtype = dns.TypeAAAA })},
		"other id":                    {reply: reply(func(r *dns.Msg) { r.Id++ })},
		"not a response":              {reply: reply(func(r *dns.Msg) { r.Response = false })},
		"SERVFAIL without question":   {reply: reply(func(r *dns.Msg) { r.Rcode = dns.RcodeServerFailure; r.Question = nil }), want: true},
		"NOERROR without question":    {reply: reply(func(r *dns.Msg) { r.Question = nil })},
		"shorter than the question":   {reply: reply(func(*dns.Msg) {})[:20]},
		"shorter than a header":       {reply: []byte{1, 2, 3}},
		"type 0x41 vs 0x61 (no fold)": {reply: reply(func(r *dns.Msg) { r.Question[0].Qtype = 0x61 })},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := checkReply(msg, &pq, q.Id, tc.reply); got != tc.want {
				t.Fatalf("checkReply = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestErrorReply(t *testing.T) {
	q := question("err.example.test", dns.TypeAAAA)
	q.CheckingDisabled = true
	q.SetEdns0(4096, false)
	msg := pack(t, q)
	var pq query
	if err := parseQuery(msg, &pq); err != nil {
		t.Fatal(err)
	}
	for _, rcode := range []int{dns.RcodeServerFailure, dns.RcodeFormatError} {
		buf := make([]byte, 4096)
		copy(buf, msg)
		var r dns.Msg
		if err := r.Unpack(errorReply(buf, buf[:len(msg)], &pq, rcode)); err != nil {
			t.Fatalf("%s reply does not parse: %v", dns.RcodeToString[rcode], err)
		}
		if r.Id != q.Id || !r.Response || r.Rcode != rcode || !r.RecursionDesired || !r.CheckingDisabled || len(r.Question) != 1 || r.Question[0] != q.Question[0] {
			t.Fatalf("%s reply %v does not echo the query", dns.RcodeToString[rcode], &r)
		}
		if hasOPT := r.IsEdns0() != nil; hasOPT != (rcode != dns.RcodeFormatError) {
			t.Errorf("%s reply has OPT: %v", dns.RcodeToString[rcode], hasOPT)
		}
		if binary.BigEndian.Uint16(buf[6:]) != 0 {
			t.Errorf("answer count not cleared")
		}
	}
}
