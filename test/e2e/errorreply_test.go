package e2e

import (
	"testing"

	"github.com/miekg/dns"
)

// TestVIPOneBackendAnswersErrors: one of two backends answers every query
// at once with an error (REFUSED: a CoreDNS pod at its max_concurrent
// limit; SERVFAIL: one whose upstream broke). The error ends the attempt,
// not the lookup: the next attempt goes out at once, and the client gets
// the healthy backend's answer. When the first reply won, 501 of 1000
// lookups were answered under REFUSED, 494 under SERVFAIL. Every attempt
// leaves from a new port here (no warm ports, which would keep most first
// attempts off the erring backend), so half the first attempts meet it.
func TestVIPOneBackendAnswersErrors(t *testing.T) {
	for _, rcode := range []int{dns.RcodeRefused, dns.RcodeServerFailure} {
		name := dns.RcodeToString[rcode]
		t.Run(name, func(t *testing.T) {
			c := newVIPClusterOf(t, "e"+name[:1], []backend{{rcode: rcode}, {}}, "--warm-port-age", "0")
			s, queries := c.lookupCounted(lookups, lookupsInFlight, 0)
			replaced := c.metric("netguard_dnsproxy_error_replies_replaced_total")
			t.Logf("one backend answering %s: %d of %d lookups answered; %v error replies replaced by a good answer; %.2f upstream queries per lookup",
				name, s.answered, lookups, replaced, float64(sum(queries))/lookups)
			if s.answered < lookups-1 {
				t.Errorf("%d of %d lookups answered, want at least %d", s.answered, lookups, lookups-1)
			}
			silentShare(t, queries, 1, 0.25)
			if replaced < 100 {
				t.Errorf("%v error replies replaced, want hundreds (half the first attempts meet the erring backend)", replaced)
			}
		})
	}
}
