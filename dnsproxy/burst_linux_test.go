//go:build linux

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

// TestManyForwardersMeetAFullOutage: many sidecars whose cluster DNS stops
// answering at the same moment. Each forwarder's extra attempts then come
// from what it saved (budgetBurst) and budgetMinRate per second, capped by
// its clients' queries (extraPerQuery each): the burst of the first second
// and the steady rate after it are bounded by the policy's constants, not
// by how many attempts the hedge delay and the parallel limit would allow
// (16 per query within its first timeout).
func TestManyForwardersMeetAFullOutage(t *testing.T) {
	const (
		forwarders = 10
		qps        = 20 // client queries per second, per forwarder
		healthy    = time.Second
		outage     = 3 * time.Second
	)
	var silent atomic.Bool
	var mu sync.Mutex
	var arrivals []time.Time // upstream queries during the outage
	up := startUpstream(t, "127.0.0.2", func(w dns.ResponseWriter, r *dns.Msg) {
		if silent.Load() {
			mu.Lock()
			arrivals = append(arrivals, time.Now())
			mu.Unlock()
			return
		}
		answerAddress(w, r)
	})
	var proxies []*testProxy
	for range forwarders {
		proxies = append(proxies, startProxy(t, Config{Upstreams: []netip.AddrPort{up.addr}, Listeners: 1,
			Timeout: time.Second, Deadline: 2 * time.Second}, false))
	}
	var clients sync.WaitGroup
	var sent atomic.Int64
	start := time.Now()
	var outageStart time.Time
	tick := time.NewTicker(time.Second / qps)
	defer tick.Stop()
	for i := 0; time.Since(start) < healthy+outage; i++ {
		<-tick.C
		if outageStart.IsZero() && time.Since(start) >= healthy {
			outageStart = time.Now()
			silent.Store(true)
		}
		for k, p := range proxies {
			if !outageStart.IsZero() {
				sent.Add(1)
			}
			clients.Go(func() {
				_, _ = tryExchange("udp", p.addr, question(fmt.Sprintf("q%d-%d.upstream.test", i, k), dns.TypeA))
			})
		}
	}
	clients.Wait()
	mu.Lock()
	defer mu.Unlock()
	perSecond := make([]int, int(outage/time.Second)+3)
	for _, at := range arrivals {
		perSecond[min(len(perSecond)-1, int(at.Sub(outageStart)/time.Second))]++
	}
	clientsPerSecond := forwarders * qps
	t.Logf("%d forwarders, %d client queries/s in all; upstream queries per second of the outage: %v (client queries in the outage: %d)",
		forwarders, clientsPerSecond, perSecond, sent.Load())
	t.Logf("first second %.2f, second %.2f, third %.2f upstream queries per client query",
		float64(perSecond[0])/float64(clientsPerSecond), float64(perSecond[1])/float64(clientsPerSecond), float64(perSecond[2])/float64(clientsPerSecond))
	// Bounds: per forwarder and second, its own queries, plus its saved
	// budget in the first second, plus budgetMinRate, never more than
	// extraPerQuery per query and the pool it saved.
	firstBound := forwarders * (qps + min(budgetBurst+budgetMinRate, extraPerQuery*qps+querySaved))
	steadyBound := forwarders * (qps + min(budgetMinRate, extraPerQuery*qps)) * 11 / 10
	if perSecond[0] > firstBound {
		t.Errorf("%d upstream queries in the first second of the outage, want at most %d", perSecond[0], firstBound)
	}
	if perSecond[2] > steadyBound {
		t.Errorf("%d upstream queries in the third second, want at most %d", perSecond[2], steadyBound)
	}
	if int64(len(arrivals)) < sent.Load() {
		t.Errorf("%d upstream queries for the %d client queries of the outage: the counts miss some", len(arrivals), sent.Load())
	}
}
