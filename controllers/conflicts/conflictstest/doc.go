// Package conflictstest replays Service writes for the tests of the
// conflict detector and of the admission handlers that ask it: Service
// versions whose managedFields say who wrote what, and fights between two
// load-balancer controllers.
//
// Layer: a test fixture of the features: it imports no netguard package;
// only tests import it.
package conflictstest
