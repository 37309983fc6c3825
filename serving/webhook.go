package serving

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
)

// shutdownTimeout bounds how long in-flight admission requests may take
// once the server stops; the manager's graceful shutdown timeout bounds
// the whole.
const shutdownTimeout = time.Minute

// WebhookServer serves admission webhooks over TLS on a listener it is
// given. It is controller-runtime's webhook server (Register instruments
// every handler with the controller_runtime_webhook_* metrics) except that
// it does not open its own socket.
type WebhookServer struct {
	*crwebhook.DefaultServer
	// ShutdownDelay is how long the server keeps serving once it is told
	// to stop, closing each connection after its next response, before it
	// closes its socket (see Start). Set it before Start.
	ShutdownDelay time.Duration

	mux      *http.ServeMux
	listener net.Listener
	certDir  string
	started  atomic.Bool

	mu      sync.Mutex
	tlsOpts []func(*tls.Config)
}

var _ crwebhook.Server = (*WebhookServer)(nil)

// NewWebhookServer returns a server for l. Unless a TLS option sets
// GetCertificate, it serves tls.crt and tls.key from certDir and reloads
// them when they change (cert-manager renews them in place).
func NewWebhookServer(l net.Listener, certDir string, tlsOpts ...func(*tls.Config)) *WebhookServer {
	port := 0
	if a, ok := l.Addr().(*net.TCPAddr); ok {
		port = a.Port
	}
	mux := http.NewServeMux()
	return &WebhookServer{
		DefaultServer: crwebhook.NewServer(crwebhook.Options{Port: port, CertDir: certDir, WebhookMux: mux}).(*crwebhook.DefaultServer),
		mux:           mux,
		listener:      l,
		certDir:       certDir,
		tlsOpts:       tlsOpts,
	}
}

// AddTLSOption adds a TLS option; it takes effect when the server starts.
func (s *WebhookServer) AddTLSOption(opt func(*tls.Config)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tlsOpts = append(s.tlsOpts, opt)
}

// WebhookMux is the multiplexer Register adds the webhooks to.
func (s *WebhookServer) WebhookMux() *http.ServeMux { return s.mux }

// Addr is the address the server listens on.
func (s *WebhookServer) Addr() net.Addr { return s.listener.Addr() }

// CertDir is the directory tls.crt and tls.key are read from unless a TLS
// option sets GetCertificate.
func (s *WebhookServer) CertDir() string { return s.certDir }

// TLSConfig is the server's TLS configuration: its TLS options applied in
// order to an empty one.
func (s *WebhookServer) TLSConfig() *tls.Config {
	cfg := &tls.Config{}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, opt := range s.tlsOpts {
		opt(cfg)
	}
	return cfg
}

// Start serves until ctx ends, then drains: for ShutdownDelay it serves
// on, answering every request with "Connection: close", and only then
// closes its socket and idle connections and lets in-flight requests
// finish.
//
// The API server keeps idle keep-alive connections to a webhook and sends
// the next review on one of them. A server that closes an idle connection
// while a review is being written to it loses that review (the client sees
// EOF and does not retry a POST), and with failurePolicy Ignore the API
// server admits the object unchecked. Closing a connection right after a
// response that says so cannot race: the client reads the Connection
// header before it reuses the connection. By the end of the delay every
// connection that still carried traffic has been closed that way, and new
// ones go to the other replicas (the endpoint is gone from the Service).
func (s *WebhookServer) Start(ctx context.Context) error {
	log := logf.FromContext(ctx).WithName("webhook-server")
	cfg := s.TLSConfig()
	if cfg.GetCertificate == nil {
		w, err := certwatcher.New(filepath.Join(s.certDir, "tls.crt"), filepath.Join(s.certDir, "tls.key"))
		if err != nil {
			return fmt.Errorf("serving certificate in %s: %w", s.certDir, err)
		}
		cfg.GetCertificate = w.GetCertificate
		go func() {
			if err := w.Start(ctx); err != nil {
				log.Error(err, "Watching the serving certificate failed")
			}
		}()
	}

	var draining atomic.Bool
	srv := &http.Server{
		// Requests in flight while the server stops must not see their
		// context cancelled: a handler's live read would fail and deny.
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if draining.Load() {
				w.Header().Set("Connection", "close")
			}
			s.mux.ServeHTTP(w, r)
		}),
		MaxHeaderBytes:    1 << 20,
		IdleTimeout:       90 * time.Second,
		ReadHeaderTimeout: 32 * time.Second,
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		if s.ShutdownDelay > 0 {
			draining.Store(true)
			log.Info("Draining: serving on, closing each connection after its next response", "shutdownDelay", s.ShutdownDelay.String())
			time.Sleep(s.ShutdownDelay)
		}
		shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(shutdownCtx); err != nil {
			log.Error(err, "Shutting down the webhook server")
		}
	}()
	log.Info("Serving webhooks", "addr", s.listener.Addr().String())
	s.started.Store(true)
	if err := srv.Serve(tls.NewListener(s.listener, cfg)); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	<-stopped
	return nil
}

// StartedChecker fails until the server completes a TLS handshake on its
// own address: it is serving and has a certificate.
func (s *WebhookServer) StartedChecker() healthz.Checker {
	return func(*http.Request) error {
		if !s.started.Load() {
			return errors.New("webhook server has not started yet")
		}
		d := &net.Dialer{Timeout: 10 * time.Second}
		conn, err := tls.DialWithDialer(d, "tcp", s.listener.Addr().String(), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // a local liveness handshake, not trust
		if err != nil {
			return fmt.Errorf("webhook server not reachable: %w", err)
		}
		return conn.Close()
	}
}
