package dnsproxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
)

const (
	// tcpIdleTimeout closes client TCP connections that send nothing.
	tcpIdleTimeout = 10 * time.Second
	// tcpWriteTimeout bounds writing one reply to a TCP client.
	tcpWriteTimeout = 5 * time.Second
	// maxTCPClients bounds the client TCP connections open at once (and
	// MaxInFlight, if lower); a connection over it is closed at once. A
	// pod's resolvers use TCP only to ask again after a truncated answer,
	// one short connection per lookup; each open connection costs a
	// goroutine and kernel socket memory, both counted against the
	// sidecar's memory limit.
	maxTCPClients = 256
	// maxTCPRetries bounds the truncated UDP answers being asked again over
	// TCP at once. Each holds an answer of up to 64 KiB and, to cut it to
	// the client's size, its unpacked records (about 100 bytes each): a
	// burst of them must not take the sidecar past its memory limit. Over
	// the bound the client gets the truncated answer and asks over TCP
	// itself.
	maxTCPRetries = 16
	// shutdownSlack is added to Deadline when waiting for in-flight
	// queries at shutdown.
	shutdownSlack = time.Second
)

// Proxy is a running or runnable forwarder. Create it with New.
type Proxy struct {
	cfg      Config
	log      logr.Logger
	ups      []upstream
	policy   *attemptPolicy
	cache    *cache
	m        *metrics
	gatherer prometheus.Gatherer

	preferred atomic.Int32 // index of the upstream tried first
	inFlight  atomic.Int64
	queries   sync.WaitGroup // UDP queries being handled
	ready     atomic.Bool
	stopping  atomic.Bool

	// started is closed once the listeners are bound; addr and metricsAddr
	// are set before.
	started     chan struct{}
	addr        netip.AddrPort
	metricsAddr string

	tcpMu sync.Mutex
	// tcpRetries holds a token per TCP retry of a truncated answer.
	tcpRetries chan struct{}
	tcpConns   map[net.Conn]struct{}

	// portableUDP serves UDP with a goroutine per query on net.UDPConn
	// instead of the Linux epoll loops; tests run both.
	portableUDP bool
}

// New checks cfg, fills in its defaults, and registers the forwarder's
// metrics with reg (a new registry when nil). When cfg.MetricsAddr is set,
// reg must also be a prometheus.Gatherer, as a *prometheus.Registry is.
func New(cfg Config, log logr.Logger, reg prometheus.Registerer) (*Proxy, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	p := &Proxy{
		cfg:      cfg,
		log:      log,
		started:  make(chan struct{}),
		tcpConns: make(map[net.Conn]struct{}),

		tcpRetries: make(chan struct{}, maxTCPRetries),
	}
	if cfg.MetricsAddr != "" {
		g, ok := reg.(prometheus.Gatherer)
		if !ok {
			return nil, ErrNoGatherer
		}
		p.gatherer = g
	}
	names := make([]string, len(cfg.Upstreams))
	for i, up := range cfg.Upstreams {
		names[i] = up.String()
	}
	p.policy = newAttemptPolicy(cfg)
	m, err := newMetrics(reg, names,
		func() float64 { return float64(p.inFlight.Load()) },
		func() float64 { return p.policy.hedgeDelay().Seconds() })
	if err != nil {
		return nil, fmt.Errorf("registering metrics: %w", err)
	}
	p.m = m
	p.ups = make([]upstream, len(cfg.Upstreams))
	for i, up := range cfg.Upstreams {
		p.ups[i] = upstream{addr: up, errs: &m.upstreamErrors[i]}
	}
	if cfg.CacheSize > 0 {
		p.cache = newCache(cfg.CacheSize)
	}
	return p, nil
}

// Ready reports whether the listeners are bound and the forwarder is not
// shutting down. It backs /readyz.
func (p *Proxy) Ready() bool { return p.ready.Load() }

// Run binds the listeners and serves until ctx is cancelled or a listener
// fails. On cancellation it stops reading, lets in-flight queries finish
// (each is bounded by Deadline), and returns nil. A Proxy runs once.
func (p *Proxy) Run(ctx context.Context) error {
	udp, tcp, bound, err := p.listen(ctx)
	if err != nil {
		return err
	}
	defer func() {
		for _, l := range udp {
			l.close()
		}
	}()
	defer tcp.Close()
	var lc net.ListenConfig

	var httpSrv *http.Server
	if p.cfg.MetricsAddr != "" {
		ln, err := lc.Listen(ctx, "tcp", p.cfg.MetricsAddr)
		if err != nil {
			return fmt.Errorf("listening for metrics: %w", err)
		}
		p.metricsAddr = ln.Addr().String()
		httpSrv = p.serveHTTP(ln)
	}

	p.addr = bound
	p.ready.Store(true)
	close(p.started)
	p.log.Info("Serving DNS", "listen", bound.String(), "upstreams", p.cfg.Upstreams, "listeners", len(udp),
		"timeout", p.cfg.Timeout.String(), "deadline", p.cfg.Deadline.String(),
		"hedgeDelayMin", p.cfg.HedgeDelayMin.String(), "hedgeDelayMax", p.cfg.HedgeDelayMax.String(),
		"maxParallelAttempts", p.cfg.MaxParallelAttempts, "hedgeBudget", p.cfg.HedgeBudget,
		"maxInFlight", p.cfg.MaxInFlight, "warmPortAge", p.cfg.WarmPortAge.String(), "cacheSize", p.cfg.CacheSize, "metrics", p.metricsAddr)

	var readers, conns sync.WaitGroup
	failed := make(chan error, len(udp)+1)
	for _, l := range udp {
		readers.Go(func() {
			if err := l.serve(); err != nil {
				failed <- err
			}
		})
	}
	readers.Go(func() {
		if err := p.serveTCP(tcp, &conns); err != nil {
			failed <- err
		}
	})

	var runErr error
	select {
	case <-ctx.Done():
		p.log.Info("Shutting down", "inFlight", p.inFlight.Load())
	case runErr = <-failed:
		p.log.Error(runErr, "Listener failed, shutting down")
	}
	p.ready.Store(false)
	p.stopping.Store(true)

	// Stop reading without closing the sockets, so queries already being
	// forwarded can still send their replies.
	for _, l := range udp {
		l.stopReading()
	}
	_ = tcp.Close()
	p.tcpMu.Lock()
	for c := range p.tcpConns {
		_ = c.SetReadDeadline(time.Unix(1, 0))
	}
	p.tcpMu.Unlock()
	readers.Wait()

	done := make(chan struct{})
	go func() {
		p.queries.Wait()
		conns.Wait()
		close(done)
	}()
	grace := time.NewTimer(p.cfg.Deadline + shutdownSlack)
	defer grace.Stop()
	select {
	case <-done:
	case <-grace.C:
		p.log.Info("In-flight queries did not finish in time; closing", "inFlight", p.inFlight.Load())
	}
	p.tcpMu.Lock()
	for c := range p.tcpConns {
		_ = c.Close()
	}
	p.tcpMu.Unlock()

	if httpSrv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), shutdownSlack)
		defer cancel()
		_ = httpSrv.Shutdown(sctx)
	}
	return runErr
}

