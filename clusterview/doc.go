// Package clusterview keeps one lean view of the cluster for the features
// of `netguard serve`: an informer cache of its own for Pods, ReplicaSets,
// Deployments, StatefulSets, DaemonSets, Namespaces, Services and Argo
// Rollouts (New), the transforms that keep only what the rules read, the
// interned lean Pod, the indexes, and the View that answers
// policies/selectorguard's questions from the stores. It also finds the
// cluster DNS Service IP (ClusterDNS). `netguard audit` fills the same
// stores from paged lists instead of informers.
//
// Layer: the cluster view, below the plumbing. It may import
// clusterview/listing, policies, config and internal.
package clusterview
