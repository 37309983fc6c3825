package integration

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/netguard-io/netguard/policies/podpolicy"
)

// burst creates n pods from 6 concurrent clients, calls interrupt once a
// quarter of them are stored, and returns the pods the API server stored.
// Every create must succeed: the pod webhook fails open.
func burst(t *testing.T, ns string, n int, interrupt func()) []corev1.Pod {
	t.Helper()
	names := make(chan string, n)
	for i := 0; i < n; i++ {
		names <- fmt.Sprintf("p%03d", i)
	}
	close(names)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		created  int
		once     sync.Once
		failures []error
	)
	for w := 0; w < 6; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for name := range names {
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				err := k8s.Create(ctx, plainPod(ns, name, "registry.example/app:1"))
				cancel()
				mu.Lock()
				if err != nil {
					failures = append(failures, err)
				}
				created++
				reached := created >= n/4
				mu.Unlock()
				if reached {
					once.Do(interrupt)
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range failures {
		t.Errorf("pod create failed during the fault: %v", err)
	}
	var list corev1.PodList
	if err := k8s.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != n {
		t.Fatalf("stored %d pods, want %d: pods were lost", len(list.Items), n)
	}
	return list.Items
}

// assertWholeOrUntouched: each pod is either fully mutated, once, or not
// at all; never half-patched or patched twice.
func assertWholeOrUntouched(t *testing.T, pods []corev1.Pod, ns string) (mutated, untouched int) {
	t.Helper()
	for i := range pods {
		pod := &pods[i]
		if _, ok := pod.Annotations[podpolicy.AnnotationStatus]; ok {
			assertHardened(t, pod, ns)
			if n := len(pod.Spec.DNSConfig.Options); n != 2 {
				t.Errorf("pod %s has %d DNS options, want 2 (mutated twice?): %+v", pod.Name, n, pod.Spec.DNSConfig.Options)
			}
			mutated++
		} else {
			assertUntouched(t, pod)
			untouched++
		}
	}
	return mutated, untouched
}

func TestWebhookKilledDuringBurst(t *testing.T) {
	ns := newNamespace(t, "killed", optedIn)
	t.Cleanup(func() { restartServer(t, "") })
	pods := burst(t, ns, 60, func() {
		if err := server.Kill(); err != nil {
			t.Error(err)
		}
	})
	mutated, untouched := assertWholeOrUntouched(t, pods, ns)
	t.Logf("netguard killed after 15 of 60 creates (6 clients): %d pods mutated, %d created unmutated, 0 lost", mutated, untouched)
	if mutated < 15 || untouched == 0 {
		t.Errorf("the kill did not happen during the burst (mutated %d, untouched %d)", mutated, untouched)
	}
}

func TestSIGTERMDrainsInFlightRequests(t *testing.T) {
	ns := newNamespace(t, "sigterm", optedIn)
	t.Cleanup(func() { restartServer(t, "") })
	var stopErr error
	var stopped time.Duration
	done := make(chan struct{})
	pods := burst(t, ns, 60, func() {
		go func() {
			start := time.Now()
			stopErr = server.Stop()
			stopped = time.Since(start)
			close(done)
		}()
	})
	<-done
	if stopErr != nil {
		t.Errorf("netguard serve did not exit cleanly on SIGTERM: %v", stopErr)
	}
	mutated, untouched := assertWholeOrUntouched(t, pods, ns)
	t.Logf("SIGTERM after 15 of 60 creates (6 clients): exited in %v; %d pods mutated, %d unmutated, 0 lost", stopped.Round(time.Millisecond), mutated, untouched)
	if mutated < 15 {
		t.Errorf("only %d pods mutated; the ones created before SIGTERM must be", mutated)
	}
}

func TestServeRejectsBadConfig(t *testing.T) {
	cmd := exec.Command(netguardBin, "serve", "--kubeconfig", cp.Kubeconfig, "--config", writeConfig(t, "dns:\n  ndots: 0\n"))
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() == 0 {
		t.Fatalf("netguard serve with a bad config: err=%v, want a non-zero exit\n%s", err, out)
	}
	if !strings.Contains(string(out), "dns.ndots: Invalid value: 0: must be 1..15") {
		t.Errorf("error does not name the field: %s", out)
	}
}
