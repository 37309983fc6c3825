// Package serve wires `netguard serve`: one controller-runtime manager
// (serving) with the admission handlers (the Pod mutator, the Service and
// workload handlers, the Service status handler), the controllers (the
// conflict detector, the live coverage check, the Reports writer) and the
// lean view of the cluster they share (clusterview). It decides what runs;
// the packages it wires decide how.
//
// Layer: wiring, below cmd/netguard. It may import the features
// (webhook/..., controllers/..., audit, dnsproxy) and serving, clusterview,
// policies, config and internal; only cmd/netguard imports it.
package serve
