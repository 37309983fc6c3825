package framework

import (
	"testing"
	"time"
)

// Eventually polls cond every 200ms until it holds, and fails t with what
// and cond's last state when limit passes first.
func Eventually(t testing.TB, limit time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; last: %s", what, limit, state)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