// listen binds the UDP listeners and a TCP listener on the same port.
// With port 0 the UDP bind picks the port, which TCP may find taken; then
// it tries again with another, a bounded number of times.
func (p *Proxy) listen(ctx context.Context) ([]udpListener, net.Listener, netip.AddrPort, error) {
	host, port, _ := net.SplitHostPort(p.cfg.Listen)
	tries := 1
	if port == "0" {
		tries = 10
	}
	var lc net.ListenConfig
	for try := 1; ; try++ {
		udp, bound, err := p.listenUDP(ctx)
		if err != nil {
			return nil, nil, netip.AddrPort{}, err
		}
		tcp, err := lc.Listen(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(int(bound.Port()))))
		if err == nil {
			return udp, tcp, bound, nil
		}
		for _, l := range udp {
			l.close()
		}
		if try == tries || !errors.Is(err, syscall.EADDRINUSE) {
			return nil, nil, netip.AddrPort{}, fmt.Errorf("listening on tcp: %w", err)
		}
	}
}

// acquire takes an in-flight slot, or reports that the bound is reached.
func (p *Proxy) acquire() bool {
	if p.inFlight.Add(1) > int64(p.cfg.MaxInFlight) {
		p.inFlight.Add(-1)
		return false
	}
	return true
}

func (p *Proxy) release() { p.inFlight.Add(-1) }

// serveTCP accepts client connections, at most maxTCPClients (or
// MaxInFlight) at once; one over the bound is closed at once and counted.
func (p *Proxy) serveTCP(ln net.Listener, conns *sync.WaitGroup) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			if p.stopping.Load() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			// Out of file descriptors and the like: back off briefly
			// rather than spin, as net/http does.
			p.log.V(1).Info("Accepting a TCP connection failed", "error", err.Error())
			time.Sleep(10 * time.Millisecond)
			continue
		}
		p.tcpMu.Lock()
		full := len(p.tcpConns) >= min(maxTCPClients, p.cfg.MaxInFlight)
		if !full {
			p.tcpConns[c] = struct{}{}
		}
		p.tcpMu.Unlock()
		if full {
			p.m.tcpRefused.Inc()
			_ = c.Close()
			continue
		}
		conns.Go(func() { p.serveTCPConn(c) })
	}
}

// serveTCPConn answers the queries of one client connection in order. A
// connection holds a buffer only while it has a query: an idle one costs
// its goroutine and socket.
func (p *Proxy) serveTCPConn(c net.Conn) {
	defer func() {
		p.tcpMu.Lock()
		delete(p.tcpConns, c)
		p.tcpMu.Unlock()
		_ = c.Close()
	}()
	for !p.stopping.Load() {
		_ = c.SetReadDeadline(time.Now().Add(tcpIdleTimeout))
		b, n, err := readTCPMessage(c)
		if err != nil {
			return
		}
		if !p.answerTCP(c, b, n) {
			return
		}
	}
}

// answerTCP answers the query in (*b)[:n] on c and gives b back; false
// when the connection is to be closed.
func (p *Proxy) answerTCP(c net.Conn, b *[]byte, n int) bool {
	defer putBuf(b)
	p.m.queries[protoTCP].Inc()
	start := time.Now()
	var reply []byte
	var rb *[]byte
	if p.acquire() {
		reply, rb = p.handle((*b)[:n], protoTCP)
		p.release()
	} else {
		rb = getBuf(smallBuf)
		reply = p.overloadReply((*b)[:n], *rb)
	}
	if reply == nil {
		if rb != nil {
			putBuf(rb)
		}
		return false // not a query: close, as there is nothing to answer
	}
	_ = c.SetWriteDeadline(time.Now().Add(tcpWriteTimeout))
	var l [2]byte
	l[0], l[1] = byte(len(reply)>>8), byte(len(reply))
	bufs := net.Buffers{l[:], reply}
	_, err := bufs.WriteTo(c)
	p.observe(reply, start)
	putBuf(rb)
	return err == nil
}

// observe records a reply sent to a client.
func (p *Proxy) observe(reply []byte, start time.Time) {
	p.m.responses[reply[3]&rcodeMask].Inc()
	p.m.duration.Observe(time.Since(start).Seconds())
}
