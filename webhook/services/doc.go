// Package services serves the Service selector guard at admission: the
// handler of Service CREATEs and UPDATEs (/validate-v1-service), which
// denies or warns as policies/selectorguard decides from the lean view of
// the cluster, and the handler that warns about workload updates whose pod
// template drops a label a Service selects (/validate-apps-v1-workload).
// Setup registers both.
//
// Layer: features (admission). It may import serving, clusterview,
// policies, config and internal, no other feature.
package services
