// Package layout holds the test that keeps netguard's packages in their
// layers, so that data flows one way: from the cluster view up through
// the rules and the features to the wiring and the binary. The table of
// layers is in layout_test.go; `go test ./hack/layout/` (part of `make
// test` and `make unit`) fails naming each import that goes up a layer,
// across features without leave, or into test and tooling code.
//
// Tooling: it imports no netguard package.
package layout
