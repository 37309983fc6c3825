package main

import (
	"github.com/go-logr/logr"

	"github.com/netguard-io/netguard/internal/memlimit"
)

// applyMemoryLimit sets Go's soft memory limit from the container's limit
// (internal/memlimit) and logs it, for serve and dns-proxy alike.
func applyMemoryLimit(log logr.Logger) error {
	limit, source, err := memlimit.Apply()
	if err != nil {
		return err
	}
	if source != memlimit.SourceNone {
		log.Info("Go soft memory limit set", "bytes", limit, "from", source)
	}
	return nil
}
