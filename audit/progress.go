package audit

import (
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"
)

// progress counts what the scan has listed, for a line on standard error
// during long scans.
type progress struct {
	mu         sync.Mutex
	resource   string
	count      int
	namespaces map[string]bool
	lastNS     string
}

// start begins counting a resource (e.g. "pods").
func (p *progress) start(resource string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.resource, p.count, p.namespaces, p.lastNS = resource, 0, map[string]bool{}, ""
}

// add counts one object of namespace ns.
func (p *progress) add(ns string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.count++
	if p.namespaces == nil {
		p.namespaces = map[string]bool{}
	}
	if ns != p.lastNS {
		p.namespaces[ns] = true
		p.lastNS = ns
	}
}

// line says where the scan is: "listed 40,000 pods in 12 namespaces...".
func (p *progress) line() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.resource == "":
		return "netguard audit: starting..."
	case p.count == 0:
		return fmt.Sprintf("netguard audit: listing %s...", p.resource)
	case p.resource == "namespaces":
		return fmt.Sprintf("netguard audit: listed %s namespaces...", thousands(p.count))
	}
	namespaces := "namespaces"
	if len(p.namespaces) == 1 {
		namespaces = "namespace"
	}
	return fmt.Sprintf("netguard audit: listed %s %s in %s %s...", thousands(p.count), p.resource, thousands(len(p.namespaces)), namespaces)
}

// run writes a line to w every interval until stop is called: a scan
// shorter than one interval writes nothing.
func (p *progress) run(w io.Writer, interval time.Duration) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fmt.Fprintln(w, p.line())
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// thousands formats n with thousands separators: 40,000.
func thousands(n int) string {
	s := strconv.Itoa(n)
	neg := n < 0
	if neg {
		s = s[1:]
	}
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}
