// Command peakrss runs a command and writes its peak resident set size,
// in bytes, to the file -o names, as /usr/bin/time -f %M does.
//
// Why a process of its own: Go starts a child with vfork, sharing the
// parent's memory until exec, and Linux counts the high-water mark of that
// shared memory in the child's ru_maxrss. A child of the benchmark (which
// holds the clients that created the pods) would report the benchmark's
// peak; a child of this small program reports its own.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

func main() {
	out := flag.String("o", "", "file to write the peak RSS in bytes to")
	flag.Parse()
	if *out == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: peakrss -o FILE COMMAND [ARG...]")
		os.Exit(2)
	}
	cmd := exec.Command(flag.Arg(0), flag.Args()[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		fmt.Fprintln(os.Stderr, "peakrss:", err)
		os.Exit(2)
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		fmt.Fprintln(os.Stderr, "peakrss: no rusage")
		os.Exit(2)
	}
	// ru_maxrss is in KiB on Linux.
	if err := os.WriteFile(*out, fmt.Appendf(nil, "%d\n", ru.Maxrss<<10), 0o600); err != nil {
		fmt.Fprintln(os.Stderr, "peakrss:", err)
		os.Exit(2)
	}
	os.Exit(cmd.ProcessState.ExitCode())
}
