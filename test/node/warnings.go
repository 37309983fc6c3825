package node

import (
	"sync"
)

// Warnings keeps the warnings the API server sends the node's client
// (deprecations, and admission warnings such as netguard's), which
// client-go would otherwise print to standard error as log lines, so that
// tests can look for the ones they expect.
type Warnings struct {
	mu   sync.Mutex
	list []string
}

// HandleWarningHeader implements rest.WarningHandler.
func (w *Warnings) HandleWarningHeader(code int, _ string, text string) {
	if code != 299 || text == "" {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = append(w.list, text)
}

// Mark is a position in the warnings, for Since.
func (w *Warnings) Mark() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.list)
}

// Since returns the warnings received after mark.
func (w *Warnings) Since(mark int) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.list[mark:]...)
}
