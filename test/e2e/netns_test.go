package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// This file holds the namespace plumbing: namespaces, links, processes,
// all removed when the test ends.

// netns is a network namespace the test created.
type netns struct {
	t    *testing.T
	name string
}

// newNetns creates a namespace with its loopback up, deleted at cleanup.
func newNetns(t *testing.T, name string) *netns {
	t.Helper()
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	ns := &netns{t: t, name: name}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	ns.ip("link", "set", "lo", "up")
	return ns
}

// ip runs `ip -n NS args...` and fails the test on error.
func (ns *netns) ip(args ...string) {
	ns.t.Helper()
	run(ns.t, "ip", append([]string{"-n", ns.name}, args...)...)
}

// exec runs a command inside the namespace and fails the test on error.
func (ns *netns) exec(args ...string) string {
	ns.t.Helper()
	return run(ns.t, "ip", append([]string{"netns", "exec", ns.name}, args...)...)
}

// link connects ns (interface local, address localAddr) to peer
// (interface eth0, address peerAddr) with a veth pair.
func (ns *netns) link(local, localAddr string, peer *netns, peerAddr string) {
	ns.t.Helper()
	ns.ip("link", "add", local, "type", "veth", "peer", "name", "eth0", "netns", peer.name)
	ns.ip("addr", "add", localAddr, "dev", local)
	peer.ip("addr", "add", peerAddr, "dev", "eth0")
	ns.ip("link", "set", local, "up")
	peer.ip("link", "set", "eth0", "up")
}

// start runs a long-lived process inside the namespace, its output in
// logPath. It is killed, by its own PID, when the test ends.
func (ns *netns) start(logPath string, args ...string) *process {
	ns.t.Helper()
	logFile, err := os.Create(logPath)
	if err != nil {
		ns.t.Fatal(err)
	}
	// `ip netns exec` execs the program itself, so the PID is the program's.
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.name}, args...)...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		ns.t.Fatalf("starting %v in %s: %v", args, ns.name, err)
	}
	p := &process{cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	ns.t.Cleanup(p.stop)
	return p
}

// process is a program started with netns.start.
type process struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	once sync.Once
}

// stop kills the process and waits for it (bounded).
func (p *process) stop() {
	p.once.Do(func() {
		_ = p.cmd.Process.Kill()
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
		}
	})
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *process) output() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// writeFile writes a file under dir and returns its path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// waitFor polls cond every 100ms until it holds or timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// uniqueName returns a namespace name prefix unique to this run.
func uniqueName() string {
	return fmt.Sprintf("ng-%d-", os.Getpid()%100000)
}
