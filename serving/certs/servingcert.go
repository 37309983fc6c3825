package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/netguard-io/netguard/serving"
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
// netguard owns, and exports that certificate's validity as metrics. It
// fails when the files cannot be read.
func WatchCertDir(mgr *serving.Manager) error {
	srv := mgr.WebhookServer()
	dir := srv.CertDir()
	watcher, err := certwatcher.New(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	if err != nil {
		return fmt.Errorf("serving certificate in %s: %w", dir, err)
	}
	// The server reads its TLS options when it starts; with GetCertificate
	// set it starts no watcher of its own.
	srv.AddTLSOption(func(c *tls.Config) { c.GetCertificate = watcher.GetCertificate })
	if err := mgr.Add(watcher); err != nil {
		return fmt.Errorf("serving certificate: %w", err)
	}
	ExportServingCertificate(watcher.GetCertificate)
	return nil
}
