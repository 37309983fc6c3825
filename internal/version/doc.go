// Package version reports the netguard build version.
//
// Layer: helpers, the bottom. It imports no netguard package.
package version
