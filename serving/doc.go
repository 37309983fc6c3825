// Package serving opens and serves netguard's endpoints: the admission
// webhooks (TLS), /metrics, the /healthz and /readyz probes and, when asked
// for, Go's profiler (/debug/pprof/).
//
// The sockets are opened before anything else starts, for two reasons: a
// port that is taken fails `netguard serve` at once, with the address it
// could not bind, instead of minutes later in a runnable; and port 0 works:
// the kernel picks a free port and Listeners reports it, so that anything
// starting netguard (a test, a script) learns the address from netguard
// instead of guessing a free port and racing other processes for it.
//
// Layer: process plumbing, below the features. It may import clusterview,
// policies, config and internal; it needs none of them.
package serving
