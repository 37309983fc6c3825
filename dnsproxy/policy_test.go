package dnsproxy

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestLatencyBuckets(t *testing.T) {
	prev := -1
	for _, d := range []time.Duration{0, time.Microsecond, 3 * time.Microsecond, 4 * time.Microsecond,
		7 * time.Microsecond, 8 * time.Microsecond, 100 * time.Microsecond, time.Millisecond,
		10 * time.Millisecond, 123 * time.Millisecond, time.Second, 20 * time.Second} {
		b := latencyBucket(d)
		if b < prev {
			t.Errorf("bucket of %s is %d, below the previous %d", d, b, prev)
		}
		prev = b
		upper := latencyBucketUpper(b)
		if upper <= d {
			t.Errorf("bucket %d of %s ends at %s, want above it", b, d, upper)
		}
		// A quarter of an octave wide: the upper bound is at most 25% above
		// any value in the bucket (or 1µs for the smallest).
		if d >= 4*time.Microsecond && upper > d*5/4+time.Microsecond {
			t.Errorf("bucket %d of %s ends at %s, more than 25%% above", b, d, upper)
		}
	}
	if b := latencyBucket(time.Hour); b != latencyBuckets-1 {
		t.Errorf("an hour lands in bucket %d, want the last, %d", b, latencyBuckets-1)
	}
}

func TestLatencyQuantile(t *testing.T) {
	var h latencyHistogram
	if got := h.quantile99(); got != 0 {
		t.Errorf("empty histogram: p99 %s, want 0", got)
	}
	for range 990 {
		h.add(time.Millisecond)
	}
	for range 9 {
		h.add(50 * time.Millisecond)
	}
	// 9 of 999 samples (0.9%) are slow: the 99th percentile is the fast one.
	if got := h.quantile99(); got < time.Millisecond || got > 2*time.Millisecond {
		t.Errorf("p99 with 0.9%% slow samples = %s, want about 1ms", got)
	}
	for range 20 {
		h.add(50 * time.Millisecond)
	}
	// The 1024th sample halved the counts; 1.9% are slow now.
	if h.total >= latencyWindow {
		t.Errorf("total %d, want the counts halved at %d", h.total, latencyWindow)
	}
	if got := h.quantile99(); got < 50*time.Millisecond || got > 63*time.Millisecond {
		t.Errorf("p99 with 2%% slow samples = %s, want about 50ms", got)
	}
}

func TestHedgeDelayFollowsLatencyWithinBounds(t *testing.T) {
	ap := newAttemptPolicy(Config{Timeout: 2 * time.Second, Deadline: 4 * time.Second,
		HedgeDelayMin: 10 * time.Millisecond, HedgeDelayMax: 500 * time.Millisecond, MaxParallelAttempts: 16, HedgeBudget: 4})
	if got := ap.hedgeDelay(); got != 500*time.Millisecond {
		t.Errorf("delay before any answer = %s, want the maximum", got)
	}
	ap.answered(200*time.Microsecond, true)
	if got := ap.hedgeDelay(); got != 10*time.Millisecond {
		t.Errorf("delay after a 200µs answer = %s, want the 10ms minimum", got)
	}
	for range 100 {
		ap.answered(80*time.Millisecond, true)
	}
	if got := ap.hedgeDelay(); got < 80*time.Millisecond || got > 100*time.Millisecond {
		t.Errorf("delay after 80ms answers = %s, want about 80ms", got)
	}
	for range 100 {
		ap.answered(3*time.Second, true)
	}
	if got := ap.hedgeDelay(); got != 500*time.Millisecond {
		t.Errorf("delay after 3s answers = %s, want the 500ms maximum", got)
	}
	// TCP answers earn budget but are no latency samples.
	for range 1000 {
		ap.answered(time.Millisecond, false)
	}
	if got := ap.hedgeDelay(); got != 500*time.Millisecond {
		t.Errorf("delay after TCP answers = %s, want it unchanged", got)
	}
}

