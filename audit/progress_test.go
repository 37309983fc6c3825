package audit

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestThousands(t *testing.T) {
	for n, want := range map[int]string{0: "0", 7: "7", 999: "999", 1000: "1,000", 40000: "40,000", 1234567: "1,234,567", -1500: "-1,500"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestProgressLine(t *testing.T) {
	var p progress
	if got := p.line(); got != "netguard audit: starting..." {
		t.Errorf("before the first list: %q", got)
	}
	p.add("") // before start: counted, not a panic
	p.start("namespaces")
	if got := p.line(); got != "netguard audit: listing namespaces..." {
		t.Errorf("before the first page: %q", got)
	}
	p.add("")
	p.add("")
	if got := p.line(); got != "netguard audit: listed 2 namespaces..." {
		t.Errorf("namespaces: %q", got)
	}
	p.start("pods")
	for i := range 40000 {
		p.add([]string{"a", "b", "c"}[i*3/40000])
	}
	p.add("a") // out of order: still three namespaces
	if got := p.line(); got != "netguard audit: listed 40,001 pods in 3 namespaces..." {
		t.Errorf("pods: %q", got)
	}
}

// syncBuffer is a bytes.Buffer safe for the progress goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestProgressRun(t *testing.T) {
	var p progress
	p.start("pods")
	p.add("team")

	// A scan shorter than the interval prints nothing.
	var quiet syncBuffer
	p.run(&quiet, time.Hour)()
	if quiet.String() != "" {
		t.Errorf("a quick scan printed %q", quiet.String())
	}

	var out syncBuffer
	stop := p.run(&out, time.Millisecond)
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(out.String(), "\n") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no progress lines within 10s: %q", out.String())
		}
		time.Sleep(time.Millisecond)
	}
	stop()
	after := out.String()
	if !strings.HasPrefix(after, "netguard audit: listed 1 pods in 1 namespace...\n") {
		t.Errorf("progress output %q", after)
	}
	time.Sleep(5 * time.Millisecond)
	if out.String() != after {
		t.Error("progress lines after stop")
	}
}
