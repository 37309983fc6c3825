package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestDNSProxyMemory: the sidecar stays inside its container's memory
// limit (64Mi by default) when a pod's resolvers use TCP: 1,024 idle
// client TCP connections, of which the forwarder keeps 256 and closes the
// rest at once, and meanwhile a burst of 500 lookups over UDP whose
// answers are truncated and asked again over TCP (32 KB answers, cut to
// the client's 512 bytes), at most 16 at once: the others get the
// truncated answer and would ask over TCP themselves. The real `netguard
// dns-proxy` process, with the limit in NETGUARD_MEMORY_LIMIT as the
// webhook passes it, keeps its anonymous memory under half the limit.
func TestDNSProxyMemory(t *testing.T) {
	const (
		limit     = 64 << 20
		idleConns = 1024
		kept      = 256 // dnsproxy's maxTCPClients
		// dnsproxy's maxTCPRetries
		maxTCPRetries = 16
		lookupsN      = 500
		records       = 2000 // A records per TCP answer: about 32 KB
	)
	netguard := buildNetguard(t)
	upstream := startTruncatingUpstream(t, records)

	cmd := exec.Command(netguard, "dns-proxy", "--listen", "127.0.0.1:0", "--upstream", upstream, "--metrics-bind-address", "0")
	cmd.Env = append(os.Environ(), "NETGUARD_MEMORY_LIMIT="+strconv.Itoa(limit))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr, softLimit := readProxyStart(t, stderr)
	t.Logf("dns-proxy on %s, Go soft memory limit %d bytes (90%% of %d)", addr, softLimit, limit)
	if softLimit != limit*90/100 {
		t.Errorf("soft memory limit %d, want 90%% of the container's %d", softLimit, limit)
	}

	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range idleConns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("connection %d: %v", len(conns)+1, err)
		}
		conns = append(conns, c)
	}
	// All at once: the forwarder closes a connection idle for 10 s.
	var open, closed, wrote atomic.Int32
	var reads sync.WaitGroup
	for _, c := range conns {
		reads.Go(func() {
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			var b [1]byte
			_, err := c.Read(b[:])
			var ne net.Error
			switch {
			case errors.As(err, &ne) && ne.Timeout():
				open.Add(1)
			case err != nil:
				closed.Add(1) // EOF or reset: refused cleanly
			default:
				wrote.Add(1)
			}
		})
	}
	reads.Wait()
	t.Logf("%d idle TCP connections: %d kept open, %d closed at once", idleConns, open.Load(), closed.Load())
	if open.Load() != kept || closed.Load() != idleConns-kept || wrote.Load() != 0 {
		t.Errorf("%d kept, %d closed and %d written to; want %d, %d and 0", open.Load(), closed.Load(), wrote.Load(), kept, idleConns-kept)
	}

	// Resident anonymous memory (the heap, stacks: what the process
	// allocated, unlike the binary's file pages) is sampled through the
	// burst; the kernel keeps the peak of the whole (VmHWM).
	anonPeak := make(chan int64)
	stopSampling := make(chan struct{})
	go func() {
		var peak int64
		for {
			select {
			case <-stopSampling:
				anonPeak <- peak
				return
			case <-time.After(5 * time.Millisecond):
				peak = max(peak, procStatus(t, cmd.Process.Pid, "RssAnon:"))
			}
		}
	}()
	var wg sync.WaitGroup
	var cut, bare, failed atomic.Int32
	inFlight := make(chan struct{}, 100) // what the listener's socket buffer queues without loss
	for i := range lookupsN {
		inFlight <- struct{}{}
		wg.Go(func() {
			defer func() { <-inFlight }()
			c := &dns.Client{Net: "udp", Timeout: 10 * time.Second}
			m := new(dns.Msg)
			m.SetQuestion(fmt.Sprintf("big%d.svc.test.", i), dns.TypeA)
			r, _, err := c.Exchange(m, addr)
			switch {
			case err != nil || !r.Truncated:
				failed.Add(1)
			case len(r.Answer) > 0:
				cut.Add(1) // the TCP answer, cut to the client's size
			default:
				bare.Add(1) // the retry shed: the client asks over TCP itself
			}
		})
	}
	wg.Wait()
	close(stopSampling)
	anon := <-anonPeak
	peak := procStatus(t, cmd.Process.Pid, "VmHWM:")
	t.Logf("%d lookups: %d got the TCP answer cut to 512 bytes, %d the truncated UDP answer (TCP retry shed), %d failed; peak RSS %.1f MiB (anonymous %.1f MiB) of the %d MiB limit",
		lookupsN, cut.Load(), bare.Load(), failed.Load(), float64(peak)/(1<<20), float64(anon)/(1<<20), limit>>20)
	if failed.Load() != 0 || cut.Load() < maxTCPRetries {
		t.Errorf("%d lookups failed and %d got the TCP answer; want none failed and at least %d (the retries run at once)", failed.Load(), cut.Load(), maxTCPRetries)
	}
	// The binary's file pages (about 30 MiB of the whole) are counted
	// too, but the kernel can drop them under pressure; what the process
	// allocated cannot be.
	if anon > limit/2 || peak > limit*90/100 {
		t.Errorf("peak RSS %d bytes, anonymous %d: want anonymous under half the %d limit and the whole under the soft limit (90%%)", peak, anon, limit)
	}
}

// startTruncatingUpstream serves, on one loopback port, UDP answers with
// TC set and no records, and TCP answers with n A records.
func startTruncatingUpstream(t *testing.T, n int) string {
	t.Helper()
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		if w.RemoteAddr().Network() == "udp" {
			m.Truncated = true
		} else {
			for i := range n {
				m.Answer = append(m.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
					A:   net.IPv4(198, 51, 100, byte(i)),
				})
			}
		}
		_ = w.WriteMsg(m)
	})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		pc.Close()
		t.Skipf("TCP port of %s is taken: %v", pc.LocalAddr(), err)
	}
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: handler}, {Listener: ln, Handler: handler}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() { _ = srv.ActivateAndServe() }()
		<-started
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
	return pc.LocalAddr().String()
}

// readProxyStart reads dns-proxy's JSON log until it serves, and returns
// its listen address and the soft memory limit it logged.
func readProxyStart(t *testing.T, stderr interface{ Read([]byte) (int, error) }) (string, int64) {
	t.Helper()
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var soft int64
	timeout := time.After(10 * time.Second)
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatal("dns-proxy exited before serving")
			}
			var entry struct {
				Msg    string `json:"msg"`
				Listen string `json:"listen"`
				Bytes  int64  `json:"bytes"`
			}
			if json.Unmarshal([]byte(line), &entry) != nil {
				continue
			}
			switch entry.Msg {
			case "Go soft memory limit set":
				soft = entry.Bytes
			case "Serving DNS":
				go func() {
					for range lines { // keep the pipe drained
					}
				}()
				return entry.Listen, soft
			}
		case <-timeout:
			t.Fatal("dns-proxy did not start serving within 10 s")
		}
	}
}

// procStatus is a memory field of /proc/PID/status, such as VmHWM (the
// peak resident memory) or RssAnon, in bytes.
func procStatus(t *testing.T, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Errorf("%s %q", field, rest)
			}
			return kb << 10
		}
	}
	t.Errorf("no %s in /proc/%d/status", field, pid)
	return 0
}
