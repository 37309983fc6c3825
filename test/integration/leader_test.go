package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/netguard-io/netguard/test/framework"
)

// TestOneReplicaRecordsEvents: two replicas of netguard serve on one Lease,
// both watching the same Services. Both detect a conflict; one Event is
// recorded, by the leader. The leader is killed: the other takes the Lease
// within a lease duration and records the next conflict's Event. The
// production lease timings are used, so the takeover measured is the one
// users get.
func TestOneReplicaRecordsEvents(t *testing.T) {
	ctx := context.Background()
	timings := []string{"--leader-elect-lease-duration=15s", "--leader-elect-renew-deadline=10s", "--leader-elect-retry-period=2s"}
	cfg := writeConfig(t, conflictsConfig)
	restartServer(t, cfg, timings...)
	t.Cleanup(func() { restartServer(t, "") })
	second, err := cp.LaunchServer(netguardBin, cfg, timings...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := second.Stop(); err != nil {
			t.Errorf("stopping the second replica: %v", err)
		}
	})
	if err := second.WaitReady(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	if !server.Leads() || second.Leads() {
		t.Fatalf("leaders: first %v, second %v; want the first only", server.Leads(), second.Leads())
	}

	ns := newNamespace(t, "leader", optedIn)
	fight := func(name string) {
		t.Helper()
		svc := loadBalancerService(ns, name)
		create(t, svc)
		key := client.ObjectKeyFromObject(svc)
		for i := range conflictFlips + 1 { // lb-a first, then a takeover each write
			owner := []string{"lb-a", "lb-b"}[i%2]
			reconcileAnnotation(t, key, owner, fmt.Sprintf("%s-%d", owner, i))
		}
	}
	fight("first")
	for i, s := range []*framework.Server{server, second} {
		waitFor(t, 20*time.Second, fmt.Sprintf("replica %d detecting the conflict", i+1), func() bool {
			n, err := s.Metric("netguard_service_conflicts_total")
			return err == nil && n == 1
		})
	}
	waitFor(t, 20*time.Second, "the conflict's Event", func() bool { return len(conflictEvents(t, ns, "first")) > 0 })
	// Both replicas detected the conflict before; a follower's Event would
	// be on its way by now.
	time.Sleep(2 * time.Second)
	if evs := conflictEvents(t, ns, "first"); len(evs) != 1 {
		t.Fatalf("%d Events for one conflict seen by two replicas, want 1", len(evs))
	}

	killed := time.Now()
	if err := server.Kill(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the second replica taking the Lease", second.Leads)
	takeover := time.Since(killed)
	fight("second")
	waitFor(t, 20*time.Second, "the new leader's Event", func() bool { return len(conflictEvents(t, ns, "second")) == 1 })
	t.Logf("two replicas: 1 Event per conflict; leader killed, the other leads %s later (lease 15s, retry 2s) and records the next Event %s after the kill",
		takeover.Round(100*time.Millisecond), time.Since(killed).Round(100*time.Millisecond))
	// The Lease runs out at most 15s after the kill and the follower tries
	// every 2s; twice the lease leaves room for a loaded machine.
	if takeover > 2*15*time.Second {
		t.Errorf("the takeover took %s, more than twice the lease duration", takeover)
	}
}
