// Package manifest reads multi-document Kubernetes YAML, finds the pod (or
// pod template) inside each workload kind, and writes documents back with
// only the pod changes applied, so fields netguard does not touch keep their
// values.
//
// Layer: helpers, the bottom. It imports no netguard package.
package manifest
