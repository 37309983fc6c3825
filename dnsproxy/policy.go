package dnsproxy

import (
	"math/bits"
	"sync"
	"sync/atomic"
	"time"
)

// The attempt policy. A Service VIP spreads new flows over its backends at
// random, so while one backend is silent every attempt from a new source port
// reaches it with the same probability p, and a query misses only if all
// of its attempts do: p^n. The policy makes n large without waiting for
// timeouts and without slowing the healthy path:
//
//   - The first attempt goes out at once. While no valid answer has come,
//     another attempt is sent from another new source port every hedge delay;
//     the earlier attempts stay open, and the first valid answer wins.
//   - The hedge delay is the 99th percentile of the upstream's recent answer
//     latency (an attempt not answered by then is probably lost), bounded
//     by Config.HedgeDelayMin and Config.HedgeDelayMax. On a healthy
//     upstream about 1 query in 100 is hedged. Before the first answer it
//     is the maximum; when it falls, the poll loop moves up the next
//     attempts of the queries in flight.
//   - One query has at most Config.MaxParallelAttempts attempts open, each
//     waits at most Config.Timeout for its answer, and the query makes at
//     most MaxParallelAttempts × ⌈Deadline/Timeout⌉ attempts in all.
//   - Every attempt after a query's first spends a unit of the answer
//     budget, which answers refill (Config.HedgeBudget units per answered
//     query, up to budgetBurst) plus budgetMinRate units per second, as
//     gRPC's retry throttling refills on success: when nothing answers,
//     the forwarder sends one attempt per client query plus at most
//     budgetMinRate more per second, instead of multiplying the load on a
//     DNS that is down.
//   - Each client query has a share of 1 + extraPerQuery attempts, as
//     Envoy's retry budget is a share of the requests. What a query leaves
//     of its share when it ends goes to the query pool (up to querySaved);
//     an attempt beyond a query's share takes a unit from the pool, which
//     starts with queryPoolStart (as Envoy lets a few retries through
//     whatever the budget, so that a client with little traffic can still
//     retry). So whatever share of the attempts is lost, a forwarder sends
//     at most 1 + extraPerQuery = 3 upstream attempts per client query
//     over its life, plus queryPoolStart, and a DNS that drops most
//     packets because it is overloaded gets at most three times its
//     clients' load. A query always has its own share (it never waits for
//     others to end to make its third attempt), and an unlucky query can
//     use what lucky ones left.
//   - An attempt held back waits for the budgets to refill before it asks
//     again.
//   - A SERVFAIL or REFUSED reply ends the attempt, not the query: another
//     backend may answer (a CoreDNS pod at its max_concurrent limit answers
//     REFUSED at once, one whose upstream broke SERVFAIL). The next attempt
//     goes out at once if the budgets admit it, and the error is kept for
//     the client in case no attempt answers. Error replies earn no budget
//     and are no latency sample. When no attempt is open and the budgets
//     hold the next back twice (one budget wait, 100 ms or the hedge
//     delay), the client gets the error.

const (
	// budgetBurst caps the budget, and is what a forwarder starts with.
	budgetBurst = 100
	// budgetMinRate is the budget refilled per second whatever the
	// answers, so that a forwarder with few queries can still hedge when
	// most backends are silent.
	budgetMinRate = 10
	// extraPerQuery is each client query's share of extra attempts: at
	// most 3 upstream attempts per client query whatever the loss. Two
	// extra attempts are what a Service with two backends in three silent
	// needs on average (each attempt answered with probability 1/3); the
	// poll loop's warm sockets make most first attempts reach a backend
	// that answers, so far fewer are needed there.
	extraPerQuery = 2
	// querySaved caps the query pool: what queries left of their shares,
	// for queries that need more, up to what the answer budget saves.
	querySaved = budgetBurst
	// queryPoolStart is what the query pool starts with. A client that
	// asks one query at a time (nginx re-resolving its upstream) has no
	// other query to fill the pool while its own waits: from an empty pool,
	// a fresh forwarder's query that lost its share would wait for its
	// deadline, one in eight while one backend in two is silent. Over a
	// forwarder's life, extra attempts stay within extraPerQuery per client
	// query plus these.
	queryPoolStart = budgetMinRate
	// latencyWindow is the number of samples after which the latency
	// histogram halves its counts, so the hedge delay follows the upstream.
	latencyWindow = 1024
	// delayEvery is the number of samples between two updates of the hedge
	// delay once the histogram holds latencyWindow/2 samples.
	delayEvery = 16
)

// Reasons an attempt that was due is held back; the values of the reason
// label of netguard_dnsproxy_attempts_held_total.
const (
	heldBudget   = iota // the budget is spent
	heldParallel        // MaxParallelAttempts attempts are open
	numHeld
	// heldExhausted: the query made all the attempts it may. Not a label:
	// the query ends, and its SERVFAIL is counted by cause.
	heldExhausted = numHeld
)

var heldNames = [numHeld]string{"budget", "parallel_limit"}

// attemptPolicy is shared by every listener and transport of a Proxy.
type attemptPolicy struct {
	minDelay, maxDelay time.Duration
	maxParallel        int
	maxAttempts        int
	earn               float64

	delay atomic.Int64 // hedge delay in nanoseconds

	mu       sync.Mutex
	lat      latencyHistogram
	fresh    int     // samples since the delay was computed
	tokens   float64 // the answer budget
	refilled time.Time
	// queryTokens is the query pool; it starts with queryPoolStart.
	queryTokens float64
}