func TestAdmit(t *testing.T) {
	ap := newAttemptPolicy(Config{Timeout: time.Second, Deadline: 3 * time.Second,
		HedgeDelayMin: 10 * time.Millisecond, HedgeDelayMax: 10 * time.Millisecond, MaxParallelAttempts: 4, HedgeBudget: 2})
	now := ap.refilled
	// extras counts the attempts admitted to a query that has made sent.
	extras := func(sent int, at time.Time) int {
		n := 0
		for ; n < 1000; n++ {
			if ok, why := ap.admit(sent, 1, at); !ok {
				if why != heldBudget {
					t.Fatalf("held for %d, want the budget", why)
				}
				break
			}
		}
		return n
	}
	if ok, _ := ap.admit(0, 0, now); !ok {
		t.Error("a first attempt was held back")
	}
	if ok, why := ap.admit(1, 4, now); ok || why != heldParallel {
		t.Errorf("a fifth open attempt: admitted %v (%d), want held by the parallel limit", ok, why)
	}
	if ok, why := ap.admit(12, 0, now); ok || why != heldExhausted {
		t.Errorf("a 13th attempt: admitted %v (%d), want held: 4 × ⌈3s/1s⌉ = 12 attempts", ok, why)
	}
	// A query's own share: its second and third attempts, pool or not.
	for sent := 1; sent <= extraPerQuery; sent++ {
		if ok, _ := ap.admit(sent, 1, now); !ok {
			t.Fatalf("attempt %d, within the query's share, held back", sent+1)
		}
	}
	// Beyond it, the pool, which starts with queryPoolStart ...
	if got := extras(1+extraPerQuery, now); got != queryPoolStart {
		t.Fatalf("%d attempts beyond a query's share from a fresh pool, want the %d it starts with", got, queryPoolStart)
	}
	if got := extras(1+extraPerQuery, now); got != 0 {
		t.Fatalf("%d attempts beyond a query's share with the pool empty, want 0", got)
	}
	// ... and holds what queries leave of their shares ...
	ap.finished(1)
	if got := extras(1+extraPerQuery, now); got != extraPerQuery {
		t.Fatalf("%d attempts beyond a share after a query answered at once, want the %d it left", got, extraPerQuery)
	}
	ap.finished(1 + extraPerQuery)
	ap.finished(10)
	if got := extras(1+extraPerQuery, now); got != 0 {
		t.Fatalf("%d attempts beyond a share after queries that used theirs, want 0", got)
	}
	// ... up to querySaved.
	for range 1000 {
		ap.finished(1)
	}
	if ap.queryTokens != querySaved {
		t.Fatalf("query pool %v after 1000 queries answered at once, want the %d it saves", ap.queryTokens, querySaved)
	}
	// The answer budget starts full (budgetBurst); spent, it holds every
	// extra attempt back, within a query's share too ...
	spent := extraPerQuery + queryPoolStart + extraPerQuery
	if got := extras(1, now); got != budgetBurst-spent {
		t.Fatalf("%d extra attempts, want the %d left of the answer budget", got, budgetBurst-spent)
	}
	// ... until an answer earns HedgeBudget (2) ...
	ap.answered(time.Millisecond, true)
	if got := extras(1, now); got != 2 {
		t.Fatalf("%d extra attempts after one answer, want 2", got)
	}
	// ... or time refills budgetMinRate per second.
	if got := extras(1, now.Add(time.Second)); got != budgetMinRate {
		t.Fatalf("%d extra attempts a second later, want %d", got, budgetMinRate)
	}
	// Time refills the answer budget, never the query pool.
	ap.queryTokens = 0
	if got := extras(1+extraPerQuery, now.Add(time.Hour)); got != 0 {
		t.Fatalf("%d attempts beyond a query's share an hour after the pool was spent, want 0", got)
	}
}

// dropFirst answers like answerAddress except the first n queries, which it
// never answers (a silent backend behind a VIP, for those attempts).
func dropFirst(n int32) dns.HandlerFunc {
	var seen atomic.Int32
	return func(w dns.ResponseWriter, r *dns.Msg) {
		if seen.Add(1) <= n {
			return
		}
		answerAddress(w, r)
	}
}

// TestHedgedAttempts: while no answer comes, another attempt leaves from a
// new source port every hedge delay, long before the first attempt's timeout,
// and the first valid answer wins.
func TestHedgedAttempts(t *testing.T) {
	for path, portable := range udpPaths {
		t.Run(path, func(t *testing.T) {
			// A lone query may make three attempts (the query budget).
			up := startUpstream(t, "127.0.0.2", dropFirst(2))
			p := startProxy(t, Config{
				Upstreams: []netip.AddrPort{up.addr},
				// Timeouts the test would notice: only hedging answers in time.
				Timeout: time.Minute, Deadline: time.Minute,
				HedgeDelayMin: 20 * time.Millisecond, HedgeDelayMax: 20 * time.Millisecond,
			}, portable)
			r := exchange(t, "udp", p.addr, question("hedged.upstream.test", dns.TypeA))
			if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
				t.Fatalf("rcode %s answers %d, want the answer to the third attempt", dns.RcodeToString[r.Rcode], len(r.Answer))
			}
			ports, _, _, _ := up.seen()
			if len(ports) != 3 || distinct(ports) != len(ports) {
				t.Errorf("upstream saw source ports %v, want 3 attempts, each from its own socket", ports)
			}
			p.wantCounter(t, float64(len(ports)-1), "netguard_dnsproxy_hedged_attempts_total")
			p.wantCounter(t, 1, "netguard_dnsproxy_answered_after_first_attempt_total")
			p.wantCounter(t, 0, "netguard_dnsproxy_upstream_errors_total", "reason", "timeout")
			if sum, count := p.histogram(t, "netguard_dnsproxy_upstream_attempts_per_query"); int(sum) != len(ports) || count != 1 {
				t.Errorf("attempts per query: sum %v count %v, want one query with %d", sum, count, len(ports))
			}
		})
	}
}

