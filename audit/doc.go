// Package audit scans a live cluster, read-only, for what netguard would do
// there now: the Services its selector guard would deny or warn about, the
// pods its pod policies would change had they been created through it, and
// the nginx pods that run without the DNS sidecar. It judges with the code
// and the settings `netguard serve` uses, and reports with the messages
// admission gives.
//
// The report is shaped like the results of an OpenReports Report
// (openreports.io/v1alpha1): a result per finding, with policy, rule,
// result (fail, warn or skip), message, resources and properties. The JSON
// schema is documented in docs/audit.md; fields are only ever added.
//
// Layer: features. It may import serving, clusterview, policies, config and
// internal, no other feature.
package audit
