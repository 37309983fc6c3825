package serving

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"testing"
	"time"
)

// TestWebhookServerDrainsBeforeClosing: told to stop, the server answers
// on the keep-alive connection a client already holds, with "Connection:
// close" and with a live request context, and accepts new connections,
// until ShutdownDelay has passed; only then does it close its socket.
// Without the delay the idle connection is closed at once, and a review
// written to it as that happens is lost.
func TestWebhookServerDrainsBeforeClosing(t *testing.T) {
	cert, roots := selfSigned(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewWebhookServer(l, t.TempDir(), func(c *tls.Config) {
		c.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert, nil }
	})
	s.ShutdownDelay = 5 * time.Second
	s.WebhookMux().HandleFunc("/review", func(w http.ResponseWriter, r *http.Request) {
		if err := r.Context().Err(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, "reviewed")
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Start(ctx) }()

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, MaxIdleConnsPerHost: 1}}
	url := "https://" + l.Addr().String() + "/review"
	// review POSTs one review; reused says whether it went over a kept
	// connection, closing whether the server closes that connection after it.
	review := func() (reused, closing bool, err error) {
		trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}
		req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodPost, url, strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			return reused, false, err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || string(body) != "reviewed" {
			t.Fatalf("review = %d %q", resp.StatusCode, body)
		}
		return reused, resp.Close, nil
	}

	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, _, err := review(); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("the server never answered: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The connection is idle in the client's pool now; the server stops.
	cancel()
	for i := 0; ; i++ {
		reused, closing, err := review()
		if err != nil {
			t.Fatalf("review %d after the server was told to stop: %v", i, err)
		}
		if i == 0 && !reused {
			t.Error("the first review after the stop did not go over the kept connection")
		}
		if closing {
			break
		}
		if i == 1000 {
			t.Fatal("the server never answered Connection: close while draining")
		}
	}
	if reused, closing, err := review(); err != nil || reused || !closing {
		t.Errorf("a review on a new connection while draining: reused %v, closing %v, err %v; want answered on a new connection, closing it", reused, closing, err)
	}

	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the server did not stop")
	}
	if _, _, err := review(); err == nil {
		t.Error("the server still answers after it stopped")
	}
}

// selfSigned returns a certificate for 127.0.0.1 and a pool that trusts it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "netguard-test"},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}
