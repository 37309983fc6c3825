// Package coverage is the live coverage check of the Service selector
// guard: it watches the lean view of the cluster and reports, with Events
// and metrics, when a Service starts and stops routing to part of a
// rollout. The rules live in policies/selectorguard.
//
// Layer: features (controllers). It may import serving, clusterview,
// policies, config and internal, no other feature.
package coverage
