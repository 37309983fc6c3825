package webhook

import (
	"crypto/tls"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/netguard-io/netguard/config"
	"github.com/netguard-io/netguard/webhook/conflicts"
	"github.com/netguard-io/netguard/webhook/serviceguard"
)

// Options are the server settings that come from flags.
type Options struct {
	// CertDir holds tls.crt and tls.key; they are reloaded when they change.
	// Defaults to controller-runtime's <tmp>/k8s-webhook-server/serving-certs.
	CertDir string
	// Port the webhook server listens on. Defaults to 9443.
	Port int
	// Host the webhook server binds to. Defaults to all addresses.
	Host string
	// MetricsBindAddress serves /metrics; "0" disables it. Defaults to :8080.
	MetricsBindAddress string
	// HealthProbeBindAddress serves /healthz and /readyz. Defaults to :8081.
	HealthProbeBindAddress string
	// GracefulShutdownTimeout bounds how long in-flight requests may take
	// to finish after SIGTERM. Defaults to 30s.
	GracefulShutdownTimeout time.Duration
	// Version is recorded in the netguard.io/status annotation.
	Version string
}

// Scheme knows the built-in Kubernetes types netguard reads.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(fmt.Sprintf("building scheme: %v", err))
	}
	return s
}

// NewManager builds the controller-runtime manager that serves netguard's
// webhooks, metrics and health probes. Call Start on it to serve.
func NewManager(restCfg *rest.Config, opts Options, cfg *config.Config) (manager.Manager, error) {
	scheme := Scheme()
	shutdown := opts.GracefulShutdownTimeout
	if shutdown == 0 {
		shutdown = 30 * time.Second
	}
	mgr, err := ctrl.NewManager(restCfg, ctrl.Options{
		Scheme: scheme,
		WebhookServer: webhook.NewServer(webhook.Options{
			Host:    opts.Host,
			Port:    opts.Port,
			CertDir: opts.CertDir,
			TLSOpts: []func(*tls.Config){modernTLS},
		}),
		Metrics:                 metricsserver.Options{BindAddress: opts.MetricsBindAddress, TLSOpts: []func(*tls.Config){modernTLS}},
		HealthProbeBindAddress:  opts.HealthProbeBindAddress,
		GracefulShutdownTimeout: &shutdown,
	})
	if err != nil {
		return nil, fmt.Errorf("creating manager: %w", err)
	}

	// The DNS Service is read uncached: caching it would mean watching every
	// Service in the cluster for one IP.
	dns := NewClusterDNS(cfg, mgr.GetAPIReader())
	pods := NewPodMutator(cfg, mgr.GetClient(), dns, opts.Version)
	pods.LiveReader = mgr.GetAPIReader()
	mgr.GetWebhookServer().Register(MutatePodPath, &webhook.Admission{Handler: pods})

	// The conflict detector and the Service selector guard register their
	// own handlers, caches and readiness checks (ready once synced). The
	// detector wraps the guard's Service handler so that it sees every
	// Service update, also those the guard skips.
	detector, err := conflicts.Setup(mgr, cfg)
	if err != nil {
		return nil, fmt.Errorf("setting up the conflict detector: %w", err)
	}
	if _, err := serviceguard.Setup(mgr, cfg, detector.WrapServiceHandler); err != nil {
		return nil, fmt.Errorf("setting up the service guard: %w", err)
	}

	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("webhook-server", mgr.GetWebhookServer().StartedChecker()); err != nil {
		return nil, err
	}
	return mgr, nil
}

// modernTLS allows TLS 1.2 with forward-secret AEAD suites, and TLS 1.3.
// It also turns off HTTP/2 on the webhook and metrics servers, as
// controller-runtime advises (CVE-2023-44487, rapid reset).
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
