// Package e2e holds netguard's end-to-end tests: real programs in network
// namespaces the tests create themselves, on documentation address ranges
// only. They need root and `ip netns`, and skip without them.
package e2e
