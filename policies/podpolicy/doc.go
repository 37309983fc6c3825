// Package podpolicy holds netguard's pod policies as pure functions: given a
// pod, what netguard knows of its namespace and cluster, and the
// configuration, it returns the mutated pod, why parts were skipped, and the
// admission warnings to show. It makes no client calls and does no I/O, so
// the webhook, the offline `netguard mutate` command and the tests all run
// the same code.
//
// The policies, each recorded in the pod's netguard.io/status annotation:
//   - dns-options: add the configured resolv.conf options (default
//     single-request-reopen) that the pod does not set itself and its
//     resolver does not ignore;
//   - ndots: replace the kubelet's ndots:5 with the configured value, for
//     pods whose resolver searches after an absolute lookup (resolver.go);
//   - search-scrub: rebuild ClusterFirst pods as dnsPolicy None with only the
//     cluster's search path, dropping search domains leaked from the node;
//   - dns-proxy: inject the netguard-dns forwarder sidecar into nginx pods.
//
// Applying Mutate to its own output changes nothing.
//
// Layer: the pure rules, below the cluster view. It may import config and
// internal, no other policy.
package podpolicy
