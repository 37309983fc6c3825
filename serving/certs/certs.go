package certs

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"time"

	cmtls "github.com/cert-manager/cert-manager/pkg/server/tls"
	"github.com/cert-manager/cert-manager/pkg/server/tls/authority"
	"github.com/go-logr/logr"
	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// Defaults of Options.
const (
	DefaultCADuration   = 365 * 24 * time.Hour
	DefaultLeafDuration = 7 * 24 * time.Hour
	// DefaultGrace is how long the previous CA stays in caBundle after a
	// rotation.
	DefaultGrace = 10 * time.Minute
	// CACommonName is the subject of netguard's CA.
	CACommonName = "netguard-ca"
)

// Options configure SelfManaged.
type Options struct {
	// Namespace holds the CA Secret: netguard's own namespace. Required.
	Namespace string
	// SecretName names the CA Secret. Required.
	SecretName string
	// SecretLabels are set on the CA Secret when netguard creates it.
	SecretLabels map[string]string
	// DNSNames go on the serving certificate: the names the API server
	// calls the webhook Service by (see ServiceDNSNames). Required.
	DNSNames []string
	// WebhookConfigurations are names of netguard's Mutating- and
	// ValidatingWebhookConfigurations; every webhook in them gets the CA
	// as caBundle. A name without a configuration of one kind is skipped.
	WebhookConfigurations []string
	// CADuration is the lifetime of the CA. Defaults to DefaultCADuration.
	CADuration time.Duration
	// LeafDuration is the lifetime of the serving certificate; it must be
	// shorter than CADuration. Defaults to DefaultLeafDuration.
	LeafDuration time.Duration
	// Grace is how long caBundle keeps the previous CA after a rotation.
	// Defaults to DefaultGrace.
	Grace time.Duration
}

// ServiceDNSNames are the names of a Service that the API server may use
// to call a webhook behind it.
func ServiceDNSNames(service, namespace, clusterDomain string) []string {
	names := []string{
		service,
		service + "." + namespace,
		service + "." + namespace + ".svc",
	}
	if clusterDomain != "" {
		names = append(names, service+"."+namespace+".svc."+clusterDomain)
	}
	return names
}

// SelfManaged is netguard's CA, serving certificate and caBundle writer. It
// is a manager.Runnable that runs on every replica.
type SelfManaged struct {
	opts      Options
	authority *authority.DynamicAuthority
	source    *cmtls.DynamicSource
	injector  *injector
	log       logr.Logger
}

var (
	_ manager.Runnable               = (*SelfManaged)(nil)
	_ manager.LeaderElectionRunnable = (*SelfManaged)(nil)
	_ healthz.Checker                = (*SelfManaged)(nil).Ready
)

// New returns a SelfManaged that talks to the API server with restCfg.
// Nothing happens until Start.
func New(restCfg *rest.Config, opts Options, log logr.Logger) (*SelfManaged, error) {
	if opts.CADuration == 0 {
		opts.CADuration = DefaultCADuration
	}
	if opts.LeafDuration == 0 {
		opts.LeafDuration = DefaultLeafDuration
	}
	if opts.Grace == 0 {
		opts.Grace = DefaultGrace
	}
	var errs []error
	if opts.Namespace == "" {
		errs = append(errs, errors.New("namespace of the CA Secret is empty"))
	}
	if opts.SecretName == "" {
		errs = append(errs, errors.New("name of the CA Secret is empty"))
	}
	if len(opts.DNSNames) == 0 {
		errs = append(errs, errors.New("no DNS names for the serving certificate"))
	}
	if opts.LeafDuration >= opts.CADuration {
		errs = append(errs, fmt.Errorf("serving certificate lifetime %s must be shorter than the CA's %s", opts.LeafDuration, opts.CADuration))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("self-managed TLS: %w", err)
	}
	client, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return nil, fmt.Errorf("self-managed TLS: %w", err)
	}
	ca := &authority.DynamicAuthority{
		SecretNamespace: opts.Namespace,
		SecretName:      opts.SecretName,
		SecretLabels:    opts.SecretLabels,
		RESTConfig:      restCfg,
		CommonName:      CACommonName,
		CADuration:      opts.CADuration,
		LeafDuration:    opts.LeafDuration,
	}
	return &SelfManaged{
		opts:      opts,
		authority: ca,
		source:    &cmtls.DynamicSource{DNSNames: opts.DNSNames, Authority: ca},
		injector: &injector{
			client:     client,
			namespace:  opts.Namespace,
			secretName: opts.SecretName,
			names:      opts.WebhookConfigurations,
			grace:      opts.Grace,
			now:        time.Now,
			log:        log.WithName("cabundle"),
		},
		log: log,
	}, nil
}

// Start runs the CA, the serving certificate and the caBundle writer until
// ctx ends, and exports the serving certificate's validity as metrics. It
// implements manager.Runnable.
func (s *SelfManaged) Start(ctx context.Context) error {
	s.log.Info("Self-managed TLS", "secret", s.opts.Namespace+"/"+s.opts.SecretName,
		"dnsNames", s.opts.DNSNames, "webhookConfigurations", s.opts.WebhookConfigurations)
	ExportServingCertificate(s.GetCertificate)
	// cert-manager's code logs through the logger in its context.
	ctx = logr.NewContext(ctx, s.log)
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := s.source.Start(ctx); err != nil {
			return fmt.Errorf("serving certificate: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		if err := s.injector.run(ctx); err != nil {
			return fmt.Errorf("caBundle: %w", err)
		}
		return nil
	})
	return g.Wait()
}

// NeedLeaderElection implements manager.LeaderElectionRunnable: every
// replica serves, so every replica needs a certificate.
func (*SelfManaged) NeedLeaderElection() bool { return false }

// GetCertificate returns the current serving certificate; it is the
// tls.Config hook.
func (s *SelfManaged) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.source.GetCertificate(hello)
}

// TLSOpt makes a TLS server present the current serving certificate. Add
// it to the webhook server's TLSOpts; the server then reads no cert-dir.
func (s *SelfManaged) TLSOpt(c *tls.Config) {
	c.GetCertificate = s.GetCertificate
}

// Ready fails until there is a serving certificate and the last caBundle
// pass succeeded. It is a healthz.Checker for /readyz.
func (s *SelfManaged) Ready(_ *http.Request) error {
	if !s.source.Healthy() {
		return errors.New("no serving certificate yet")
	}
	return s.injector.ready()
}
