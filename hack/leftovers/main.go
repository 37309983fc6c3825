// Command leftovers finds what a test run (make test, make demo) left
// behind on the machine, and only that:
//
//	leftovers snapshot DIR   record the machine's state before the run
//	leftovers check DIR      compare with it after the run; name each
//	                         leftover and exit 1, else exit 0
//
// It judges the objects a run makes, by their names (compare.go): network
// namespaces, interfaces and addresses, iptables chains and rules, mounts
// under the run's directories, the sysctls the tests and a node touch,
// entries of the run's temporary directory ($TMPDIR at snapshot time: the
// run gets one of its own), and processes carrying the run's marker
// NETGUARD_TEST_RUN=<id> in their environment (set before the run; every
// process it starts inherits it), wherever they were reparented to. What
// other programs make or change meanwhile, and what the kernel or iproute2
// create on first use (empty built-in iptables tables, /run/netns), is not
// the run's.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// snapshot is the file snapshot writes into DIR.
type snapshot struct {
	// Tmp is the run's temporary directory.
	Tmp   string `json:"tmp"`
	State State  `json:"state"`
}

func main() {
	if len(os.Args) != 3 || (os.Args[1] != "snapshot" && os.Args[1] != "check") {
		fmt.Fprintln(os.Stderr, "usage: leftovers snapshot DIR | check DIR")
		os.Exit(2)
	}
	file := filepath.Join(os.Args[2], "leftovers.json")
	if os.Args[1] == "snapshot" {
		if err := writeSnapshot(file); err != nil {
			fmt.Fprintln(os.Stderr, "leftovers:", err)
			os.Exit(2)
		}
		return
	}
	findings, err := check(file, os.Getenv("NETGUARD_TEST_RUN"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "leftovers:", err)
		os.Exit(2)
	}
	for _, f := range findings {
		fmt.Println(f)
	}
	if len(findings) > 0 {
		os.Exit(1)
	}
	fmt.Println("leftovers: none (processes, network namespaces, interfaces, addresses, iptables rules, mounts, sysctls, temporary files)")
}

func writeSnapshot(file string) error {
	tmp := os.TempDir()
	b, err := json.Marshal(snapshot{Tmp: tmp, State: capture(tmp)})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	return os.WriteFile(file, b, 0o644)
}

// check compares the machine with the snapshot in file, and looks for
// processes of the run marked marker ("" skips that).
func check(file, marker string) ([]Finding, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading the snapshot: %w", err)
	}
	var snap snapshot
	if err := json.Unmarshal(b, &snap); err != nil {
		return nil, fmt.Errorf("reading the snapshot %s: %w", file, err)
	}
	findings := compare(snap.State, capture(snap.Tmp), snap.Tmp)
	if marker != "" {
		for _, p := range markedProcesses(marker) {
			findings = append(findings, Finding{Kind: "process", What: p})
		}
	}
	return findings, nil
}
