package dnsproxy

import (
	"errors"
	"strconv"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// NewRegistry returns the registry the sidecar serves on /metrics, with the
// Go runtime's and the process's collectors; New adds the forwarder's own.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// Protocols a query arrives on; the values of the proto label.
const (
	protoUDP = iota
	protoTCP
	numProtos
)

var protoNames = [numProtos]string{"udp", "tcp"}

// Reasons an upstream attempt fails; the values of the reason label.
const (
	reasonTimeout  = iota // no valid reply before the attempt's deadline
	reasonRefused         // port closed (ICMP port unreachable, TCP RST)
	reasonBadReply        // a reply that does not answer the query, or cannot be read
	reasonNetwork         // any other socket error
	numReasons
)

var reasonNames = [numReasons]string{"timeout", "refused", "bad_reply", "network"}

func reasonOf(err error) int {
	switch {
	case errors.Is(err, errUpstreamTimeout):
		return reasonTimeout
	case errors.Is(err, errUpstreamRefused):
		return reasonRefused
	case errors.Is(err, errBadReply):
		return reasonBadReply
	}
	return reasonNetwork
}

// metrics are resolved to plain counters at start, so the hot path does no
// label lookups. Every label is bounded: proto and reason by the constants
// above, rcode by its 4 bits, upstream by the configured list.
type metrics struct {
	queries        [numProtos]prometheus.Counter
	responses      [16]prometheus.Counter
	upstreamErrors [][numReasons]prometheus.Counter
	dropped        prometheus.Counter
	cacheHits      prometheus.Counter
	cacheMisses    prometheus.Counter
	duration       prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer, upstreams []string, inFlight func() float64) (*metrics, error) {
	queries := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "netguard_dnsproxy_queries_total",
		Help: "DNS queries received from clients, by transport.",
	}, []string{"proto"})
	responses := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "netguard_dnsproxy_responses_total",
		Help: "DNS responses sent to clients, by rcode.",
	}, []string{"rcode"})
	upstreamErrors := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "netguard_dnsproxy_upstream_errors_total",
		Help: "Failed upstream attempts, by upstream and reason (timeout, refused, bad_reply, network).",
	}, []string{"upstream", "reason"})
	dropped := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "netguard_dnsproxy_dropped_queries_total",
		Help: "Client packets dropped unanswered because they are not DNS queries (too short, or responses).",
	})
	cacheLookups := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "netguard_dnsproxy_cache_lookups_total",
		Help: "Cache lookups, by result (hit, miss). Zero while the cache is off.",
	}, []string{"result"})
	duration := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "netguard_dnsproxy_request_duration_seconds",
		Help:    "Time from receiving a query to sending its response.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	})
	inFlightGauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "netguard_dnsproxy_in_flight_queries",
		Help: "Queries being forwarded now.",
	}, inFlight)
	for _, c := range []prometheus.Collector{queries, responses, upstreamErrors, dropped, cacheLookups, duration, inFlightGauge} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	m := &metrics{
		dropped:     dropped,
		cacheHits:   cacheLookups.WithLabelValues("hit"),
		cacheMisses: cacheLookups.WithLabelValues("miss"),
		duration:    duration,
	}
	for i, name := range protoNames {
		m.queries[i] = queries.WithLabelValues(name)
	}
	for rc := range m.responses {
		name, ok := dns.RcodeToString[rc]
		if !ok {
			name = strconv.Itoa(rc)
		}
		m.responses[rc] = responses.WithLabelValues(name)
	}
	m.upstreamErrors = make([][numReasons]prometheus.Counter, len(upstreams))
	for i, up := range upstreams {
		for r, reason := range reasonNames {
			m.upstreamErrors[i][r] = upstreamErrors.WithLabelValues(up, reason)
		}
	}
	return m, nil
}
