// Package lib_test tests step.sh, the progress lines of the scripts'
// long steps: a step that succeeds shows a line when it starts and one
// when it ends, and none of its command's output; a step that fails shows
// the end of that output and where the rest is, and stops the script.
package lib_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// run runs script with bash after sourcing step.sh, logs going under a
// temporary cache directory. It fails the test when the script hangs, or
// leaves something holding its output open (a heartbeat that outlived it).
func run(t *testing.T, script string, env ...string) (stdout, stderr string, code int, cache string) {
	t.Helper()
	cache = t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", "set -euo pipefail\n. ./step.sh\n"+script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.Env = append(os.Environ(), append([]string{"XDG_CACHE_HOME=" + cache, "NETGUARD_VERBOSE=", "NETGUARD_STEP_HEARTBEAT=0"}, env...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("the script did not end in 30 s\nstderr:\n%s", errOut.String())
	}
	if errors.Is(err, exec.ErrWaitDelay) {
		t.Fatalf("something the script started still held its output 5 s after it exited\nstderr:\n%s", errOut.String())
	}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return out.String(), errOut.String(), code, cache
}

func lines(s string) []string { return strings.Split(strings.TrimRight(s, "\n"), "\n") }

func logs(t *testing.T, cache string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(cache, "netguard", "logs", "*.log"))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestSuccessIsTwoLines(t *testing.T) {
	stdout, stderr, code, cache := run(t, `
step "Building a thing (first run only, about 1 s)" bash -c 'for i in 1 2 3; do echo "go: downloading module$i"; echo "compile chatter $i" >&2; done'
step_cached "a cached thing"
echo the-path`)
	if code != 0 {
		t.Fatalf("exit code %d, stderr:\n%s", code, stderr)
	}
	if stdout != "the-path\n" {
		t.Errorf("stdout = %q, want only the script's own line", stdout)
	}
	got := lines(stderr)
	if len(got) != 3 {
		t.Fatalf("stderr has %d lines, want a start line, a done line and a cached line:\n%s", len(got), stderr)
	}
	if got[0] != "==> Building a thing (first run only, about 1 s)" {
		t.Errorf("start line %q", got[0])
	}
	if !regexp.MustCompile(`^    Building a thing: done in [0-9]+s$`).MatchString(got[1]) {
		t.Errorf("done line %q", got[1])
	}
	if got[2] != "==> a cached thing: cached" {
		t.Errorf("cached line %q", got[2])
	}
	if strings.Contains(stderr, "chatter") || strings.Contains(stderr, "downloading") {
		t.Errorf("the command's output was shown:\n%s", stderr)
	}
	if l := logs(t, cache); len(l) != 0 {
		t.Errorf("the log of a step that succeeded was kept: %v", l)
	}
}

func TestFailureShowsTheEndOfTheOutput(t *testing.T) {
	stdout, stderr, code, cache := run(t, `
step "Building a thing (first run only, about 1 s)" bash -c 'for i in $(seq 1 60); do echo "output line $i"; done; echo "error: the thing does not compile" >&2; exit 3'
echo not-reached`)
	if code != 3 {
		t.Errorf("exit code %d, want the command's, 3", code)
	}
	if strings.Contains(stdout, "not-reached") {
		t.Error("the script went on after the step failed")
	}
	if stdout != "" {
		t.Errorf("stdout = %q, want nothing", stdout)
	}
	for _, want := range []string{
		"==> Building a thing (first run only, about 1 s)",
		"Building a thing: FAILED after",
		"(exit status 3)",
		"| output line 22\n",
		"| output line 60\n",
		"| error: the thing does not compile\n",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if strings.Contains(stderr, "output line 21\n") {
		t.Errorf("stderr shows more than the last 40 lines:\n%s", stderr)
	}
	l := logs(t, cache)
	if len(l) != 1 {
		t.Fatalf("want the failed step's log kept, found %v", l)
	}
	if !strings.Contains(stderr, "full output: "+l[0]+"\n") {
		t.Errorf("stderr does not name the log %s:\n%s", l[0], stderr)
	}
	full, err := os.ReadFile(l[0])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(full), "output line 1\n") || !strings.Contains(string(full), "does not compile") {
		t.Errorf("the log lacks the command's output:\n%s", full)
	}
}

func TestShellFunctionStopsAtItsFirstFailure(t *testing.T) {
	_, stderr, code, _ := run(t, `
f() { echo first; false; echo after-false; }
step "Running f" f`)
	if code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	if !strings.Contains(stderr, "| first\n") || strings.Contains(stderr, "after-false") {
		t.Errorf("the function did not stop at false:\n%s", stderr)
	}
}

