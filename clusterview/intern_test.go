package clusterview

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

// TestInternerForgetsUnusedValues: once no pod holds a label set, the
// collector frees it and the interner drops its entry, so label sets of
// old revisions do not pile up.
func TestInternerForgetsUnusedValues(t *testing.T) {
	var in interner[labelSet]
	for i := range 100 {
		v := in.get(fmt.Sprint(i), func() *labelSet { return &labelSet{m: map[string]string{"i": fmt.Sprint(i)}} })
		if again := in.get(fmt.Sprint(i), nil); again != v {
			t.Fatal("a live value was made again")
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for in.len() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of 100 unused entries left", in.len())
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}
