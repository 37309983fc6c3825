package serve

import (
	"cmp"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/netguard-io/netguard/clusterview"
	"github.com/netguard-io/netguard/config"
	ctrlconflicts "github.com/netguard-io/netguard/controllers/conflicts"
	"github.com/netguard-io/netguard/controllers/coverage"
	"github.com/netguard-io/netguard/controllers/reports"
	"github.com/netguard-io/netguard/serving"
	"github.com/netguard-io/netguard/webhook"
	"github.com/netguard-io/netguard/webhook/conflicts"
	"github.com/netguard-io/netguard/webhook/services"
)

// Options are the server settings that come from flags.
type Options struct {
	// CertDir holds tls.crt and tls.key; they are reloaded when they change.
	// Defaults to controller-runtime's <tmp>/k8s-webhook-server/serving-certs.
	CertDir string
	// Port the webhook server listens on; 0 lets the kernel pick a free
	// port (logged at start).
	Port int
	// Host the webhook server binds to. Defaults to all addresses.
	Host string
	// MetricsBindAddress serves /metrics; "0" or "" disables it. Port 0
	// picks a free port.
	MetricsBindAddress string
	// HealthProbeBindAddress serves /healthz and /readyz; "0" or ""
	// disables it. Port 0 picks a free port.
	HealthProbeBindAddress string
	// PprofBindAddress serves Go's profiler at /debug/pprof/; "0" or ""
	// (the default) disables it. Port 0 picks a free port.
	PprofBindAddress string
	// GracefulShutdownTimeout bounds how long in-flight requests may take
	// to finish after SIGTERM. Defaults to 30s.
	GracefulShutdownTimeout time.Duration
	// ShutdownDelay is how long the webhook server drains after SIGTERM
	// before it closes its socket (serving.WebhookServer.ShutdownDelay); it
	// counts against GracefulShutdownTimeout.
	ShutdownDelay time.Duration
	// Version is recorded in the netguard.io/status annotation.
	Version string
	// LeaderElection makes the replicas elect one of them, on the Lease
	// LeaderElectionID in netguard's own namespace, to record Events: every
	// replica answers admission reviews and watches the cluster, only the
	// leader writes. Without it every replica records.
	LeaderElection bool
	// LeaderElectionID names the Lease. Defaults to "netguard".
	LeaderElectionID string
	// LeaseDuration, RenewDeadline and RetryPeriod time the election; zero
	// takes client-go's defaults (15s, 10s, 2s). A replica takes over at
	// most LeaseDuration after the leader stopped renewing.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
}

// Scheme knows the built-in Kubernetes types netguard reads.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(fmt.Sprintf("building scheme: %v", err))
	}
	return s
}

// NewManager opens netguard's endpoints and builds the controller-runtime
// manager that serves its webhooks, metrics and health probes on them; it
// also returns the lean view of the cluster, which other features read.
// Call Start on the manager to serve; the bound addresses are in its
// Listeners.
func NewManager(restCfg *rest.Config, opts Options, cfg *config.Config) (*serving.Manager, *clusterview.Cache, error) {
	shutdown := opts.GracefulShutdownTimeout
	if shutdown == 0 {
		shutdown = 30 * time.Second
	}
	if opts.ShutdownDelay >= shutdown {
		return nil, nil, fmt.Errorf("the shutdown delay (%s) must be shorter than the graceful shutdown timeout (%s), which bounds it", opts.ShutdownDelay, shutdown)
	}
	certDir := opts.CertDir
	if certDir == "" {
		certDir = filepath.Join(os.TempDir(), "k8s-webhook-server", "serving-certs")
	}
	listeners, err := serving.Listen(serving.Addresses{
		WebhookHost: opts.Host,
		WebhookPort: opts.Port,
		Metrics:     opts.MetricsBindAddress,
		Health:      opts.HealthProbeBindAddress,
		Pprof:       opts.PprofBindAddress,
	})
	if err != nil {
		return nil, nil, err
	}
	var election *serving.LeaderElection
	if opts.LeaderElection {
		election = &serving.LeaderElection{
			Namespace:     cfg.Namespaces.Self,
			Name:          cmp.Or(opts.LeaderElectionID, "netguard"),
			LeaseDuration: opts.LeaseDuration,
			RenewDeadline: opts.RenewDeadline,
			RetryPeriod:   opts.RetryPeriod,
		}
	}
	mgr, err := serving.NewManager(restCfg, ctrl.Options{
		Scheme:                  Scheme(),
		GracefulShutdownTimeout: &shutdown,
	}, listeners, certDir, election, modernTLS)
	if err != nil {
		listeners.Close()
		return nil, nil, fmt.Errorf("creating manager: %w", err)
	}
	mgr.WebhookServer().ShutdownDelay = opts.ShutdownDelay
	view, err := setup(mgr, opts, cfg)
	if err != nil {
		listeners.Close()
		return nil, nil, err
	}
	return mgr, view, nil
}

