// Package conflicts finds controllers fighting over a Service: two or more
// field managers that keep taking the same fields from each other, as the
// API server records it in metadata.managedFields. It also holds the static
// hint for LoadBalancer Services that several load-balancer controllers
// could reconcile. Everything here is pure: no client calls, time comes
// from an injected clock.
//
// How a fight shows in managedFields: the API server gives a field to the
// manager that last changed it. When manager B changes a field that A
// owns, the field moves from A's entry to B's; when A sets it back, it
// moves back. One controller that updates often keeps its fields, so it
// never takes any from anyone.
//
// Layer: the pure rules, below the cluster view. It may import config and
// internal, no other policy.
package conflicts
