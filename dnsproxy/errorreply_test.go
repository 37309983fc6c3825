package dnsproxy

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// rcodeFirst answers the first n queries with rcode and the rest like
// answerAddress: a backend in error for some attempts.
func rcodeFirst(n int32, rcode int) dns.HandlerFunc {
	var seen atomic.Int32
	return func(w dns.ResponseWriter, r *dns.Msg) {
		if seen.Add(1) <= n {
			m := new(dns.Msg)
			m.SetRcode(r, rcode)
			_ = w.WriteMsg(m)
			return
		}
		answerAddress(w, r)
	}
}

// TestErrorReplyEndsTheAttemptNotTheQuery: a SERVFAIL or REFUSED from one
// attempt does not reach the client while another attempt may answer;
// the next attempt goes out at once (well before the minute-long hedge
// delay), and NXDOMAIN and NOERROR stay final.
func TestErrorReplyEndsTheAttemptNotTheQuery(t *testing.T) {
	for path, portable := range udpPaths {
		for _, tc := range []struct {
			rcode  int
			reason string
		}{{dns.RcodeRefused, "refused_reply"}, {dns.RcodeServerFailure, "servfail"}} {
			t.Run(path+"/"+dns.RcodeToString[tc.rcode], func(t *testing.T) {
				up := startUpstream(t, "127.0.0.2", rcodeFirst(2, tc.rcode))
				p := startProxy(t, Config{
					Upstreams: []netip.AddrPort{up.addr}, Timeout: time.Minute, Deadline: time.Minute,
					HedgeDelayMin: time.Minute, HedgeDelayMax: time.Minute,
				}, portable)
				r := exchange(t, "udp", p.addr, question("erring.upstream.test", dns.TypeA))
				if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
					t.Fatalf("rcode %s answers %d, want the third attempt's answer", dns.RcodeToString[r.Rcode], len(r.Answer))
				}
				ports, _, _, _ := up.seen()
				if len(ports) != 3 || distinct(ports) != 3 {
					t.Errorf("upstream saw source ports %v, want 3 attempts, each from its own socket", ports)
				}
				p.wantCounter(t, 2, "netguard_dnsproxy_upstream_errors_total", "reason", tc.reason)
				p.wantCounter(t, 1, "netguard_dnsproxy_error_replies_replaced_total")
				p.wantCounter(t, 1, "netguard_dnsproxy_responses_total", "rcode", "NOERROR")
				p.wantCounter(t, 0, "netguard_dnsproxy_servfail_total", "cause", "upstream")
			})
		}
		t.Run(path+"/NXDOMAIN is final", func(t *testing.T) {
			up := startUpstream(t, "127.0.0.2", rcodeFirst(1, dns.RcodeNameError))
			p := startProxy(t, Config{Upstreams: []netip.AddrPort{up.addr}}, portable)
			if r := exchange(t, "udp", p.addr, question("missing.upstream.test", dns.TypeA)); r.Rcode != dns.RcodeNameError {
				t.Fatalf("rcode %s, want NXDOMAIN", dns.RcodeToString[r.Rcode])
			}
			if got := up.count(); got != 1 {
				t.Errorf("upstream got %d attempts, want 1", got)
			}
		})
	}
}

// TestEveryUpstreamErringGetsTheErrorPromptly: when every attempt gets an
// error reply, the client gets that error once the budget has held the
// next attempt back for one budget wait, not SERVFAIL at the deadline (a
// minute here, past the client's 5 s timeout), and error replies earn no
// budget.
func TestEveryUpstreamErringGetsTheErrorPromptly(t *testing.T) {
	for path, portable := range udpPaths {
		t.Run(path, func(t *testing.T) {
			up := startUpstream(t, "127.0.0.2", rcodeFirst(1<<30, dns.RcodeRefused))
			p := startProxy(t, Config{
				Upstreams: []netip.AddrPort{up.addr}, Timeout: time.Minute, Deadline: time.Minute,
				HedgeDelayMin: 10 * time.Millisecond, HedgeDelayMax: 10 * time.Millisecond,
			}, portable)
			const queries = 60 // with 2 extra attempts each, more than the budget saves
			start := time.Now()
			var wg sync.WaitGroup
			for i := range queries {
				wg.Go(func() {
					q := question(fmt.Sprintf("refused%d.upstream.test", i), dns.TypeA) // distinct: identical queries in flight share attempts
					r, err := tryExchange("udp", p.addr, q)
					if err != nil || r.Rcode != dns.RcodeRefused || r.Id != q.Id {
						t.Errorf("query %d: %v, %v; want REFUSED with id %d", i, r, err, q.Id)
					}
				})
			}
			wg.Wait()
			// Queries make extra attempts until the budget (budgetBurst
			// saved, budgetMinRate per second, no answer refills it) runs
			// out; then one attempt per query.
			got := up.count()
			bound := queries + budgetBurst + int(time.Since(start).Seconds()*budgetMinRate) + 1
			t.Logf("%d queries answered REFUSED after %d attempts (bound %d)", queries, got, bound)
			if got > bound || got <= queries {
				t.Errorf("%d attempts, want more than %d (extra attempts from the saved budget) and at most %d", got, queries, bound)
			}
			p.wantCounter(t, float64(got), "netguard_dnsproxy_upstream_errors_total", "reason", "refused_reply")
			p.wantCounter(t, queries, "netguard_dnsproxy_responses_total", "rcode", "REFUSED")
			p.wantCounter(t, 0, "netguard_dnsproxy_error_replies_replaced_total")
			if hd := p.policy.hedgeDelay(); hd != 10*time.Millisecond {
				t.Errorf("hedge delay %s: error replies must not be latency samples", hd)
			}
			p.policy.mu.Lock()
			tokens := p.policy.tokens
			p.policy.mu.Unlock()
			if tokens > budgetBurst-float64(got-queries)+budgetMinRate*60 {
				t.Errorf("answer budget %v after %d extra attempts: error replies earned some", tokens, got-queries)
			}
		})
	}
}
