// Package musl builds a real musl resolver for tests: getaddrinfo.c, a
// program that looks a name up as an application does, compiled with
// Debian's musl-gcc into a static binary, so that it uses musl's resolver
// (Alpine's C library) wherever it runs.
package musl

import (
	"debug/elf"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

//go:embed src/getaddrinfo.c
var source []byte

// Build compiles the program to out. It needs musl-gcc (Debian's
// musl-tools, which `make deps` installs).
func Build(out string) error {
	if _, err := exec.LookPath("musl-gcc"); err != nil {
		return fmt.Errorf("musl-gcc not found (Debian package musl-tools; make deps installs it): %w", err)
	}
	src := filepath.Join(filepath.Dir(out), "getaddrinfo.c")
	if err := os.WriteFile(src, source, 0o644); err != nil {
		return err
	}
	defer os.Remove(src)
	if b, err := exec.Command("musl-gcc", "-static", "-O2", "-o", out, src).CombinedOutput(); err != nil {
		return fmt.Errorf("musl-gcc: %w\n%s", err, b)
	}
	f, err := elf.Open(out)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errors.New(out + " is dynamically linked: it would use the machine's C library, not musl")
		}
	}
	return nil
}