// TestEarlierAttemptStaysOpen: a hedge does not end the attempts before it;
// a slow answer to the first attempt still wins.
func TestEarlierAttemptStaysOpen(t *testing.T) {
	for path, portable := range udpPaths {
		t.Run(path, func(t *testing.T) {
			var seen atomic.Int32
			up := startUpstream(t, "127.0.0.2", func(w dns.ResponseWriter, r *dns.Msg) {
				if seen.Add(1) == 1 {
					time.Sleep(300 * time.Millisecond)
					answerAddress(w, r)
				} // later attempts: silent
			})
			p := startProxy(t, Config{
				Upstreams: []netip.AddrPort{up.addr}, Timeout: time.Minute, Deadline: time.Minute,
				HedgeDelayMin: 20 * time.Millisecond, HedgeDelayMax: 20 * time.Millisecond,
			}, portable)
			r := exchange(t, "udp", p.addr, question("slow.upstream.test", dns.TypeA))
			if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
				t.Fatalf("rcode %s answers %d, want the first attempt's answer", dns.RcodeToString[r.Rcode], len(r.Answer))
			}
			if got := p.counter(t, "netguard_dnsproxy_hedged_attempts_total"); got < 1 {
				t.Errorf("%v hedged attempts, want some while the first waited", got)
			}
			p.wantCounter(t, 0, "netguard_dnsproxy_answered_after_first_attempt_total")
		})
	}
}

