package e2e

import (
	"fmt"
	"testing"
)

// TestVIPOverloadedClusterDNS: the cluster DNS drops a uniform random
// share of the queries, as an overloaded CoreDNS does. Whatever the
// share, the forwarder sends at most 3 upstream queries per client query
// (each query's share, dnsproxy/policy.go) plus the 10 its pool starts
// with (3.01 over 1,000 queries), counted where they arrive,
// before the drop: hedging must not multiply the load on a DNS that is
// already overloaded. 200 client queries per second for 5 s, distinct
// names. When every answer earned 4 extra attempts, 75% lost made 4.14.
func TestVIPOverloadedClusterDNS(t *testing.T) {
	const n, qps, poolStart = 1000, 200, 10
	const maxPerLookup = 3 + float64(poolStart)/n
	for _, loss := range []float64{0.5, 0.75, 0.9} {
		t.Run(fmt.Sprintf("%.0f%% lost", loss*100), func(t *testing.T) {
			c := newVIPClusterOf(t, fmt.Sprintf("l%.0f", loss*100), []backend{{loss: loss}})
			s, queries := c.lookupCounted(n, n, qps)
			perLookup := float64(sum(queries)) / n
			t.Logf("%.0f%% lost: %d of %d answered, %.2f upstream queries per client query (at most %.2f)",
				loss*100, s.answered, n, perLookup, maxPerLookup)
			if perLookup > maxPerLookup {
				t.Errorf("%.2f upstream queries per client query, want at most %.2f", perLookup, maxPerLookup)
			}
			if sum(queries) < n {
				t.Errorf("the backend counted %d queries for %d lookups: the counter misses some", sum(queries), n)
			}
			if s.answered+s.servfail+s.lost != n || s.other != 0 {
				t.Errorf("%s: want every lookup answered or SERVFAIL", s)
			}
		})
	}
}
