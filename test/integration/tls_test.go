package integration

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"testing"
)

// TestWebhookTLSPolicy: netguard serve speaks TLS 1.2 with forward-secret
// AEAD suites, or TLS 1.3, and nothing older or weaker.
func TestWebhookTLSPolicy(t *testing.T) {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(cp.CAData)
	addr := fmt.Sprintf("127.0.0.1:%d", server.WebhookPort)
	tests := map[string]struct {
		cfg    *tls.Config
		accept bool
	}{
		"TLS 1.3":             {cfg: &tls.Config{MinVersion: tls.VersionTLS13}, accept: true},
		"TLS 1.2 ECDHE GCM":   {cfg: &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}}, accept: true},
		"TLS 1.2 CBC":         {cfg: &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}}},
		"TLS 1.2 without PFS": {cfg: &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256}}},
		"TLS 1.1":             {cfg: &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cfg := tc.cfg.Clone()
			cfg.RootCAs, cfg.ServerName = pool, "127.0.0.1"
			conn, err := tls.Dial("tcp", addr, cfg)
			if err == nil {
				conn.Close()
			}
			if tc.accept && err != nil {
				t.Fatalf("handshake refused: %v", err)
			}
			if !tc.accept && err == nil {
				t.Fatalf("handshake accepted; netguard must refuse %s", name)
			}
		})
	}
}