// setup registers netguard's webhooks, caches and checks on mgr, and
// returns the view of the cluster.
func setup(mgr *serving.Manager, opts Options, cfg *config.Config) (*clusterview.Cache, error) {
	// The DNS Service is read uncached: caching it would mean watching every
	// Service in the cluster for one IP.
	dns := clusterview.NewClusterDNS(cfg, mgr.GetAPIReader())
	pods := webhook.NewPodMutator(cfg, mgr.GetClient(), dns, opts.Version)
	pods.LiveReader = mgr.GetAPIReader()
	mgr.GetWebhookServer().Register(webhook.MutatePodPath, &crwebhook.Admission{Handler: pods})

	// The conflict detector and the Service selector guard register their
	// own handlers, caches and readiness checks (ready once synced). The
	// detector wraps the guard's Service handler so that it sees every
	// Service update, also those the guard skips.
	detector, err := ctrlconflicts.Setup(mgr, cfg)
	if err != nil {
		return nil, fmt.Errorf("setting up the conflict detector: %w", err)
	}
	conflicts.Setup(mgr, detector)
	view, err := setupServiceGuard(mgr, cfg, conflicts.WrapServiceHandler(detector))
	if err != nil {
		return nil, fmt.Errorf("setting up the service guard: %w", err)
	}

	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return nil, err
	}
	return view, mgr.AddReadyzCheck("webhook-server", mgr.WebhookServer().StartedChecker())
}

// setupServiceGuard wires the Service selector guard into mgr: the lean
// view of the cluster (clusterview.New), the live coverage check on it,
// and the Service and workload admission handlers, the Service handler
// wrapped by wrap.
func setupServiceGuard(mgr manager.Manager, cfg *config.Config, wrap ...func(admission.Handler) admission.Handler) (*clusterview.Cache, error) {
	view, err := clusterview.New(mgr, cfg)
	if err != nil {
		return nil, err
	}
	if err := coverage.Setup(mgr, view, cfg); err != nil {
		return nil, err
	}
	services.Setup(mgr, view, cfg, wrap...)
	return view, nil
}

// SetupReports adds the writer of the OpenReports Reports when they are
// enabled; it reads the stores of view, the Service guard's view of the
// cluster.
func SetupReports(mgr *serving.Manager, view *clusterview.Cache, cfg *config.Config, version string) error {
	if !cfg.Reports.Enabled {
		return nil
	}
	log := ctrl.Log.WithName("reports")
	if !cfg.ServiceGuard.Enabled {
		log.Info("Reports need the Service guard's view of the cluster (serviceGuard.enabled); no Reports are written")
		return nil
	}
	w, err := reports.New(mgr.GetConfig(), cfg, view.Stores(), view.Synced, mgr.Leads, version, log)
	if err != nil {
		return fmt.Errorf("setting up the Reports: %w", err)
	}
	return mgr.Add(w)
}

// modernTLS allows TLS 1.2 with forward-secret AEAD suites, and TLS 1.3.
// It also turns off HTTP/2 on the webhook server, as controller-runtime
// advises (CVE-2023-44487, rapid reset).
func modernTLS(c *tls.Config) {
	c.MinVersion = tls.VersionTLS12
	c.CipherSuites = []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
		tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	}
	c.NextProtos = []string{"http/1.1"}
}
