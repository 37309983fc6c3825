// Package dnsproxy is netguard's DNS forwarder sidecar: it listens on a
// loopback address and forwards every query to the cluster DNS from a new
// source port, so conntrack makes a fresh NAT decision for each upstream
// attempt. A client such as nginx,
// which sends all its queries from one socket, otherwise stays pinned to a
// DNS server pod that disappeared without an ICMP error. While a query has
// no answer, further attempts leave from further new ports (hedging, see
// policy.go), so a silent backend behind a Service VIP costs a lookup a
// hedge delay, not a failure.
//
// The hot path reads only the header, the question and the OPT record,
// and relays the upstream's bytes once their header and question match
// the query.
//
// Layer: features. It may import serving, clusterview, policies, config and
// internal, no other feature; it needs none of them.
package dnsproxy
