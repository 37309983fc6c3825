package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	// SIGTERM and SIGINT cancel the context: servers drain and stop.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	err := newRootCommand().ExecuteContext(ctx)
	stop()
	if err == nil {
		return
	}
	var exit *exitError
	if errors.As(err, &exit) {
		if exit.msg != "" {
			fmt.Fprintln(os.Stderr, exit.msg)
		}
		os.Exit(exit.code)
	}
	fmt.Fprintln(os.Stderr, "Error:", err)
	os.Exit(2)
}

// exitError ends the program with a given exit code, e.g. `check` exits 1
// when it has findings, which is a result, not a failure.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return fmt.Sprintf("exit %d: %s", e.code, e.msg) }
