package bench

import (
	"io"

	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// Logs are encoded as in production, then discarded: the benchmarks pay
// for logging as netguard serve does. (Set once, before anything logs:
// controller-runtime takes the first logger it is given.)
func init() { logf.SetLogger(zap.New(zap.WriteTo(io.Discard))) }
