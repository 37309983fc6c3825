// Package conflicts runs the detector of controllers fighting over a
// Service inside `netguard serve`: an informer on Services attributes every
// change to its field manager through managedFields, and when two or more
// managers keep taking the same fields from each other it reports an Event
// on the Service, metrics, a log line, and, through the handlers of
// webhook/conflicts, admission warnings on further updates while the
// conflict lasts. The rules live in policies/conflicts.
//
// Layer: features (controllers). It may import serving, clusterview,
// policies, config and internal, no other feature.
package conflicts
