package integration

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	admissionregv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
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

// TestAPIServerRestart: netguard outlives a kube-apiserver restart. It keeps
// running and live while the API server is away; afterwards its caches
// list and watch again (the Service guard judges pods created after the
// restart), pods are mutated and readiness holds. The informers retry with
// client-go's backoff, so the guard's view catches up some seconds after
// the API server is back; the test measures how many.
func TestAPIServerRestart(t *testing.T) {
	installServiceWebhook(t, admissionregv1.Ignore)
	ns := newNamespace(t, "restart", optedIn)
	d := newDeployment(t, ns, "web", 6, labels("app", "web"))
	newRevision(t, d, "aaaaaa", 6)

	if err := cp.StopAPIServer(); err != nil {
		t.Fatalf("stopping kube-apiserver: %v", err)
	}
	stopped := true
	t.Cleanup(func() {
		if stopped {
			_ = cp.StartAPIServer()
		}
	})
	// Long enough for the informers to lose their watches and fail retries.
	time.Sleep(3 * time.Second)
	if !server.Running() {
		t.Fatalf("netguard serve exited while the API server was down:\n%s", tail(server.Log(), 40))
	}
	if code := server.Probe("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d while the API server was down, want 200 (a restart would not help)", code)
	}
	t.Logf("API server down: netguard running, /healthz %d, /readyz %d", server.Probe("/healthz"), server.Probe("/readyz"))

	start := time.Now()
	if err := cp.StartAPIServer(); err != nil {
		t.Fatalf("starting kube-apiserver again: %v", err)
	}
	stopped = false
	t.Logf("API server back after %v", time.Since(start).Round(time.Millisecond))

	// Pods are mutated again, also in a namespace created after the
	// restart, which the namespace cache does not have yet: netguard reads
	// it live.
	pod := createPod(t, plainPod(ns, "after-restart", "registry.example/app:1"))
	assertHardened(t, pod, ns)
	fresh := newNamespace(t, "restart-new", optedIn)
	pod = createPod(t, plainPod(fresh, "in-new-namespace", "registry.example/app:1"))
	assertHardened(t, pod, fresh)

	// A rollout that happens after the restart: the guard only knows of its
	// pods through the watches it re-established.
	setTemplate(t, d, labels("app", "web", "track", "new"))
	newRevision(t, d, "bbbbbb", 2)
	svc := service(ns, "web-new", labels("app", "web", "track", "new"))
	var err error
	deadline := time.Now().Add(60 * time.Second)
	for {
		err = k8s.Create(context.Background(), svc.DeepCopy(), client.DryRunAll)
		if apierrors.IsInvalid(err) && strings.Contains(err.Error(), "2 of 8 pods") || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("the guard's view had the pods created after the restart %v after kube-apiserver was started again", time.Since(start).Round(100*time.Millisecond))
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "2 of 8 pods") {
		t.Fatalf("Service selecting the post-restart revision: err = %v, want a denial naming 2 of 8 pods", err)
	}
	if !server.Running() || server.Probe("/readyz") != http.StatusOK {
		t.Fatalf("netguard not ready after the API server came back (running %v, /readyz %d)", server.Running(), server.Probe("/readyz"))
	}
}
