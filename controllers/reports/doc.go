// Package reports publishes what netguard finds in the cluster as
// OpenReports Reports (openreports.io/v1alpha1): one Report named
// "netguard" per namespace netguard acts on, with a result per Service (the
// selector guard's rules: pass, warn or fail, with admission's message) and
// per group of pods worth showing (created without netguard's changes, or
// nginx without the DNS sidecar), so that Policy Reporter and
// `kubectl get reports` show them.
//
// The leader re-judges the cluster every interval with the code of
// `netguard audit`, reading the Service guard's live view and listing only
// the full pods of the namespaces the pod rules act on, from the API
// server's watch cache, and writes only the Reports whose results changed,
// one write per namespace. Without the OpenReports API installed nothing is
// written, and the log says so once.
//
// Layer: features (controllers). It may import serving, clusterview,
// policies, config and internal; of the other features only audit, whose
// code judges the cluster.
package reports