func newAttemptPolicy(cfg Config) *attemptPolicy {
	ap := &attemptPolicy{
		minDelay:    cfg.HedgeDelayMin,
		maxDelay:    cfg.HedgeDelayMax,
		maxParallel: cfg.MaxParallelAttempts,
		earn:        cfg.HedgeBudget,
		tokens:      budgetBurst,
		queryTokens: queryPoolStart,
		refilled:    time.Now(),
	}
	// Each parallel slot may be used once per timeout, so a port that
	// refuses at once cannot make a query spin.
	perSlot := int((cfg.Deadline + cfg.Timeout - 1) / cfg.Timeout)
	ap.maxAttempts = cfg.MaxParallelAttempts * max(1, perSlot)
	// Until the first answer there is no latency to go by.
	ap.delay.Store(int64(cfg.HedgeDelayMax))
	return ap
}

// hedgeDelay is how long a query waits for an answer before it sends its
// next attempt.
func (ap *attemptPolicy) hedgeDelay() time.Duration {
	return time.Duration(ap.delay.Load())
}

// answered records that a query's attempt was answered validly, latency
// after it was sent: the query earns budget and, if sample is set (UDP
// attempts, whose latency the hedge delay is about), the latency updates
// the hedge delay.
func (ap *attemptPolicy) answered(latency time.Duration, sample bool) {
	ap.mu.Lock()
	if ap.tokens < budgetBurst {
		ap.tokens = min(budgetBurst, ap.tokens+ap.earn)
	}
	if !sample {
		ap.mu.Unlock()
		return
	}
	ap.lat.add(latency)
	ap.fresh++
	// While there are few samples every one counts; then every delayEvery.
	if ap.fresh >= delayEvery || ap.lat.total < latencyWindow/2 {
		ap.fresh = 0
		d := min(max(ap.lat.quantile99(), ap.minDelay), ap.maxDelay)
		ap.delay.Store(int64(d))
	}
	ap.mu.Unlock()
}

// finished records that a client query that went upstream ended after
// sent attempts: what it left of its share goes to the query pool.
func (ap *attemptPolicy) finished(sent int) {
	if unused := 1 + extraPerQuery - sent; unused > 0 {
		ap.mu.Lock()
		ap.queryTokens = min(querySaved, ap.queryTokens+float64(unused))
		ap.mu.Unlock()
	}
}

// budgetWait is how long a query whose attempt was held back by the
// budget waits before it asks again: until the budget could have refilled
// a unit, and at least the hedge delay.
func (ap *attemptPolicy) budgetWait() time.Duration {
	return max(ap.hedgeDelay(), time.Second/budgetMinRate)
}

// admit says whether a query that has sent attempts, open of which still
// wait for an answer, may send another at now, and if not, why.
func (ap *attemptPolicy) admit(sent, open int, now time.Time) (bool, int) {
	switch {
	case sent >= ap.maxAttempts:
		return false, heldExhausted
	case open >= ap.maxParallel:
		return false, heldParallel
	case sent > 0 && !ap.spend(now, sent > extraPerQuery):
		return false, heldBudget
	}
	return true, 0
}

// spend takes a unit of the answer budget and, for an attempt beyond the
// query's share, one of the query pool, if there are.
func (ap *attemptPolicy) spend(now time.Time, fromPool bool) bool {
	ap.mu.Lock()
	defer ap.mu.Unlock()
	if elapsed := now.Sub(ap.refilled); elapsed > 0 {
		ap.tokens = min(budgetBurst, ap.tokens+elapsed.Seconds()*budgetMinRate)
		ap.refilled = now
	}
	if ap.tokens < 1 || fromPool && ap.queryTokens < 1 {
		return false
	}
	ap.tokens--
	if fromPool {
		ap.queryTokens--
	}
	return true
}

// latencyHistogram counts latencies in buckets a quarter of an octave wide
// (at most 25% apart), from 1µs to about 30s, with the counts halved every
// latencyWindow samples so that old samples fade.
type latencyHistogram struct {
	counts [latencyBuckets]uint32
	total  uint32
}

const latencyBuckets = 96

func (h *latencyHistogram) add(d time.Duration) {
	h.counts[latencyBucket(d)]++
	h.total++
	if h.total >= latencyWindow {
		h.total = 0
		for i := range h.counts {
			h.counts[i] /= 2
			h.total += h.counts[i]
		}
	}
}

// quantile99 returns the upper bound of the bucket that holds the 99th
// percentile: with fewer than 100 samples, the largest.
func (h *latencyHistogram) quantile99() time.Duration {
	above := uint32(0)
	for b := latencyBuckets - 1; b >= 0; b-- {
		above += h.counts[b]
		if above*100 > h.total {
			return latencyBucketUpper(b)
		}
	}
	return 0
}

// latencyBucket maps d in microseconds to its bucket: values below 4 have
// their own; above, the bucket is the position of the leading bit and the
// two bits after it.
func latencyBucket(d time.Duration) int {
	us := uint64(max(d, 0) / time.Microsecond)
	if us < 4 {
		return int(us)
	}
	n := bits.Len64(us)
	b := 4*(n-2) + int(us>>(n-3)&3)
	return min(b, latencyBuckets-1)
}

// latencyBucketUpper is the smallest latency above bucket b.
func latencyBucketUpper(b int) time.Duration {
	if b < 4 {
		return time.Duration(b+1) * time.Microsecond
	}
	n := b/4 + 2
	return time.Duration(uint64(5+b%4)<<(n-3)) * time.Microsecond
}
