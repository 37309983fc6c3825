package dnsproxy

import (
	"fmt"
	"net"
	"net/netip"
	"time"
)

// Defaults of Config, also the defaults of the `netguard dns-proxy` flags.
const (
	// DefaultListen is where nginx's `resolver 127.0.0.1:8053` points.
	DefaultListen = "127.0.0.1:8053"
	// DefaultTimeout bounds how long one upstream attempt waits for its
	// answer. Later attempts do not wait for it (see DefaultHedgeDelayMin);
	// it is how long a slow answer is still taken.
	DefaultTimeout = 2 * time.Second
	// DefaultDeadline bounds all attempts for one query, so a client gets a
	// SERVFAIL before glibc's default 5 s timeout would fire.
	DefaultDeadline = 4 * time.Second
	// DefaultHedgeDelayMin is the least time a query waits for an answer
	// before it sends another attempt from a new source port. The delay follows
	// the upstream's 99th percentile latency; this floor keeps a fast
	// cluster DNS (well under a millisecond) from being hedged on jitter.
	DefaultHedgeDelayMin = 10 * time.Millisecond
	// DefaultHedgeDelayMax is the most a query waits before it sends another
	// attempt, however slow the upstream has been. It is also the delay
	// before the first answer gives a latency to go by.
	DefaultHedgeDelayMax = 500 * time.Millisecond
	// DefaultMaxParallelAttempts bounds the attempts of one query open at
	// once. With one backend in three silent, 16 attempts all miss with
	// probability (2/3)^16 = 0.15%; such a query waits for the first
	// attempts to time out and sends 16 more.
	DefaultMaxParallelAttempts = 16
	// DefaultHedgeBudget is the extra attempts earned by each answered
	// query: enough for a Service with three backends in four silent
	// (three extra attempts per query on average).
	DefaultHedgeBudget = 4
	// DefaultWarmPortAge is how long after a socket got its source port a
	// query's first attempt may leave from it again, if its last attempt
	// was answered: behind a Service VIP, conntrack pins the port to a
	// backend that answers. Short, so that new ports keep spreading the
	// load over every backend.
	DefaultWarmPortAge = time.Second
	// DefaultMaxInFlight bounds concurrent queries; past it the forwarder
	// answers SERVFAIL at once instead of queueing.
	DefaultMaxInFlight = 1024
	// DefaultMetricsAddr serves /metrics, /healthz and /readyz.
	DefaultMetricsAddr = "127.0.0.1:9153"
	// DefaultListeners is one UDP socket and poll loop. One loop forwards
	// well over 10k queries per second on one core, far more than a
	// sidecar sees; and measured on 2 cores shared with the clients and
	// the upstream, one loop beat two (larger batches, fewer wakeups).
	DefaultListeners = 1
)

// maxParallelAttempts bounds Config.MaxParallelAttempts: sockets per query.
const maxParallelAttempts = 64

// Config is the forwarder's configuration. The zero value of every field
// but Upstreams means its default.
type Config struct {
	// Listen is the IP:port the UDP and TCP listeners bind.
	// Defaults to 127.0.0.1:8053. A port of 0 picks a free port, the same
	// for UDP and TCP.
	Listen string
	// Upstreams are the DNS servers queries are forwarded to, tried in
	// order, starting with the one that answered last. Required.
	Upstreams []netip.AddrPort
	// Timeout bounds how long one upstream attempt waits for its answer.
	// Defaults to 2s.
	Timeout time.Duration
	// Deadline bounds all attempts for one query; when it passes the client
	// gets SERVFAIL. Defaults to 4s.
	Deadline time.Duration
	// HedgeDelayMin and HedgeDelayMax bound the hedge delay: how long a
	// query waits for an answer before it sends another attempt from a new
	// socket, keeping the earlier ones open. Between the bounds the delay is
	// the 99th percentile of the upstream's recent latency. Default to 10ms
	// and 500ms.
	HedgeDelayMin, HedgeDelayMax time.Duration
	// MaxParallelAttempts bounds the attempts of one query open at once; 1
	// turns hedging off (a new attempt only after the last one failed).
	// A query makes at most MaxParallelAttempts × ⌈Deadline/Timeout⌉
	// attempts. Defaults to 16.
	MaxParallelAttempts int
	// HedgeBudget is the number of extra attempts (every attempt after a
	// query's first) earned by each answered query, on top of 10 per
	// second, with at most 100 saved. It bounds the extra load on a DNS
	// that stops answering. Defaults to 4.
	HedgeBudget float64
	// WarmPortAge is how long after an upstream socket got its source port
	// a query's first attempt may leave from it again, if its last
	// attempt was answered (the Linux poll loop only; hedges and retries
	// always leave from new ports). Defaults to 1s; negative turns it off:
	// every attempt from a new port.
	WarmPortAge time.Duration
	// MaxInFlight bounds the queries being forwarded at once; a query over
	// the bound is answered SERVFAIL immediately. Defaults to 1024.
	MaxInFlight int
	// CacheSize is the number of answers kept in the TTL-honouring cache.
	// Defaults to 0: no cache, because the sidecar's job is fresh answers
	// and the cluster DNS server caches already.
	CacheSize int
	// Listeners is the number of UDP sockets bound to Listen, each served
	// by its own loop, so the kernel spreads clients over cores when one
	// core is not enough. One socket holds the address alone; several
	// share it with SO_REUSEPORT, packets steered by CPU to these sockets
	// only. Defaults to 1.
	Listeners int
	// MetricsAddr serves /metrics, /healthz and /readyz. Empty disables it.
	MetricsAddr string
}

