package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// markedProcesses returns "PID COMMAND" of the live processes whose
// environment holds NETGUARD_TEST_RUN=marker, other than this one and its
// ancestors (the run's own scripts).
func markedProcesses(marker string) []string {
	want := []byte("NETGUARD_TEST_RUN=" + marker)
	skip := map[int]bool{}
	for pid := os.Getpid(); pid > 1; pid = parent(pid) {
		skip[pid] = true
	}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	var out []string
	for _, dir := range dirs {
		pid, err := strconv.Atoi(filepath.Base(dir))
		if err != nil || skip[pid] {
			continue
		}
		env, err := os.ReadFile(filepath.Join(dir, "environ"))
		if err != nil || !hasEntry(env, want) {
			continue
		}
		cmd, _ := os.ReadFile(filepath.Join(dir, "cmdline"))
		line := strings.TrimSpace(string(bytes.ReplaceAll(cmd, []byte{0}, []byte{' '})))
		if len(line) > 160 {
			line = line[:160]
		}
		out = append(out, fmt.Sprintf("%d %s", pid, line))
	}
	return out
}

func hasEntry(environ, entry []byte) bool {
	for _, e := range bytes.Split(environ, []byte{0}) {
		if bytes.Equal(e, entry) {
			return true
		}
	}
	return false
}

func parent(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "PPid:"); ok {
			if p, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
				return p
			}
		}
	}
	return 1
}
