package testlog

import (
	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

// Discard sends controller-runtime's logs nowhere. Without a logger set,
// controller-runtime prints a goroutine stack trace ("log.SetLogger(...)
// was never called") the first time anything logs 30 s after the process
// started, which a test binary on a loaded machine reaches. Call it before
// anything logs: controller-runtime takes the first logger it is given.
func Discard() { log.SetLogger(logr.Discard()) }
