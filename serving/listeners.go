package serving

import (
	"errors"
	"fmt"
	"net"
	"strconv"
)

// Addresses name the endpoints to listen on.
type Addresses struct {
	// WebhookHost is the address the webhook server binds; empty for all.
	WebhookHost string
	// WebhookPort is the webhook server's port; 0 lets the kernel pick one.
	WebhookPort int
	// Metrics serves /metrics, as host:port; "0" or "" disables it.
	Metrics string
	// Health serves /healthz and /readyz, as host:port; "0" or "" disables
	// it.
	Health string
	// Pprof serves Go's profiler at /debug/pprof/, as host:port; "0" or ""
	// (the default) disables it.
	Pprof string
}

// Listeners are the open sockets of the endpoints. Metrics, Health and
// Pprof are nil when disabled.
type Listeners struct {
	Webhook net.Listener
	Metrics net.Listener
	Health  net.Listener
	Pprof   net.Listener
}

// Listen opens every endpoint of a. On error nothing stays open.
func Listen(a Addresses) (*Listeners, error) {
	l := &Listeners{}
	var err error
	if a.WebhookPort < 0 || a.WebhookPort > 65535 {
		return nil, fmt.Errorf("webhook port %d: must be 0..65535", a.WebhookPort)
	}
	if l.Webhook, err = net.Listen("tcp", net.JoinHostPort(a.WebhookHost, strconv.Itoa(a.WebhookPort))); err != nil {
		return nil, fmt.Errorf("webhook server: %w", err)
	}
	if l.Metrics, err = listenOptional(a.Metrics); err != nil {
		l.Close()
		return nil, fmt.Errorf("metrics endpoint: %w", err)
	}
	if l.Health, err = listenOptional(a.Health); err != nil {
		l.Close()
		return nil, fmt.Errorf("health probe endpoint: %w", err)
	}
	if l.Pprof, err = listenOptional(a.Pprof); err != nil {
		l.Close()
		return nil, fmt.Errorf("pprof endpoint: %w", err)
	}
	return l, nil
}

func listenOptional(addr string) (net.Listener, error) {
	if addr == "" || addr == "0" {
		return nil, nil
	}
	return net.Listen("tcp", addr)
}

// Close closes every listener that is still open.
func (l *Listeners) Close() error {
	var errs []error
	for _, ln := range []net.Listener{l.Webhook, l.Metrics, l.Health, l.Pprof} {
		if ln == nil {
			continue
		}
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Bound returns the bound address of each endpoint ("" when disabled), as
// key-value pairs for a structured log line: "webhook", "metrics",
// "health", and "pprof" when it is enabled.
func (l *Listeners) Bound() []any {
	addr := func(ln net.Listener) string {
		if ln == nil {
			return ""
		}
		return ln.Addr().String()
	}
	bound := []any{"webhook", addr(l.Webhook), "metrics", addr(l.Metrics), "health", addr(l.Health)}
	if l.Pprof != nil {
		bound = append(bound, "pprof", addr(l.Pprof))
	}
	return bound
}
