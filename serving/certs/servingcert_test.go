package certs

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/netguard-io/netguard/serving"
)

// servingPair makes a serving certificate valid from notBefore to notAfter
// (whole seconds, as X.509 stores them) and its key, PEM-encoded.
func servingPair(t *testing.T, notBefore, notAfter time.Time) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "netguard.netguard.svc"},
		DNSNames:     []string{"netguard.netguard.svc"},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}

// writePair writes tls.crt and tls.key into dir, each by rename so that a
// watcher never reads half a file.
func writePair(t *testing.T, dir string, certPEM, keyPEM []byte) {
	t.Helper()
	for name, data := range map[string][]byte{"tls.key": keyPEM, "tls.crt": certPEM} {
		tmp := filepath.Join(dir, "."+name+".tmp")
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
}

// servingGauges gathers controller-runtime's registry, as /metrics serves
// it, and returns the serving certificate's gauges (absent: -1).
func servingGauges(t *testing.T) (notBefore, notAfter float64) {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatalf("gathering metrics: %v", err)
	}
	notBefore, notAfter = -1, -1
	for _, f := range families {
		if len(f.GetMetric()) != 1 || f.GetType() != dto.MetricType_GAUGE {
			continue
		}
		switch f.GetName() {
		case MetricServingCertificateExpiration:
			notAfter = f.GetMetric()[0].GetGauge().GetValue()
		case MetricServingCertificateNotBefore:
			notBefore = f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return notBefore, notAfter
}

func TestServingCertificateMetrics(t *testing.T) {
	t.Cleanup(func() { ExportServingCertificate(nil) })
	notBefore := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	notAfter := notBefore.Add(7 * 24 * time.Hour)
	certPEM, keyPEM := servingPair(t, notBefore, notAfter)
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pair.Leaf = nil // as a source that does not parse the leaf hands it out

	var current *tls.Certificate
	ExportServingCertificate(func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		if current == nil {
			return nil, os.ErrNotExist
		}
		return current, nil
	})
	if nb, na := servingGauges(t); nb != -1 || na != -1 {
		t.Errorf("without a certificate the gauges are reported: notBefore %v, notAfter %v", nb, na)
	}
	current = &pair
	nb, na := servingGauges(t)
	if na != float64(notAfter.Unix()) || nb != float64(notBefore.Unix()) {
		t.Errorf("gauges notBefore %v, notAfter %v; the certificate's are %d and %d", nb, na, notBefore.Unix(), notAfter.Unix())
	}
}

// TestServingCertificateMetricsFollowRotation: with controller-runtime's
// certificate watcher as the source, as in the cert-dir mode, the gauge
// follows the files when they are replaced.
func TestServingCertificateMetricsFollowRotation(t *testing.T) {
	t.Cleanup(func() { ExportServingCertificate(nil) })
	dir := t.TempDir()
	start := time.Now().Truncate(time.Second)
	first, firstKey := servingPair(t, start.Add(-time.Hour), start.Add(24*time.Hour))
	writePair(t, dir, first, firstKey)
	watcher, err := certwatcher.New(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	if err != nil {
		t.Fatal(err)
	}
	watcher = watcher.WithWatchInterval(100 * time.Millisecond)
	ExportServingCertificate(watcher.GetCertificate)
	if _, na := servingGauges(t); na != float64(start.Add(24*time.Hour).Unix()) {
		t.Fatalf("notAfter gauge %v, want the first certificate's %d", na, start.Add(24*time.Hour).Unix())
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- watcher.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	renewed := start.Add(90 * 24 * time.Hour)
	second, secondKey := servingPair(t, start, renewed)
	writePair(t, dir, second, secondKey)
	deadline := time.Now().Add(30 * time.Second)
	for {
		nb, na := servingGauges(t)
		if na == float64(renewed.Unix()) && nb == float64(start.Unix()) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the files were replaced the gauges are notBefore %v, notAfter %v; want %d and %d", nb, na, start.Unix(), renewed.Unix())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestWatchCertDir: the webhook server presents the cert-dir's certificate
// through netguard's watcher, and its validity is exported; a cert-dir
// without a certificate is an error that names the directory.
func TestWatchCertDir(t *testing.T) {
	t.Cleanup(func() { ExportServingCertificate(nil) })
	newManager := func(dir string) *serving.Manager {
		t.Helper()
		l, err := serving.Listen(serving.Addresses{WebhookHost: "127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		mgr, err := serving.NewManager(&rest.Config{Host: "https://127.0.0.1:1"}, manager.Options{}, l, dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		return mgr
	}

	empty := t.TempDir()
	err := WatchCertDir(newManager(empty))
	if err == nil || !strings.Contains(err.Error(), empty) {
		t.Errorf("WatchCertDir on an empty directory: %v; want an error naming %s", err, empty)
	}

	dir := t.TempDir()
	notAfter := time.Now().Add(48 * time.Hour).Truncate(time.Second)
	certPEM, keyPEM := servingPair(t, notAfter.Add(-72*time.Hour), notAfter)
	writePair(t, dir, certPEM, keyPEM)
	mgr := newManager(dir)
	if err := WatchCertDir(mgr); err != nil {
		t.Fatal(err)
	}
	if _, na := servingGauges(t); na != float64(notAfter.Unix()) {
		t.Errorf("notAfter gauge %v, want %d", na, notAfter.Unix())
	}
	cfg := mgr.WebhookServer().TLSConfig()
	if cfg.GetCertificate == nil {
		t.Fatal("the webhook server's TLS options set no GetCertificate; it would start a watcher netguard cannot see")
	}
	served, err := cfg.GetCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(served.Certificate[0]) != string(mustDER(t, certPEM)) {
		t.Error("the webhook server presents a certificate other than the cert-dir's")
	}
}

func mustDER(t *testing.T, certPEM []byte) []byte {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatal("no PEM block")
	}
	return block.Bytes
}
