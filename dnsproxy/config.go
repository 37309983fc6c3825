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
	// DefaultTimeout bounds one upstream attempt. Short, because the point
	// of a retry is that it leaves from a new socket and may reach a
	// different backend.
	DefaultTimeout = 2 * time.Second
	// DefaultDeadline bounds all attempts for one query, so a client gets a
	// SERVFAIL before glibc's default 5 s timeout would fire.
	DefaultDeadline = 4 * time.Second
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
	// Timeout bounds one upstream attempt. Defaults to 2s.
	Timeout time.Duration
	// Deadline bounds all attempts for one query; when it passes the client
	// gets SERVFAIL. Defaults to 4s.
	Deadline time.Duration
	// MaxInFlight bounds the queries being forwarded at once; a query over
	// the bound is answered SERVFAIL immediately. Defaults to 1024.
	MaxInFlight int
	// CacheSize is the number of answers kept in the TTL-honouring cache.
	// Defaults to 0: no cache, because the sidecar's job is fresh answers
	// and the cluster DNS server caches already.
	CacheSize int
	// Listeners is the number of UDP sockets bound to Listen with
	// SO_REUSEPORT, each served by its own loop, so the kernel spreads
	// clients over cores when one core is not enough. Defaults to 1.
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
	if cfg.MaxInFlight == 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
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
	case cfg.MaxInFlight < 0:
		return fmt.Errorf("%w: max in-flight must be positive, got %d", ErrInvalidConfig, cfg.MaxInFlight)
	case cfg.CacheSize < 0:
		return fmt.Errorf("%w: cache size must be 0 (off) or positive, got %d", ErrInvalidConfig, cfg.CacheSize)
	case cfg.Listeners < 0:
		return fmt.Errorf("%w: listeners must be positive, got %d", ErrInvalidConfig, cfg.Listeners)
	}
	return nil
}