// TestParallelAttemptLimit: a query keeps at most MaxParallelAttempts open
// and makes at most MaxParallelAttempts × ⌈Deadline/Timeout⌉ in all.
func TestParallelAttemptLimit(t *testing.T) {
	for path, portable := range udpPaths {
		t.Run(path, func(t *testing.T) {
			dead := startBlackhole(t, "127.0.0.2")
			p := startProxy(t, Config{
				Upstreams: []netip.AddrPort{dead.addr}, Timeout: 300 * time.Millisecond, Deadline: 600 * time.Millisecond,
				HedgeDelayMin: 10 * time.Millisecond, HedgeDelayMax: 10 * time.Millisecond, MaxParallelAttempts: 3,
			}, portable)
			r := exchange(t, "udp", p.addr, question("limit.upstream.test", dns.TypeA))
			if r.Rcode != dns.RcodeServerFailure {
				t.Fatalf("rcode %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
			}
			// 3 at once, 3 more when they time out; a loaded machine may
			// reach the deadline before the second three.
			ports := dead.seen()
			if len(ports) < 3 || len(ports) > 6 || distinct(ports) != len(ports) {
				t.Errorf("silent upstream saw source ports %v, want 3 to 6 attempts from as many sockets", ports)
			}
			if got := p.counter(t, "netguard_dnsproxy_attempts_held_total", "reason", "parallel_limit"); got < 1 {
				t.Errorf("attempts held by the parallel limit: %v, want at least 1", got)
			}
			p.wantCounter(t, 1, "netguard_dnsproxy_servfail_total", "cause", "deadline")
		})
	}
}

// TestBudgetBoundsAttemptsToASilentUpstream: when nothing answers, extra
// attempts come only from the budget: budgetBurst saved, budgetMinRate per
// second.
func TestBudgetBoundsAttemptsToASilentUpstream(t *testing.T) {
	const queries = 40
	for path, portable := range udpPaths {
		t.Run(path, func(t *testing.T) {
			dead := startBlackhole(t, "127.0.0.2")
			p := startProxy(t, Config{
				Upstreams: []netip.AddrPort{dead.addr}, Timeout: time.Second, Deadline: time.Second,
				HedgeDelayMin: 10 * time.Millisecond, HedgeDelayMax: 10 * time.Millisecond,
			}, portable)
			start := time.Now()
			var wg sync.WaitGroup
			for i := range queries {
				wg.Go(func() {
					// Distinct names: identical queries in flight share attempts.
					r, err := tryExchange("udp", p.addr, question(fmt.Sprintf("budget%d.upstream.test", i), dns.TypeA))
					if err != nil || r.Rcode != dns.RcodeServerFailure {
						t.Errorf("got %v, %v; want SERVFAIL", r, err)
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			// Without the budget each query would make 16 attempts (640).
			got := len(dead.seen())
			bound := queries + budgetBurst + int(elapsed.Seconds()*budgetMinRate) + 1
			t.Logf("%d queries made %d attempts in %s (bound %d)", queries, got, elapsed.Round(time.Millisecond), bound)
			if got > bound {
				t.Errorf("silent upstream got %d attempts, want at most %d", got, bound)
			}
			if got <= queries {
				t.Errorf("silent upstream got %d attempts for %d queries, want extra attempts from the saved budget", got, queries)
			}
			if held := p.counter(t, "netguard_dnsproxy_attempts_held_total", "reason", "budget"); held == 0 {
				t.Error("no attempt was held back by the budget")
			}
		})
	}
}

// TestQueriesInFlightFollowAShorterHedgeDelay: a query sent before the
// first answer waits the maximum hedge delay; when answers show the
// upstream is fast, the poll loop moves its next attempt up.
func TestQueriesInFlightFollowAShorterHedgeDelay(t *testing.T) {
	var seen atomic.Int32
	first := make(chan struct{})
	up := startUpstream(t, "127.0.0.2", func(w dns.ResponseWriter, r *dns.Msg) {
		if seen.Add(1) == 1 {
			close(first) // the first query is lost
			return
		}
		answerAddress(w, r)
	})
	p := startProxy(t, Config{
		Upstreams: []netip.AddrPort{up.addr}, Timeout: time.Minute, Deadline: time.Minute,
		HedgeDelayMin: 10 * time.Millisecond, HedgeDelayMax: time.Minute,
	}, false)
	lost := make(chan *dns.Msg, 1)
	go func() {
		c := &dns.Client{Net: "udp", Timeout: 30 * time.Second}
		r, _, err := c.Exchange(question("lost.upstream.test", dns.TypeA), p.addr)
		if err != nil {
			t.Errorf("the query whose first attempt was lost: %v", err)
		}
		lost <- r
	}()
	<-first
	// An answer: the hedge delay drops from a minute to 10ms.
	exchange(t, "udp", p.addr, question("fast.upstream.test", dns.TypeA))
	if r := <-lost; r == nil || r.Rcode != dns.RcodeSuccess {
		t.Fatalf("the query whose first attempt was lost got %v, want an answer long before a minute", r)
	}
	p.wantCounter(t, 1, "netguard_dnsproxy_answered_after_first_attempt_total")
}

// TestLoneQueryBeyondItsShare: a client that asks one query at a time (nginx
// re-resolving its upstream) leaves no other query to fill the pool while
// its query waits. When the first attempts of most queries are lost, as
// from new ports while one backend of two is silent, a fresh forwarder
// still answers each query within its deadline: from what it starts with,
// then from what the queries answered at once leave.
func TestLoneQueryBeyondItsShare(t *testing.T) {
	for path, portable := range udpPaths {
		t.Run(path, func(t *testing.T) {
			// Two queries of three lose their whole share and need one
			// attempt more; the third is answered at once and leaves two.
			const n, share = 3 * queryPoolStart, 1 + extraPerQuery
			lost := func(name string) int {
				if i, _ := strconv.Atoi(strings.TrimPrefix(strings.SplitN(name, ".", 2)[0], "lone")); i%3 == 2 {
					return 0
				}
				return share
			}
			var mu sync.Mutex
			seen := map[string]int{}
			up := startUpstream(t, "127.0.0.2", func(w dns.ResponseWriter, r *dns.Msg) {
				name := r.Question[0].Name
				mu.Lock()
				seen[name]++
				attempt := seen[name]
				mu.Unlock()
				if attempt > lost(name) {
					answerAddress(w, r)
				}
			})
			p := startProxy(t, Config{
				// An answer slower than the hedge delay would add an
				// attempt: 100ms leaves room for a stall on a busy machine.
				Upstreams: []netip.AddrPort{up.addr}, Timeout: 3 * time.Second, Deadline: 3 * time.Second,
				HedgeDelayMin: 100 * time.Millisecond, HedgeDelayMax: 100 * time.Millisecond,
			}, portable)
			want := 0
			for i := range n {
				name := fmt.Sprintf("lone%d.upstream.test.", i)
				want += lost(name) + 1
				r := exchange(t, "udp", p.addr, question(name, dns.TypeA))
				if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
					t.Fatalf("query %d of %d, alone in flight, its first %d attempts lost: rcode %s, want the answer to attempt %d",
						i+1, n, lost(name), dns.RcodeToString[r.Rcode], lost(name)+1)
				}
			}
			if got := up.count(); got != want {
				t.Errorf("the upstream saw %d queries, want %d: each query's lost attempts and one answered", got, want)
			}
		})
	}
}
