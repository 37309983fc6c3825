// Package conflicts serves the admission side of the detector of
// controllers fighting over a Service (controllers/conflicts): the handler
// of Service status updates (/validate-v1-service-status) and the wrapper
// of the Service handler, which add the detector's warnings and, in deny
// mode, its denials.
//
// Layer: features (admission). It may import serving, clusterview,
// policies, config and internal; of the other features only
// controllers/conflicts, the detector it asks.
package conflicts
