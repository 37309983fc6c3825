package memlimit

import (
	"fmt"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

const (
	// EnvVar holds the container's memory limit in bytes.
	EnvVar = "NETGUARD_MEMORY_LIMIT"
	// Percent of the container's limit that becomes the soft limit.
	Percent = 90
)

// Source says where the soft memory limit came from.
type Source string

const (
	// SourceGOMEMLIMIT: GOMEMLIMIT is set; the runtime applied it, and it
	// wins over EnvVar.
	SourceGOMEMLIMIT Source = "GOMEMLIMIT"
	// SourceContainer: Percent of EnvVar.
	SourceContainer Source = EnvVar
	// SourceNone: neither is set; the runtime's default (no limit).
	SourceNone Source = "none"
)

// Limit returns the soft memory limit for the environment getenv reads, in
// bytes, and where it comes from; 0 with SourceNone or SourceGOMEMLIMIT
// means Limit leaves the runtime as it is. A malformed EnvVar is an error
// naming it.
func Limit(getenv func(string) string) (int64, Source, error) {
	if getenv("GOMEMLIMIT") != "" {
		return 0, SourceGOMEMLIMIT, nil
	}
	v := strings.TrimSpace(getenv(EnvVar))
	if v == "" {
		return 0, SourceNone, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return 0, SourceNone, fmt.Errorf("%s=%q: want the container's memory limit in bytes (the downward API's limits.memory with divisor 1)", EnvVar, v)
	}
	if n > math.MaxInt64/Percent {
		// Too large to mean anything (a container without a limit gets
		// the node's allocatable memory, which is far smaller).
		return 0, SourceNone, nil
	}
	return n * Percent / 100, SourceContainer, nil
}

// Apply sets the runtime's soft memory limit from the environment and
// returns it (math.MaxInt64 when there is none) and its source.
func Apply() (int64, Source, error) {
	limit, source, err := Limit(os.Getenv)
	if err != nil {
		return 0, source, err
	}
	if source == SourceContainer {
		debug.SetMemoryLimit(limit)
	}
	return debug.SetMemoryLimit(-1), source, nil
}
