package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/netguard-io/netguard/controllers/coverage"
)

// coverageEvents returns the live coverage check's Events on a Service.
func coverageEvents(t *testing.T, ns, name string) []corev1.Event {
	t.Helper()
	list := &corev1.EventList{}
	if err := k8s.List(context.Background(), list, client.InNamespace(ns)); err != nil {
		t.Fatalf("listing events: %v", err)
	}
	var out []corev1.Event
	for _, e := range list.Items {
		if (e.Reason == coverage.PartialRolloutReason || e.Reason == coverage.EndedReason) && e.InvolvedObject.Name == name {
			out = append(out, e)
		}
	}
	return out
}

// TestLiveCoverageOfARollout: a Service whose selector covered its
// Deployment comes to route to part of it with no Service write: the
// template drops a label the selector needs and the new revision's pods
// come up one by one. One Warning Event (the counts and revisions, as at
// admission), the gauge; the rollout rolled back: one Normal Event, the
// gauge back to zero.
func TestLiveCoverageOfARollout(t *testing.T) {
	restartServer(t, writeConfig(t, "serviceGuard:\n  coverage:\n    settle: 2s\n"))
	t.Cleanup(func() { restartServer(t, "") })
	ns := newNamespace(t, "live", optedIn)
	v1 := labels("app", "api", "track", "stable")
	d := newDeployment(t, ns, "api", 4, v1)
	newRevision(t, d, "aaaaaa", 4)
	create(t, service(ns, "api", v1))

	// The template drops the label; its pods come up one at a time.
	v2 := labels("app", "api", "track", "canary")
	setTemplate(t, d, v2)
	next := newRevision(t, d, "bbbbbb", 0)
	for i := range 3 {
		createPods(t, ns, next.Name, labels("app", "api", "track", "canary", "pod-template-hash", "bbbbbb"), owner(next, "ReplicaSet"), i, i+1)
		time.Sleep(300 * time.Millisecond) // a rollout's pace: the changes coalesce
	}
	waitFor(t, 30*time.Second, "the partial rollout reported", func() bool { return len(coverageEvents(t, ns, "api")) > 0 })
	// The gauge counts every Service of the cluster; earlier tests' Services
	// were judged, and settled, when this netguard started.
	partial := metric(t, "netguard_services_partial_rollout")
	if partial < 1 {
		t.Fatalf("netguard_services_partial_rollout = %v with this Service reported", partial)
	}
	evs := coverageEvents(t, ns, "api")
	if len(evs) != 1 || evs[0].Type != corev1.EventTypeWarning || evs[0].Reason != coverage.PartialRolloutReason {
		t.Fatalf("Events: %v, want one Warning %s", evs, coverage.PartialRolloutReason)
	}
	for _, want := range []string{"selector matches 4 of 7 pods of Deployment " + ns + "/api", "only revision aaaaaa", "3 pods of revision bbbbbb lack track=stable"} {
		if !strings.Contains(evs[0].Message, want) {
			t.Errorf("Event %q lacks %q", evs[0].Message, want)
		}
	}
	t.Logf("Event: %s %s: %s", evs[0].Type, evs[0].Reason, evs[0].Message)

	// Rolled back: the new pods go, the template is the old one again.
	setTemplate(t, d, v1)
	deletePods(t, ns, next.Name, 0, 3)
	waitFor(t, 30*time.Second, "the end reported", func() bool { return len(coverageEvents(t, ns, "api")) == 2 })
	waitForMetric(t, "netguard_services_partial_rollout", partial-1)
	evs = coverageEvents(t, ns, "api")
	ended := evs[0]
	if ended.Reason != coverage.EndedReason {
		ended = evs[1]
	}
	if ended.Type != corev1.EventTypeNormal || ended.Reason != coverage.EndedReason {
		t.Errorf("Events after the rollback: %v, want a Normal %s", evs, coverage.EndedReason)
	}
}
