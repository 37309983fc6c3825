// Command netguard is a Kubernetes admission webhook that removes outages
// caused by cluster networking defaults, and the tools around it.
//
// Layer: the binary, the top. It may import every layered package (serve,
// the features, serving, clusterview, policies, config, internal), none of
// test/ or hack/.
package main
