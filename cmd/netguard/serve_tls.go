package main

import (
	"fmt"
	"time"

	"github.com/spf13/pflag"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/netguard-io/netguard/config"
	"github.com/netguard-io/netguard/serving"
	"github.com/netguard-io/netguard/serving/certs"
)

// selfManagedTLSOptions are the flags of `netguard serve` for running
// without cert-manager: netguard keeps its own CA and serving certificate
// and writes the caBundle of its webhook configurations.
type selfManagedTLSOptions struct {
	enabled        bool
	secret         string
	service        string
	dnsNames       []string
	configurations []string
	caDuration     time.Duration
	leafDuration   time.Duration
}

// addSelfManagedTLSFlags adds the self-managed TLS flags to f.
func addSelfManagedTLSFlags(f *pflag.FlagSet, o *selfManagedTLSOptions) {
	f.BoolVar(&o.enabled, "self-managed-tls", false, "keep a CA in --tls-secret, issue and renew the serving certificate with it, and write the CA into the caBundle of --webhook-configurations (for installs without cert-manager; --cert-dir is then not read)")
	f.StringVar(&o.secret, "tls-secret", "netguard-ca", "Secret in netguard's namespace ($POD_NAMESPACE) that holds the CA (--self-managed-tls)")
	f.StringVar(&o.service, "webhook-service", "netguard", "Service in netguard's namespace the API server calls the webhooks through; its DNS names go on the serving certificate (--self-managed-tls)")
	f.StringSliceVar(&o.dnsNames, "webhook-dns-names", nil, "extra DNS names for the serving certificate, e.g. localhost for a local server (--self-managed-tls)")
	f.StringSliceVar(&o.configurations, "webhook-configurations", []string{"netguard"}, "names of the Mutating- and ValidatingWebhookConfigurations whose caBundle netguard keeps current (--self-managed-tls)")
	f.DurationVar(&o.caDuration, "tls-ca-duration", certs.DefaultCADuration, "lifetime of the CA; renewed at two thirds of it (--self-managed-tls)")
	f.DurationVar(&o.leafDuration, "tls-leaf-duration", certs.DefaultLeafDuration, "lifetime of the serving certificate; renewed at two thirds of it (--self-managed-tls)")
}

// setup wires self-managed TLS into mgr when --self-managed-tls is set: the
// webhook server presents the certificate netguard issues itself, the CA,
// certificate and caBundle writer run with the manager, and /readyz fails
// until there is a certificate and the caBundle is written.
func (o *selfManagedTLSOptions) setup(mgr *serving.Manager, cfg *config.Config) error {
	if !o.enabled {
		return nil
	}
	namespace := cfg.Namespaces.Self
	dnsNames := append(certs.ServiceDNSNames(o.service, namespace, cfg.DNS.Search.ClusterDomain), o.dnsNames...)
	sm, err := certs.New(mgr.GetConfig(), certs.Options{
		Namespace:             namespace,
		SecretName:            o.secret,
		SecretLabels:          map[string]string{"app.kubernetes.io/name": "netguard", "app.kubernetes.io/component": "tls-ca"},
		DNSNames:              dnsNames,
		WebhookConfigurations: o.configurations,
		CADuration:            o.caDuration,
		LeafDuration:          o.leafDuration,
	}, ctrl.Log.WithName("tls"))
	if err != nil {
		return err
	}
	// The webhook server reads its TLS options when it starts, so adding one
	// here, before mgr.Start, replaces its cert-dir watcher.
	mgr.WebhookServer().AddTLSOption(sm.TLSOpt)
	if err := mgr.Add(sm); err != nil {
		return fmt.Errorf("self-managed TLS: %w", err)
	}
	if err := mgr.AddReadyzCheck("tls-certificate", sm.Ready); err != nil {
		return fmt.Errorf("self-managed TLS: %w", err)
	}
	return nil
}