func TestSetEStaysOn(t *testing.T) {
	stdout, _, code, _ := run(t, `
step "Doing nothing" true
false
echo not-reached`)
	if code != 1 || strings.Contains(stdout, "not-reached") {
		t.Errorf("exit code %d, stdout %q: set -e was off after a step", code, stdout)
	}
}

func TestHeartbeat(t *testing.T) {
	_, stderr, code, _ := run(t, `step "Building a slow thing (about 3 s)" sleep 3`, "NETGUARD_STEP_HEARTBEAT=1")
	if code != 0 {
		t.Fatalf("exit code %d, stderr:\n%s", code, stderr)
	}
	if !regexp.MustCompile(`(?m)^    still building a slow thing, [0-9]+ s so far$`).MatchString(stderr) {
		t.Errorf("no heartbeat line:\n%s", stderr)
	}
	if got := lines(stderr); !strings.HasPrefix(got[len(got)-1], "    Building a slow thing: done in ") {
		t.Errorf("the last line is not the done line:\n%s", stderr)
	}
}

// Ctrl-C, or a kill of the process group, reaches the step's command,
// the script and the heartbeat: all end, none is left behind.
func TestInterruptLeavesNothing(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			if sig == syscall.SIGINT && ignored(t, sig) {
				t.Skip("this test runs with SIGINT ignored (started in the background), as its children would")
			}
			interrupt(t, sig)
		})
	}
}

func interrupt(t *testing.T, sig syscall.Signal) {
	cmd := exec.Command("bash", "-c", "set -euo pipefail\n. ./step.sh\nstep 'Building a slow thing (about 1 min)' sleep 60\necho not-reached")
	cmd.Env = append(os.Environ(), "XDG_CACHE_HOME="+t.TempDir(), "NETGUARD_VERBOSE=", "NETGUARD_STEP_HEARTBEAT=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	defer syscall.Kill(-pgid, syscall.SIGKILL)
	var seen []byte
	buf := make([]byte, 4096)
	for !bytes.Contains(seen, []byte("still building")) { // the heartbeat runs
		n, err := stderr.Read(buf)
		if err != nil {
			t.Fatalf("%v; stderr so far:\n%s", err, seen)
		}
		seen = append(seen, buf[:n]...)
	}
	if err := syscall.Kill(-pgid, sig); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		for { // until every holder of stderr has closed it
			n, err := stderr.Read(buf)
			seen = append(seen, buf[:n]...)
			if err != nil {
				break
			}
		}
		done <- cmd.Wait()
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Errorf("the script exited 0 after %v", sig)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the script's stderr stayed open 10 s after %v", sig)
	}
	if bytes.Contains(seen, []byte("not-reached")) {
		t.Errorf("the script went on after %v", sig)
	}
	deadline := time.Now().Add(5 * time.Second)
	for alive(t, pgid) {
		if time.Now().After(deadline) {
			ps, _ := exec.Command("ps", "-o", "pid,stat,args", "-g", strconv.Itoa(pgid)).CombinedOutput()
			t.Fatalf("processes of the script are still there 5 s after %v:\n%s", sig, ps)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// alive reports whether a process of group pgid runs: zombies, which
// only wait for init to reap them, are not counted.
func alive(t *testing.T, pgid int) bool {
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // gone
		}
		// pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) > 2 && f[2] == strconv.Itoa(pgid) && f[0] != "Z" {
			return true
		}
	}
	return false
}

// ignored reports whether this process ignores sig (and so would the
// scripts it starts).
func ignored(t *testing.T, sig syscall.Signal) bool {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if mask, ok := strings.CutPrefix(line, "SigIgn:\t"); ok {
			bits, err := strconv.ParseUint(mask, 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return bits&(1<<(uint(sig)-1)) != 0
		}
	}
	t.Skip("no SigIgn in /proc/self/status")
	return false
}

func TestFailureWithoutOutput(t *testing.T) {
	_, stderr, code, cache := run(t, `step "Checking a thing" false`)
	if code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	if !strings.Contains(stderr, "Checking a thing: FAILED after") || !strings.Contains(stderr, "it printed nothing") {
		t.Errorf("stderr:\n%s", stderr)
	}
	if l := logs(t, cache); len(l) != 0 {
		t.Errorf("an empty log was kept: %v", l)
	}
}

// NETGUARD_VERBOSE=1 shows the command's output as it comes, on stderr:
// stdout stays the script's.
func TestVerbose(t *testing.T) {
	stdout, stderr, code, _ := run(t, `step "Building a thing" bash -c 'echo to-stdout; echo to-stderr >&2'`, "NETGUARD_VERBOSE=1")
	if code != 0 || stdout != "" {
		t.Errorf("exit code %d, stdout %q", code, stdout)
	}
	if !strings.Contains(stderr, "to-stdout\n") || !strings.Contains(stderr, "to-stderr\n") {
		t.Errorf("stderr lacks the command's output:\n%s", stderr)
	}
}
