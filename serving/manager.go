package serving

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	crrecorder "sigs.k8s.io/controller-runtime/pkg/recorder"
)

// Manager is a controller-runtime manager whose webhook, metrics and probe
// servers serve on the Listeners it was built with. Health and readiness
// checks are added as usual, before Start.
type Manager struct {
	manager.Manager
	listeners *Listeners
	webhook   *WebhookServer
	started   atomic.Bool
	leader    *leader
	healthz   map[string]healthz.Checker
	readyz    map[string]healthz.Checker
}

// NewManager builds a manager that serves on l: the admission webhooks
// (TLS; certificates from certDir unless a TLS option sets
// GetCertificate), controller-runtime's metrics registry on /metrics,
// /healthz and /readyz, and Go's profiler when l has a Pprof listener. The
// probe and metrics servers start before the caches, so liveness answers
// while they sync. opts' own server and leader-election settings are
// replaced: with election set, the replicas elect the one that records
// Events (see GetEventRecorder), and losing the election never stops
// admission.
func NewManager(restCfg *rest.Config, opts manager.Options, l *Listeners, certDir string, election *LeaderElection, tlsOpts ...func(*tls.Config)) (*Manager, error) {
	m := &Manager{
		listeners: l,
		webhook:   NewWebhookServer(l.Webhook, certDir, tlsOpts...),
		healthz:   map[string]healthz.Checker{},
		readyz:    map[string]healthz.Checker{},
	}
	opts.WebhookServer = m.webhook
	opts.Metrics = metricsserver.Options{BindAddress: "0"}
	opts.HealthProbeBindAddress = "0"
	opts.LeaderElection = false
	mgr, err := manager.New(restCfg, opts)
	if err != nil {
		return nil, err
	}
	m.Manager = mgr
	if election != nil {
		client, err := kubernetes.NewForConfig(restCfg)
		if err != nil {
			return nil, err
		}
		if m.leader, err = newLeader(client, *election, mgr.GetEventRecorder("netguard")); err != nil {
			return nil, err
		}
		if err := mgr.Add(m.leader); err != nil {
			return nil, err
		}
	}
	if l.Metrics != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(ctrlmetrics.Registry, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError}))
		if err := mgr.Add(httpServer("metrics", mux, l.Metrics)); err != nil {
			return nil, err
		}
	}
	if l.Health != nil {
		mux := http.NewServeMux()
		for path, checks := range map[string]map[string]healthz.Checker{"/healthz": m.healthz, "/readyz": m.readyz} {
			h := http.StripPrefix(path, &healthz.Handler{Checks: checks})
			mux.Handle(path, h)
			mux.Handle(path+"/", h) // one check: /readyz/<name>
		}
		if err := mgr.Add(httpServer("health probe", mux, l.Health)); err != nil {
			return nil, err
		}
	}
	if l.Pprof != nil {
		if err := mgr.Add(httpServer("pprof", pprofMux(), l.Pprof)); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// pprofMux serves Go's profiler, as net/http/pprof registers it on the
// default mux (which netguard does not serve).
func pprofMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// probeShutdownTimeout bounds how long the metrics and probe servers wait
// for open requests when the manager stops.
const probeShutdownTimeout = 5 * time.Second

func httpServer(name string, h http.Handler, l net.Listener) *manager.Server {
	timeout := probeShutdownTimeout
	return &manager.Server{
		Name:            name,
		Listener:        l,
		ShutdownTimeout: &timeout,
		Server: &http.Server{
			Handler:           h,
			MaxHeaderBytes:    1 << 20,
			IdleTimeout:       90 * time.Second,
			ReadHeaderTimeout: 32 * time.Second,
		},
	}
}

// GetEventRecorder returns a recorder whose Events are recorded only while
// this replica leads: with several replicas, each Event comes from one of
// them (the election's winner), though every replica watches and judges the
// same objects. Without an election every replica leads.
func (m *Manager) GetEventRecorder(name string) crrecorder.EventRecorder {
	return &leaderRecorder{EventRecorder: m.Manager.GetEventRecorder(name), leads: m.Leads}
}

// Leads reports whether this replica records Events now: it holds the
// Lease, or there is no election.
func (m *Manager) Leads() bool { return m.leader == nil || m.leader.Leads() }

// leaderRecorder drops Events while leads reports false.
type leaderRecorder struct {
	crrecorder.EventRecorder
	leads func() bool
}

// Eventf records the Event if this replica leads.
func (r *leaderRecorder) Eventf(regarding, related runtime.Object, eventtype, reason, action, note string, args ...any) {
	if r.leads() {
		r.EventRecorder.Eventf(regarding, related, eventtype, reason, action, note, args...)
	}
}

// AnnotatedEventf records the Event if this replica leads.
func (r *leaderRecorder) AnnotatedEventf(regarding, related runtime.Object, annotations map[string]string, eventtype, reason, action, note string, args ...any) {
	if r.leads() {
		r.EventRecorder.AnnotatedEventf(regarding, related, annotations, eventtype, reason, action, note, args...)
	}
}

// WebhookServer is the server the admission webhooks are registered on.
func (m *Manager) WebhookServer() *WebhookServer { return m.webhook }

// Listeners are the endpoints the manager serves on.
func (m *Manager) Listeners() *Listeners { return m.listeners }

// AddHealthzCheck adds a liveness check served on /healthz.
func (m *Manager) AddHealthzCheck(name string, check healthz.Checker) error {
	return m.addCheck(m.healthz, name, check)
}

// AddReadyzCheck adds a readiness check served on /readyz.
func (m *Manager) AddReadyzCheck(name string, check healthz.Checker) error {
	return m.addCheck(m.readyz, name, check)
}

func (m *Manager) addCheck(checks map[string]healthz.Checker, name string, check healthz.Checker) error {
	if m.started.Load() {
		return fmt.Errorf("check %q: checks must be added before the manager starts", name)
	}
	if _, dup := checks[name]; dup {
		return fmt.Errorf("check %q added twice", name)
	}
	checks[name] = check
	return nil
}

// Start runs the manager until ctx ends. A manager that fails to start
// closes its listeners.
func (m *Manager) Start(ctx context.Context) error {
	m.started.Store(true)
	err := m.Manager.Start(ctx)
	// Servers that never started have not closed their sockets.
	return errors.Join(err, m.listeners.Close())
}
