package dnsproxy

import "errors"

// Configuration errors, returned by New and ParseUpstreams.
var (
	// ErrNoUpstreams means no upstream DNS server was configured or found in
	// the resolv.conf file.
	ErrNoUpstreams = errors.New("no upstream DNS servers")
	// ErrInvalidUpstream means an upstream is not an IP address with an
	// optional port.
	ErrInvalidUpstream = errors.New("invalid upstream")
	// ErrUpstreamLoop means an upstream is the forwarder's own listen
	// address, which would forward every query back to itself.
	ErrUpstreamLoop = errors.New("upstream is the forwarder's own listen address")
	// ErrInvalidConfig means a Config field has a value the forwarder cannot
	// run with.
	ErrInvalidConfig = errors.New("invalid dns-proxy configuration")
	// ErrNoGatherer means a metrics address was set but the registerer given
	// to New cannot be gathered, so there would be nothing to serve.
	ErrNoGatherer = errors.New("metrics address set but the registerer is not a prometheus.Gatherer")
)

// Packet and upstream errors. They stay inside the package: a client only
// ever sees their effect as a dropped packet or an error rcode.
var (
	// errShortMessage: fewer bytes than a DNS header. Dropped.
	errShortMessage = errors.New("message shorter than a DNS header")
	// errNotQuery: the QR bit is set. Dropped, so the forwarder can never be
	// made to answer answers (loops, reflection).
	errNotQuery = errors.New("message is a response, not a query")
	// errNotImplemented: an opcode other than QUERY. Answered NOTIMP.
	errNotImplemented = errors.New("opcode not implemented")
	// errFormat: a header that parses but a body that does not, or not
	// exactly one question. Answered FORMERR.
	errFormat = errors.New("malformed DNS query")

	// errUpstreamTimeout: the attempt's deadline passed with no valid reply.
	errUpstreamTimeout = errors.New("upstream timed out")
	// errUpstreamRefused: the upstream port is closed (ICMP port unreachable).
	errUpstreamRefused = errors.New("upstream refused the connection")
	// errBadReply: a reply that does not answer the query sent (wrong ID,
	// not a response, different question) or cannot be parsed.
	errBadReply = errors.New("upstream reply does not match the query")
	// errTruncated: the UDP reply had the TC bit set or did not fit.
	errTruncated = errors.New("upstream reply truncated")
)
