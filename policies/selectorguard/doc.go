// Package selectorguard holds the rules of the Service selector guard: pure
// functions that decide, from a Service and a read-only view of the
// workloads in its namespace, whether the Service's selector would route to
// only part of a rollout.
//
// The outage they exist for: a label was added to a Deployment's pod
// template and to its Service's selector in one change. During the rollout
// the Service matched only the 16 new pods out of 140; they took all the
// traffic, were OOM-killed, never became ready, and the rollout never
// progressed. Kubernetes warns about none of it.
//
// Check finds what is wrong (Findings); Decide turns findings, the mode and
// the Service's override annotation into an admission decision. Neither
// talks to a cluster: the caller supplies a View.
//
// Layer: the pure rules, below the cluster view. It may import config and
// internal, no other policy.
package selectorguard
