// Package webhook serves netguard's Pod admission webhook: the Pod mutator
// (DNS hardening and the DNS sidecar) at /mutate-v1-pod, with its patches
// and metrics. The other admission handlers are in webhook/services and
// webhook/conflicts; serve wires them all.
//
// Layer: features (admission). It may import serving, clusterview,
// policies, config and internal, no other feature.
package webhook
