package node

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is a process the node started, identified by PID and start time so
// that a PID the kernel has given to another process is never signalled.
type proc struct {
	Name  string `json:"name"`
	PID   int    `json:"pid"`
	Start uint64 `json:"start"`
}

// startTime is field 22 of /proc/PID/stat, in clock ticks since boot.
func startTime(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces and parentheses: skip past the last ')'.
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	return strconv.ParseUint(fields[19], 10, 64)
}

// alive reports whether the process still runs (a zombie does not).
func (p proc) alive() bool {
	st, err := startTime(p.PID)
	if err != nil || st != p.Start {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.PID))
	if err != nil {
		return false
	}
	s := string(b)
	state := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(state) > 0 && state[0] != "Z"
}

// stop sends SIGTERM and, after grace, SIGKILL, and waits until the
// process is gone.
func (p proc) stop(grace time.Duration) error {
	if !p.alive() {
		return nil
	}
	_ = syscall.Kill(p.PID, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for p.alive() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if p.alive() {
		_ = syscall.Kill(p.PID, syscall.SIGKILL)
		for i := 0; p.alive() && i < 200; i++ {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if p.alive() {
		return fmt.Errorf("%s (pid %d) does not exit", p.Name, p.PID)
	}
	return nil
}

// launch starts a component in its own session, its output in
// logs/NAME.log, and returns it. The process outlives the caller (make
// node-up returns while the node runs); a caller that stays reaps it.
func launch(name string, args ...string) (proc, error) {
	if err := os.MkdirAll(dirs.logs(), 0o755); err != nil {
		return proc{}, err
	}
	out, err := os.OpenFile(filepath.Join(dirs.logs(), name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return proc{}, err
	}
	defer out.Close()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return proc{}, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() { _ = cmd.Wait() }() // reap it if it ends while we run
	st, err := startTime(cmd.Process.Pid)
	if err != nil {
		return proc{}, fmt.Errorf("%s exited at once: see %s", name, filepath.Join(dirs.logs(), name+".log"))
	}
	return proc{Name: name, PID: cmd.Process.Pid, Start: st}, nil
}

// LogTail returns the last lines of a component's log.
func LogTail(name string, lines int) string {
	b, err := os.ReadFile(filepath.Join(dirs.logs(), name+".log"))
	if err != nil {
		return err.Error()
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// LogLines returns the lines of a component's log that contain substr.
func LogLines(name, substr string) []string {
	b, err := os.ReadFile(filepath.Join(dirs.logs(), name+".log"))
	if err != nil {
		return []string{err.Error()}
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return out
}

// run runs a command to completion and returns an error with its output.
func run(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// output runs a command and returns its standard output.
func output(args ...string) (string, error) {
	cmd := exec.Command(args[0], args[1:]...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// repoFile is the path of rel in the netguard repository this runs from.
func repoFile(rel string) string {
	dir, _ := os.Getwd()
	for d := dir; d != "/"; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && strings.Contains(string(b), "module github.com/netguard-io/netguard\n") {
			return filepath.Join(d, rel)
		}
	}
	return rel
}

var errNotRoot = errors.New("the node needs root: it runs containers, creates network interfaces and iptables rules")
