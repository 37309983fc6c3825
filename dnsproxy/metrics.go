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
	reasonTimeout      = iota // no valid reply before the attempt's deadline
	reasonRefused             // port closed (ICMP port unreachable, TCP RST)
	reasonBadReply            // a reply that does not answer the query, or cannot be read
	reasonNetwork             // any other socket error
	reasonServFail            // the upstream answered SERVFAIL
	reasonRefusedReply        // the upstream answered REFUSED
	numReasons
)

var reasonNames = [numReasons]string{"timeout", "refused", "bad_reply", "network", "servfail", "refused_reply"}

// errorReason is the reason an error reply (isErrorReply) counts under.
func errorReason(reply []byte) int {
	if reply[3]&rcodeMask == rcodeRefused {
		return reasonRefusedReply
	}
	return reasonServFail
}

// Causes of a SERVFAIL sent to a client; the values of the cause label.
const (
	causeDeadline      = iota // no valid answer before Config.Deadline
	causeAttemptLimit         // every attempt the query may make failed
	causeInFlightLimit        // Config.MaxInFlight queries were being forwarded
	causeUpstream             // the upstream itself answered SERVFAIL
	numCauses
)

var causeNames = [numCauses]string{"deadline", "attempt_limit", "in_flight_limit", "upstream"}

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

	attempts     prometheus.Histogram
	hedged       prometheus.Counter
	held         [numHeld]prometheus.Counter
	answeredLate prometheus.Counter
	replaced     prometheus.Counter
	servfails    [numCauses]prometheus.Counter
	tcpRefused   prometheus.Counter
	coalesced    prometheus.Counter
	// tcpRetriesShed: truncated answers relayed without a TCP retry.
	tcpRetriesShed prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, upstreams []string, inFlight, hedgeDelay func() float64) (*metrics, error) {
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
		Help: "Failed upstream attempts, by upstream and reason (timeout, refused: port closed, bad_reply, network, servfail and refused_reply: the upstream answered that error).",
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
	attempts := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "netguard_dnsproxy_upstream_attempts_per_query",
		Help:    "Upstream attempts made for each forwarded query, each from a new source port.",
		Buckets: []float64{1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64},
	})
	hedged := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "netguard_dnsproxy_hedged_attempts_total",
		Help: "Upstream attempts sent while an earlier attempt of the same query was still waiting for its answer.",
	})
	held := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "netguard_dnsproxy_attempts_held_total",
		Help: "Times a query's next attempt was due but held back, by reason (budget: the hedge budget is spent; parallel_limit: the query has the most attempts open).",
	}, []string{"reason"})
	answeredLate := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "netguard_dnsproxy_answered_after_first_attempt_total",
		Help: "Queries answered by an attempt other than their first.",
	})
	replaced := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "netguard_dnsproxy_error_replies_replaced_total",
		Help: "Queries that got SERVFAIL or REFUSED from one attempt and a good answer from a later one, which the client got instead.",
	})
	servfails := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "netguard_dnsproxy_servfail_total",
		Help: "SERVFAIL responses sent to clients, by cause (deadline, attempt_limit, in_flight_limit, upstream).",
	}, []string{"cause"})
	tcpRefused := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "netguard_dnsproxy_tcp_connections_refused_total",
		Help: "Client TCP connections closed at once because the most the forwarder keeps open were open.",
	})
	coalesced := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "netguard_dnsproxy_coalesced_queries_total",
		Help: "Queries answered by the upstream attempts of an identical query already in flight, instead of asking again.",
	})
	tcpRetriesShed := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "netguard_dnsproxy_tcp_retries_shed_total",
		Help: "Truncated UDP answers relayed as they came, without asking over TCP, because the most TCP retries were running; the client asks over TCP itself.",
	})
	hedgeDelayGauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "netguard_dnsproxy_hedge_delay_seconds",
		Help: "How long a query now waits for an answer before sending another attempt.",
	}, hedgeDelay)
	for _, c := range []prometheus.Collector{queries, responses, upstreamErrors, dropped, cacheLookups, duration, inFlightGauge,
		attempts, hedged, held, answeredLate, replaced, servfails, tcpRefused, coalesced, tcpRetriesShed, hedgeDelayGauge} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	m := &metrics{
		dropped:     dropped,
		cacheHits:   cacheLookups.WithLabelValues("hit"),
		cacheMisses: cacheLookups.WithLabelValues("miss"),
		duration:    duration,

		attempts:     attempts,
		hedged:       hedged,
		answeredLate: answeredLate,
		replaced:     replaced,
		tcpRefused:   tcpRefused,
		coalesced:    coalesced,

		tcpRetriesShed: tcpRetriesShed,
	}
	for i, name := range heldNames {
		m.held[i] = held.WithLabelValues(name)
	}
	for i, name := range causeNames {
		m.servfails[i] = servfails.WithLabelValues(name)
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
