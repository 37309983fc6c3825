package serving

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/netguard-io/netguard/internal/testlog"
)

func init() { testlog.Discard() }

func TestListenPicksFreePortsAndReportsThem(t *testing.T) {
	l, err := Listen(Addresses{WebhookHost: "127.0.0.1", Metrics: "127.0.0.1:0", Health: "127.0.0.1:0", Pprof: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	bound := l.Bound()
	if len(bound) != 8 || bound[6] != "pprof" {
		t.Fatalf("Bound() = %v, want webhook, metrics, health and pprof", bound)
	}
	seen := map[string]bool{}
	for i := 0; i < len(bound); i += 2 {
		addr := bound[i+1].(string)
		_, port, err := net.SplitHostPort(addr)
		if err != nil || port == "0" {
			t.Fatalf("%s bound %q, want a real port", bound[i], addr)
		}
		if seen[addr] {
			t.Fatalf("%s bound %q twice: %v", bound[i], addr, bound)
		}
		seen[addr] = true
	}
}

func TestListenDisabledEndpoints(t *testing.T) {
	for _, off := range []string{"", "0"} {
		l, err := Listen(Addresses{WebhookHost: "127.0.0.1", Metrics: off, Health: off, Pprof: off})
		if err != nil {
			t.Fatal(err)
		}
		if l.Metrics != nil || l.Health != nil || l.Pprof != nil {
			t.Errorf("%q did not disable metrics, health and pprof: %v", off, l.Bound())
		}
		if len(l.Bound()) != 6 {
			t.Errorf("Bound() lists a disabled pprof endpoint: %v", l.Bound())
		}
		l.Close()
	}
}

func TestListenNamesTheEndpointItCannotBind(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cases := map[string]Addresses{
		"metrics endpoint":      {WebhookHost: "127.0.0.1", Metrics: taken.Addr().String()},
		"health probe endpoint": {WebhookHost: "127.0.0.1", Health: taken.Addr().String()},
		"pprof endpoint":        {WebhookHost: "127.0.0.1", Pprof: taken.Addr().String()},
		"webhook server":        {WebhookHost: "127.0.0.1", WebhookPort: taken.Addr().(*net.TCPAddr).Port},
		"must be 0..65535":      {WebhookPort: 70000},
	}
	for want, a := range cases {
		l, err := Listen(a)
		if err == nil {
			l.Close()
			t.Errorf("%s: no error for %+v", want, a)
			continue
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
}

// TestManagerServesProbesAndMetrics starts a manager with no webhooks:
// /healthz and /readyz run the checks added to it, /metrics serves
// controller-runtime's registry, /debug/pprof/ the profiler, and every
// socket is closed once it stops.
func TestManagerServesProbesAndMetrics(t *testing.T) {
	l, err := Listen(Addresses{WebhookHost: "127.0.0.1", Metrics: "127.0.0.1:0", Health: "127.0.0.1:0", Pprof: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	mgr, err := NewManager(&rest.Config{Host: "https://127.0.0.1:1"}, manager.Options{}, l, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := mgr.AddHealthzCheck("ping", func(*http.Request) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := mgr.AddReadyzCheck("never", func(*http.Request) error { return errors.New("not yet") }); err != nil {
		t.Fatal(err)
	}
	if err := mgr.AddReadyzCheck("never", func(*http.Request) error { return nil }); err == nil {
		t.Error("a second check of the same name was accepted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()

	get := func(addr, path string) (int, string) {
		deadline := time.Now().Add(20 * time.Second)
		for {
			resp, err := http.Get("http://" + addr + path)
			if err == nil {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				return resp.StatusCode, string(body)
			}
			if time.Now().After(deadline) {
				t.Fatalf("GET %s: %v", path, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if code, body := get(l.Health.Addr().String(), "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d %s", code, body)
	}
	if code, body := get(l.Health.Addr().String(), "/readyz"); code != http.StatusInternalServerError || !strings.Contains(body, "never") {
		t.Errorf("/readyz = %d %q, want 500 naming the failing check", code, body)
	}
	if code, body := get(l.Metrics.Addr().String(), "/metrics"); code != http.StatusOK || !strings.Contains(body, "controller_runtime_webhook_panics_total") {
		t.Errorf("/metrics = %d without controller-runtime's registry:\n%s", code, body)
	}
	if code, body := get(l.Pprof.Addr().String(), "/debug/pprof/heap?debug=1"); code != http.StatusOK || !strings.Contains(body, "heap profile") {
		t.Errorf("/debug/pprof/heap = %d, not a heap profile:\n%.200s", code, body)
	}
	if err := mgr.AddReadyzCheck("late", func(*http.Request) error { return nil }); err == nil {
		t.Error("a check added after Start was accepted")
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Start: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the manager did not stop")
	}
	for _, ln := range []net.Listener{l.Webhook, l.Metrics, l.Health, l.Pprof} {
		if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after the manager stopped", ln.Addr())
		}
	}
}
