package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
)

// Names of the serving certificate's metrics. They follow cert-manager's
// certmanager_certificate_*_timestamp_seconds, so the same alerting habits
// apply; these describe the certificate the webhook server presents now,
// whoever issued it.
const (
	MetricServingCertificateExpiration = "netguard_tls_serving_certificate_expiration_timestamp_seconds"
	MetricServingCertificateNotBefore  = "netguard_tls_serving_certificate_not_before_timestamp_seconds"
)

// GetCertificateFunc returns the certificate a TLS server presents, as
// tls.Config.GetCertificate does.
type GetCertificateFunc func(*tls.ClientHelloInfo) (*tls.Certificate, error)

// servingCertificate exports the validity of the certificate the webhook
// server presents. It reads the certificate at every scrape, so a rotation
// shows at the next scrape without any hook into the rotation itself.
type servingCertificate struct {
	source    atomic.Pointer[GetCertificateFunc]
	notAfter  *prometheus.Desc
	notBefore *prometheus.Desc
}

var servingCert = &servingCertificate{
	notAfter: prometheus.NewDesc(MetricServingCertificateExpiration,
		"The time after which the certificate the webhook server presents is invalid (its notAfter), in Unix seconds.", nil, nil),
	notBefore: prometheus.NewDesc(MetricServingCertificateNotBefore,
		"The time before which the certificate the webhook server presents is invalid (its notBefore), in Unix seconds.", nil, nil),
}

var _ prometheus.Collector = (*servingCertificate)(nil)

func init() {
	metrics.Registry.MustRegister(servingCert)
}

// ExportServingCertificate makes /metrics report the validity of the
// certificate get returns: the one the webhook server presents. Nothing is
// reported while get has no certificate.
func ExportServingCertificate(get GetCertificateFunc) {
	servingCert.source.Store(&get)
}

// Describe implements prometheus.Collector.
func (c *servingCertificate) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.notAfter
	ch <- c.notBefore
}

// Collect implements prometheus.Collector.
func (c *servingCertificate) Collect(ch chan<- prometheus.Metric) {
	get := c.source.Load()
	if get == nil {
		return
	}
	cert, err := (*get)(nil)
	if err != nil || cert == nil {
		return
	}
	leaf, err := leafOf(cert)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.notAfter, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.notAfter, prometheus.GaugeValue, float64(leaf.NotAfter.Unix()))
	ch <- prometheus.MustNewConstMetric(c.notBefore, prometheus.GaugeValue, float64(leaf.NotBefore.Unix()))
}

// leafOf returns the parsed leaf of cert.
func leafOf(cert *tls.Certificate) (*x509.Certificate, error) {
	if cert.Leaf != nil {
		return cert.Leaf, nil
	}
	if len(cert.Certificate) == 0 {
		return nil, errors.New("serving certificate has no certificate data")
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("parsing the serving certificate: %w", err)
	}
	return leaf, nil
}

// WatchCertDir makes the webhook server of mgr present tls.crt and tls.key
// of its cert-dir, reloaded when they change, through a certificate watcher
// netguard owns, and exports that certificate's validity as metrics.
// controller-runtime's server would run the same watcher itself, but would
// keep it out of reach. It fails when the files cannot be read.
func WatchCertDir(mgr manager.Manager) error {
	srv, ok := mgr.GetWebhookServer().(*ctrlwebhook.DefaultServer)
	if !ok {
		return fmt.Errorf("serving certificate: unexpected webhook server %T", mgr.GetWebhookServer())
	}
	// controller-runtime's defaults, for options left empty.
	dir, certName, keyName := srv.Options.CertDir, srv.Options.CertName, srv.Options.KeyName
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "k8s-webhook-server", "serving-certs")
	}
	if certName == "" {
		certName = "tls.crt"
	}
	if keyName == "" {
		keyName = "tls.key"
	}
	watcher, err := certwatcher.New(filepath.Join(dir, certName), filepath.Join(dir, keyName))
	if err != nil {
		return fmt.Errorf("serving certificate in %s: %w", dir, err)
	}
	// The server reads TLSOpts when it starts; with GetCertificate set it
	// starts no watcher of its own.
	srv.Options.TLSOpts = append(srv.Options.TLSOpts, func(c *tls.Config) { c.GetCertificate = watcher.GetCertificate })
	if err := mgr.Add(watcher); err != nil {
		return fmt.Errorf("serving certificate: %w", err)
	}
	ExportServingCertificate(watcher.GetCertificate)
	return nil
}