// withDefaults returns cfg with its zero fields set to the defaults.
func (cfg Config) withDefaults() Config {
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Deadline == 0 {
		cfg.Deadline = max(DefaultDeadline, cfg.Timeout)
	}
	if cfg.HedgeDelayMin == 0 {
		cfg.HedgeDelayMin = DefaultHedgeDelayMin
	}
	if cfg.HedgeDelayMax == 0 {
		cfg.HedgeDelayMax = max(DefaultHedgeDelayMax, cfg.HedgeDelayMin)
	}
	if cfg.MaxParallelAttempts == 0 {
		cfg.MaxParallelAttempts = DefaultMaxParallelAttempts
	}
	if cfg.HedgeBudget == 0 {
		cfg.HedgeBudget = DefaultHedgeBudget
	}
	if cfg.MaxInFlight == 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	if cfg.WarmPortAge == 0 {
		cfg.WarmPortAge = DefaultWarmPortAge
	}
	if cfg.Listeners == 0 {
		cfg.Listeners = DefaultListeners
	}
	return cfg
}

// validate checks a defaulted Config.
func (cfg Config) validate() error {
	if len(cfg.Upstreams) == 0 {
		return ErrNoUpstreams
	}
	host, port, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return fmt.Errorf("%w: listen %q: %w", ErrInvalidConfig, cfg.Listen, err)
	}
	var listenAddr netip.Addr
	if host != "" {
		if listenAddr, err = netip.ParseAddr(host); err != nil {
			return fmt.Errorf("%w: listen %q: host must be an IP address", ErrInvalidConfig, cfg.Listen)
		}
	}
	listenPort, err := netip.ParseAddrPort("0.0.0.0:" + port)
	if err != nil {
		return fmt.Errorf("%w: listen %q: bad port", ErrInvalidConfig, cfg.Listen)
	}
	for _, up := range cfg.Upstreams {
		if !up.IsValid() || up.Port() == 0 {
			return fmt.Errorf("%w: %q", ErrInvalidUpstream, up)
		}
		// Forwarding to ourselves would loop until the deadline.
		if up.Port() == listenPort.Port() && (!listenAddr.IsValid() || listenAddr.IsUnspecified() || up.Addr().Unmap() == listenAddr.Unmap()) {
			return fmt.Errorf("%w: %s", ErrUpstreamLoop, up)
		}
	}
	switch {
	case cfg.Timeout < 0:
		return fmt.Errorf("%w: timeout must be positive, got %s", ErrInvalidConfig, cfg.Timeout)
	case cfg.Deadline < cfg.Timeout:
		return fmt.Errorf("%w: deadline %s is shorter than the per-attempt timeout %s", ErrInvalidConfig, cfg.Deadline, cfg.Timeout)
	case cfg.HedgeDelayMin < 0:
		return fmt.Errorf("%w: hedge delay minimum must be positive, got %s", ErrInvalidConfig, cfg.HedgeDelayMin)
	case cfg.HedgeDelayMax < cfg.HedgeDelayMin:
		return fmt.Errorf("%w: hedge delay maximum %s is shorter than the minimum %s", ErrInvalidConfig, cfg.HedgeDelayMax, cfg.HedgeDelayMin)
	case cfg.MaxParallelAttempts < 0 || cfg.MaxParallelAttempts > maxParallelAttempts:
		return fmt.Errorf("%w: max parallel attempts must be 1 to %d, got %d", ErrInvalidConfig, maxParallelAttempts, cfg.MaxParallelAttempts)
	case cfg.HedgeBudget < 0:
		return fmt.Errorf("%w: hedge budget must be positive, got %g", ErrInvalidConfig, cfg.HedgeBudget)
	case cfg.MaxInFlight < 0:
		return fmt.Errorf("%w: max in-flight must be positive, got %d", ErrInvalidConfig, cfg.MaxInFlight)
	case cfg.CacheSize < 0:
		return fmt.Errorf("%w: cache size must be 0 (off) or positive, got %d", ErrInvalidConfig, cfg.CacheSize)
	case cfg.Listeners < 0:
		return fmt.Errorf("%w: listeners must be positive, got %d", ErrInvalidConfig, cfg.Listeners)
	}
	return nil
}
