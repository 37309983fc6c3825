// Package viewtest builds lean clusters for tests: real API objects passed
// through clusterview's transforms into stores built like the informers'
// (clusterview.NewStores), read through a clusterview.View. The tests of
// clusterview, the Service handlers and the coverage check share it.
//
// Layer: a test fixture of the cluster view: it may import clusterview and
// what clusterview may import; only tests import it.
package viewtest
