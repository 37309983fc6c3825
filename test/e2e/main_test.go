package e2e

import (
	"fmt"
	"os"
	"testing"
)

// buildDir holds what the tests build once for all of them.
var buildDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "netguard-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	buildDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}
