package framework

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// BuildNetguard builds the netguard binary into dir.
func BuildNetguard(dir string) (string, error) {
	bin := filepath.Join(dir, "netguard")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/netguard-io/netguard/cmd/netguard")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building netguard: %w\n%s", err, out)
	}
	return bin, nil
}

// Server is a `netguard serve` process.
type Server struct {
	cmd *exec.Cmd
	// WebhookPort is the port the webhook server bound (it listens on all
	// addresses); HealthAddr serves /healthz and /readyz, MetricsAddr
	// /metrics. netguard picks free ports itself and logs them.
	WebhookPort             int
	HealthAddr, MetricsAddr string
	// PprofAddr serves /debug/pprof/ when netguard was started with
	// --pprof-bind-address; empty otherwise.
	PprofAddr string
	// LogFile has the server's output.
	LogFile string
	done    chan error
	killed  bool
}

// WebhookURL is the URL the API server calls s at for path.
func (s *Server) WebhookURL(path string) string {
	return fmt.Sprintf("https://127.0.0.1:%d%s", s.WebhookPort, path)
}

// StartServer runs `netguard serve` against the control plane, waits until
// it is ready and leads (records Events), points the webhook configurations
// the control plane installed at it and waits until the API server calls it
// through them.
// configFile may be empty.
func (cp *ControlPlane) StartServer(ctx context.Context, binary, configFile string, extraArgs ...string) (*Server, error) {
	s, err := cp.LaunchServer(binary, configFile, extraArgs...)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Server, error) {
		_ = s.Kill()
		return nil, fmt.Errorf("%w; log:\n%s", err, s.Log())
	}
	if err := s.WaitReady(ctx, 60*time.Second); err != nil {
		return fail(err)
	}
	// Only the leader records Events.
	if !slices.Contains(extraArgs, "--leader-elect=false") {
		if err := s.WaitLeader(ctx); err != nil {
			return fail(err)
		}
	}
	if len(cp.installed) == 0 {
		return s, nil
	}
	if err := PointWebhooks(ctx, cp.Client, s.WebhookURL(""), nil, "netguard"); err != nil {
		return fail(err)
	}
	for _, kind := range []string{KindMutating, KindValidating} {
		if cp.installed[kind] {
			if err := cp.WaitCalled(ctx, s, kind); err != nil {
				return fail(err)
			}
		}
	}
	return s, nil
}

// LaunchServer runs `netguard serve` against the control plane, with every
// port picked by netguard, and returns once netguard has logged the
// addresses it bound; it does not wait for readiness.
func (cp *ControlPlane) LaunchServer(binary, configFile string, extraArgs ...string) (*Server, error) {
	args := []string{"serve",
		"--kubeconfig", cp.Kubeconfig,
		"--cert-dir", cp.CertDir,
		"--port", "0",
		"--metrics-bind-address", "127.0.0.1:0",
		"--health-probe-bind-address", "127.0.0.1:0",
		"--graceful-shutdown-timeout", "10s",
		// Local servers stop at once; the chart's pods drain (test/node).
		"--shutdown-delay", "0s",
		// Short leases: a server started after one was killed takes over
		// within seconds.
		"--leader-elect-lease-duration", "4s",
		"--leader-elect-renew-deadline", "3s",
		"--leader-elect-retry-period", "500ms",
	}
	if configFile != "" {
		args = append(args, "--config", configFile)
	}
	args = append(args, extraArgs...)
	logFile := filepath.Join(cp.CertDir, fmt.Sprintf("netguard-serve-%d.log", time.Now().UnixNano()))
	out, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(binary, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), "POD_NAMESPACE=netguard")
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("starting netguard serve: %w", err)
	}
	s := &Server{cmd: cmd, LogFile: logFile, done: make(chan error, 1)}
	go func() { s.done <- cmd.Wait(); out.Close() }()
	if err := s.readBoundAddresses(60 * time.Second); err != nil {
		_ = s.Kill()
		return nil, fmt.Errorf("%w; log:\n%s", err, s.Log())
	}
	return s, nil
}

// startLine is the log line in which netguard serve gives the addresses it
// bound.
type startLine struct {
	Msg     string `json:"msg"`
	Webhook string `json:"webhook"`
	Metrics string `json:"metrics"`
	Health  string `json:"health"`
	Pprof   string `json:"pprof"`
}

// readBoundAddresses waits for netguard's "Starting netguard" log line.
func (s *Server) readBoundAddresses(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		for _, line := range strings.Split(s.Log(), "\n") {
			var l startLine
			if json.Unmarshal([]byte(line), &l) != nil || l.Msg != "Starting netguard" {
				continue
			}
			_, port, err := net.SplitHostPort(l.Webhook)
			if err != nil {
				return fmt.Errorf("netguard serve logged webhook address %q: %w", l.Webhook, err)
			}
			if s.WebhookPort, err = strconv.Atoi(port); err != nil {
				return fmt.Errorf("netguard serve logged webhook address %q: %w", l.Webhook, err)
			}
			s.HealthAddr, s.MetricsAddr, s.PprofAddr = l.Health, l.Metrics, l.Pprof
			return nil
		}
		select {
		case err := <-s.done:
			s.done <- err
			return fmt.Errorf("netguard serve exited before it listened: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("netguard serve did not log its addresses within %s", timeout)
		}
	}
}

// Probe returns the HTTP status of path (/healthz, /readyz) on the health
// probe address, or 0 when nothing answers.
func (s *Server) Probe(path string) int {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + s.HealthAddr + path)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// PID is the process id of the server.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// Running reports whether the process has not exited.
func (s *Server) Running() bool {
	select {
	case err := <-s.done:
		s.done <- err
		return false
	default:
		return true
	}
}

// WaitReady waits until /readyz passes, for at most timeout; it fails at
// once if the process exits.
func (s *Server) WaitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	url := "http://" + s.HealthAddr + "/readyz"
	for {
		select {
		case err := <-s.done:
			s.done <- err
			return fmt.Errorf("netguard serve exited before it was ready: %v", err)
		case <-ctx.Done():
			return fmt.Errorf("netguard serve not ready at %s: %w", url, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
	}
}

// Log returns what the server has written so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.LogFile)
	return string(b)
}

// Stop sends SIGTERM and waits for the server to exit (SIGKILL after 20s).
// Stopping a server that Kill already ended is not an error.
func (s *Server) Stop() error {
	if s.killed {
		return nil
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.done:
		s.done <- err
		return exitErr(err)
	case <-time.After(20 * time.Second):
		_ = s.Kill()
		return errors.New("netguard serve did not stop within 20s of SIGTERM")
	}
}

// Kill stops the server at once, as a crash would.
func (s *Server) Kill() error {
	s.killed = true
	_ = s.cmd.Process.Kill()
	err := <-s.done
	s.done <- err
	return nil
}

// Wait returns the server's exit error once it has exited.
func (s *Server) Wait() error {
	err := <-s.done
	s.done <- err
	return exitErr(err)
}

func exitErr(err error) error {
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.Exited() && exit.ExitCode() == 0 {
		return nil
	}
	return err
}
