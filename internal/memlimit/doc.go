// Package memlimit sets the Go runtime's soft memory limit from the
// container's memory limit.
//
// The Go collector, by default, lets the heap grow to twice what is live
// before it collects (GOGC=100), whatever the container's limit: a
// process whose live heap is half its limit can be OOM-killed between two
// collections. A soft memory limit (what GOMEMLIMIT sets) makes the
// collector run harder as the process nears it instead. The Helm chart
// passes the container's limit in EnvVar through the downward API
// (resourceFieldRef limits.memory), which can only give the whole limit,
// and Apply sets the soft limit to Percent of it, leaving room for what the
// limit counts and the Go runtime does not manage (the binary's pages,
// memory the kernel has not yet taken back).
//
// Layer: helpers, the bottom. It imports no netguard package.
package memlimit
