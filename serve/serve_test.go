package serve

import (
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/netguard-io/netguard/config"
)

// TestShutdownDelayWithinTheTimeout: a shutdown delay the graceful shutdown
// timeout would cut short is refused before anything is opened, naming both.
func TestShutdownDelayWithinTheTimeout(t *testing.T) {
	for _, tc := range []struct{ delay, timeout time.Duration }{
		{20 * time.Second, 20 * time.Second},
		{40 * time.Second, 0}, // the timeout's default, 30s
	} {
		_, _, err := NewManager(&rest.Config{Host: "https://127.0.0.1:1"}, Options{ShutdownDelay: tc.delay, GracefulShutdownTimeout: tc.timeout}, config.Default())
		if err == nil || !strings.Contains(err.Error(), "shutdown delay") || !strings.Contains(err.Error(), "graceful shutdown timeout") {
			t.Errorf("delay %s, timeout %s: err = %v, want one naming the shutdown delay and the graceful shutdown timeout", tc.delay, tc.timeout, err)
		}
	}
}
