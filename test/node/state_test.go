package node

import (
	"os"
	"os/exec"
	"testing"
)

// TestAbandoned: a node is taken down by the next run only when no one
// will take it down: its owner died, or none of its processes runs.
func TestAbandoned(t *testing.T) {
	self, err := startTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	alive := proc{Name: "alive", PID: os.Getpid(), Start: self}

	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	exited, err := startTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	dead := proc{Name: "dead", PID: pid, Start: exited}
	if dead.alive() {
		t.Fatalf("pid %d still runs after Wait", pid)
	}

	for _, tc := range []struct {
		name string
		st   state
		want bool
	}{
		{"make node-up's node: no owner, parts run", state{Procs: []proc{dead, alive}}, false},
		{"a test run's node while the run lasts", state{Owner: &alive, Procs: []proc{alive}}, false},
		{"the test run was killed, its parts still run", state{Owner: &dead, Procs: []proc{alive}}, true},
		{"every part is gone (machine restarted)", state{Procs: []proc{dead}}, true},
		{"killed before any part started", state{Owner: &dead}, true},
		{"no owner, no part started", state{}, true},
	} {
		if got := tc.st.abandoned(); got != tc.want {
			t.Errorf("%s: abandoned() = %v, want %v", tc.name, got, tc.want)
		}
	}
}
