// Package testlog quiets controller-runtime's logging in tests and tools.
//
// Layer: helpers, the bottom. It imports no netguard package.
package testlog
