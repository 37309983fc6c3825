package integration

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	admissionregv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/netguard-io/netguard/webhook/conflicts"
)

// The outage replayed: two load-balancer controllers reconcile the same
// Service, each rewriting the status and an annotation the other wrote.

// conflictFlips is the threshold the tests configure: a conflict is
// reported at the 4th takeover within the window.
const conflictFlips = 4

const conflictsConfig = "conflicts:\n  flips: 4\n  window: 2m\n"

// ownerAnnotation is the annotation both controllers write.
const ownerAnnotation = "example.com/owner"

func loadBalancerService(ns, name string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80}},
		},
	}
}

// reconcileAnnotation writes the annotation as field manager owner would.
func reconcileAnnotation(t *testing.T, key client.ObjectKey, owner, value string) {
	t.Helper()
	ctx := context.Background()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		svc := &corev1.Service{}
		if err := k8s.Get(ctx, key, svc); err != nil {
			return err
		}
		if svc.Annotations == nil {
			svc.Annotations = map[string]string{}
		}
		svc.Annotations[ownerAnnotation] = value
		return k8s.Update(ctx, svc, client.FieldOwner(owner))
	})
	if err != nil {
		t.Fatalf("%s writing the annotation of %s: %v", owner, key, err)
	}
}

// reconcileStatus writes the load-balancer status as field manager owner
// would.
func reconcileStatus(t *testing.T, key client.ObjectKey, owner, ip string) {
	t.Helper()
	ctx := context.Background()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		svc := &corev1.Service{}
		if err := k8s.Get(ctx, key, svc); err != nil {
			return err
		}
		svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ip}}
		return k8s.Status().Update(ctx, svc, client.FieldOwner(owner))
	})
	if err != nil {
		t.Fatalf("%s writing the status of %s: %v", owner, key, err)
	}
}

// writeStatus writes the load-balancer status through cs, as field
// manager owner would.
func writeStatus(cs kubernetes.Interface, key client.ObjectKey, owner, ip string, dryRun bool) error {
	ctx := context.Background()
	opts := metav1.UpdateOptions{FieldManager: owner}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		svc, err := cs.CoreV1().Services(key.Namespace).Get(ctx, key.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ip}}
		_, err = cs.CoreV1().Services(key.Namespace).UpdateStatus(ctx, svc, opts)
		return err
	})
}

// metric reads one unlabelled metric of the running server.
func metric(t *testing.T, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + server.MetricsAddr + "/metrics")
	if err != nil {
		t.Fatalf("reading metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %s: %v", sc.Text(), err)
			}
			return f
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("reading metrics: %v", err)
	}
	t.Fatalf("metric %s not served", name)
	return 0
}

// waitForMetric waits until the metric reaches want (20s at most).
func waitForMetric(t *testing.T, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := metric(t, name)
		if got == want {
			return
		}
		if got > want || time.Now().After(deadline) {
			t.Fatalf("metric %s = %v, want %v", name, got, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// conflictEvents returns the ControllersConflict Events on Service name.
func conflictEvents(t *testing.T, ns, name string) []corev1.Event {
	t.Helper()
	list := &corev1.EventList{}
	if err := k8s.List(context.Background(), list, client.InNamespace(ns)); err != nil {
		t.Fatalf("listing events: %v", err)
	}
	var out []corev1.Event
	for _, e := range list.Items {
		if e.Reason == "ControllersConflict" && e.InvolvedObject.Kind == "Service" && e.InvolvedObject.Name == name {
			out = append(out, e)
		}
	}
	return out
}

// TestConflictBetweenTwoControllers: lb-a and lb-b take the annotation and
// the status of one Service from each other. Below the threshold nothing
// is reported; at the threshold the Event and the metrics appear.
func TestConflictBetweenTwoControllers(t *testing.T) {
	restartServer(t, writeConfig(t, conflictsConfig))
	t.Cleanup(func() { restartServer(t, "") })
	ns := newNamespace(t, "conflict", optedIn)
	svc := loadBalancerService(ns, "gateway")
	create(t, svc)
	key := client.ObjectKeyFromObject(svc)

	// lb-a provisions first: new fields, taken from no one.
	reconcileAnnotation(t, key, "lb-a", "lb-a")
	reconcileStatus(t, key, "lb-a", "192.0.2.10")

	// Then the two alternate; each write takes a field from the other.
	writes := []func(){
		func() { reconcileAnnotation(t, key, "lb-b", "lb-b") },
		func() { reconcileStatus(t, key, "lb-b", "198.51.100.20") },
		func() { reconcileAnnotation(t, key, "lb-a", "lb-a") },
		func() { reconcileStatus(t, key, "lb-a", "192.0.2.10") },
	}
	if len(writes) != conflictFlips {
		t.Fatalf("the test needs %d takeovers", conflictFlips)
	}
	for i, write := range writes[:conflictFlips-1] {
		write()
		// Once the detector has counted the takeover, its verdict on it
		// is in the other metrics too.
		waitForMetric(t, "netguard_service_field_takeovers_total", float64(i+1))
		if n := metric(t, "netguard_service_conflicts_total"); n != 0 {
			t.Fatalf("conflict reported after %d takeovers, threshold %d", i+1, conflictFlips)
		}
		if n := metric(t, "netguard_services_in_conflict"); n != 0 {
			t.Fatalf("%v Services in conflict after %d takeovers", n, i+1)
		}
	}
	if evs := conflictEvents(t, ns, svc.Name); len(evs) != 0 {
		t.Fatalf("Event before the threshold: %s", evs[0].Message)
	}

	writes[conflictFlips-1]()
	waitForMetric(t, "netguard_service_field_takeovers_total", conflictFlips)
	if n := metric(t, "netguard_service_conflicts_total"); n != 1 {
		t.Errorf("netguard_service_conflicts_total = %v at the threshold, want 1", n)
	}
	if n := metric(t, "netguard_services_in_conflict"); n != 1 {
		t.Errorf("netguard_services_in_conflict = %v at the threshold, want 1", n)
	}
	var evs []corev1.Event
	deadline := time.Now().Add(20 * time.Second)
	for len(evs) == 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		evs = conflictEvents(t, ns, svc.Name)
	}
	if len(evs) != 1 {
		t.Fatalf("%d ControllersConflict Events on the Service, want 1", len(evs))
	}
	ev := evs[0]
	t.Logf("Event: %s %s: %s", ev.Type, ev.Reason, ev.Message)
	if ev.Type != corev1.EventTypeWarning || ev.InvolvedObject.UID != svc.UID {
		t.Errorf("Event type %s on %s, want Warning on the Service (uid %s)", ev.Type, ev.InvolvedObject.UID, svc.UID)
	}
	for _, want := range []string{"lb-a and lb-b", key.String(), "status.loadBalancer.ingress", "metadata.annotations[" + ownerAnnotation + "]", "4 takeovers", "spec.loadBalancerClass"} {
		if !strings.Contains(ev.Message, want) {
			t.Errorf("Event message lacks %q", want)
		}
	}

	// The fight goes on: still one conflict, counted once.
	reconcileStatus(t, key, "lb-b", "198.51.100.20")
	waitForMetric(t, "netguard_service_field_takeovers_total", conflictFlips+1)
	if n := metric(t, "netguard_service_conflicts_total"); n != 1 {
		t.Errorf("netguard_service_conflicts_total = %v as the fight goes on, want 1", n)
	}

	// Both wrote the status of a LoadBalancer Service without a class:
	// both count as load-balancer controllers (other tests' Services may
	// add theirs).
	if n := metric(t, "netguard_service_load_balancer_controllers"); n < 2 {
		t.Errorf("netguard_service_load_balancer_controllers = %v, want at least lb-a and lb-b", n)
	}
}

// TestConflictNotReportedForOneController: one controller rewriting the
// annotation and the status of a Service many times takes nothing from
// anyone and is never reported.
func TestConflictNotReportedForOneController(t *testing.T) {
	restartServer(t, writeConfig(t, conflictsConfig))
	t.Cleanup(func() { restartServer(t, "") })
	ns := newNamespace(t, "busy", optedIn)
	svc := loadBalancerService(ns, "gateway")
	create(t, svc)
	key := client.ObjectKeyFromObject(svc)
	for i := range 6 * conflictFlips {
		reconcileAnnotation(t, key, "lb-a", fmt.Sprintf("generation-%d", i))
		reconcileStatus(t, key, "lb-a", fmt.Sprintf("192.0.2.%d", 10+i))
	}

	// A barrier: one takeover on another Service, written after all the
	// above. The detector sees Service changes in order, so once it has
	// counted this one it has seen every write above.
	barrier := loadBalancerService(ns, "barrier")
	create(t, barrier)
	reconcileAnnotation(t, client.ObjectKeyFromObject(barrier), "barrier-a", "a")
	reconcileAnnotation(t, client.ObjectKeyFromObject(barrier), "barrier-b", "b")
	waitForMetric(t, "netguard_service_field_takeovers_total", 1)

	if n := metric(t, "netguard_service_conflicts_total"); n != 0 {
		t.Errorf("one busy controller reported as %v conflicts", n)
	}
	if n := metric(t, "netguard_services_in_conflict"); n != 0 {
		t.Errorf("netguard_services_in_conflict = %v", n)
	}
	if evs := conflictEvents(t, ns, svc.Name); len(evs) != 0 {
		t.Errorf("Event for one controller: %s", evs[0].Message)
	}
}

// installStatusWebhook routes Service status updates in opted-in
// namespaces to netguard, as the chart does, until the test ends.
func installStatusWebhook(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	url := server.WebhookURL(conflicts.StatusPath)
	cfg := &admissionregv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "netguard-service-status"},
		Webhooks: []admissionregv1.ValidatingWebhook{{
			Name:                    "service-status.netguard.io",
			ClientConfig:            admissionregv1.WebhookClientConfig{URL: &url, CABundle: cp.CAData},
			AdmissionReviewVersions: []string{"v1"},
			SideEffects:             ptr.To(admissionregv1.SideEffectClassNone),
			FailurePolicy:           ptr.To(admissionregv1.Ignore),
			TimeoutSeconds:          ptr.To[int32](5),
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: optedIn},
			Rules: []admissionregv1.RuleWithOperations{{
				Operations: []admissionregv1.OperationType{admissionregv1.Update},
				Rule: admissionregv1.Rule{
					APIGroups:   []string{""},
					APIVersions: []string{"v1"},
					Resources:   []string{"services/status"},
					Scope:       ptr.To(admissionregv1.NamespacedScope),
				},
			}},
		}},
	}
	if err := k8s.Create(ctx, cfg); err != nil {
		t.Fatalf("installing the status webhook: %v", err)
	}
	t.Cleanup(func() {
		if err := k8s.Delete(ctx, cfg); err != nil {
			t.Errorf("removing the status webhook: %v", err)
		}
	})
}

// warningsSeen collects the admission warnings a client receives.
type warningsSeen struct{ texts []string }

func (w *warningsSeen) HandleWarningHeader(_ int, _ string, text string) {
	w.texts = append(w.texts, text)
}

// warnedClient is a client whose admission warnings land in the returned
// warningsSeen.
func warnedClient(t *testing.T) (client.Client, *warningsSeen) {
	t.Helper()
	seen := &warningsSeen{}
	restCfg := rest.CopyConfig(cp.Config)
	restCfg.WarningHandler = seen
	c, err := client.New(restCfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c, seen
}

// TestConflictDenyModeStopsTheFight: with conflicts.mode deny, once lb-a
// and lb-b are in conflict, a status write that takes the status from the
// other is denied, and the current owner's writes are admitted, both with
// the conflict warning.
func TestConflictDenyModeStopsTheFight(t *testing.T) {
	restartServer(t, writeConfig(t, conflictsConfig+"  mode: deny\n"))
	t.Cleanup(func() { restartServer(t, "") })
	installStatusWebhook(t)
	seen := &warningsSeen{}
	restCfg := rest.CopyConfig(cp.Config)
	restCfg.WarningHandler = seen
	lb, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		t.Fatal(err)
	}

	ns := newNamespace(t, "deny", optedIn)
	svc := loadBalancerService(ns, "gateway")
	create(t, svc)
	key := client.ObjectKeyFromObject(svc)
	ips := map[string]string{"lb-a": "192.0.2.10", "lb-b": "198.51.100.20"}
	owners := []string{"lb-a", "lb-b", "lb-a", "lb-b", "lb-a"} // 4 takeovers
	for _, owner := range owners {
		if err := writeStatus(lb, key, owner, ips[owner], false); err != nil {
			t.Fatalf("%s before the conflict: %v", owner, err)
		}
	}
	waitForMetric(t, "netguard_service_conflicts_total", 1)
	if len(seen.texts) != 0 {
		t.Errorf("warnings before the conflict: %q", seen.texts)
	}

	// lb-b would take the status back: denied. The API server may take a
	// moment to call a webhook configuration it has just been given, so
	// probe with dry runs, which change nothing, first.
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := writeStatus(lb, key, "lb-b", ips["lb-b"], true)
		if apierrors.IsInvalid(err) {
			break
		}
		if err != nil || time.Now().After(deadline) {
			t.Fatalf("dry run of lb-b's takeover: %v, want it denied", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	seen.texts = nil
	err = writeStatus(lb, key, "lb-b", ips["lb-b"], false)
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), `"lb-b" may not take fields from "lb-a"`) {
		t.Fatalf("lb-b's takeover in deny mode: %v, want it denied", err)
	}
	t.Logf("denied: %v", err)
	if len(seen.texts) != 1 || !strings.Contains(seen.texts[0], "lb-a and lb-b keep taking fields") {
		t.Errorf("warnings with the denial = %q, want the conflict warning", seen.texts)
	}

	// lb-a owns the status: its writes take nothing and are admitted.
	seen.texts = nil
	if err := writeStatus(lb, key, "lb-a", "192.0.2.11", false); err != nil {
		t.Fatalf("the owner's write in deny mode: %v", err)
	}
	if len(seen.texts) != 1 || !strings.Contains(seen.texts[0], "lb-a and lb-b keep taking fields") {
		t.Errorf("warnings with the owner's write = %q, want the conflict warning", seen.texts)
	}
	stored := &corev1.Service{}
	if err := k8s.Get(context.Background(), key, stored); err != nil {
		t.Fatal(err)
	}
	if got := stored.Status.LoadBalancer.Ingress; len(got) != 1 || got[0].IP != "192.0.2.11" {
		t.Errorf("stored status = %+v, want lb-a's 192.0.2.11", got)
	}
	if n := metric(t, "netguard_service_conflict_denials_total"); n < 1 {
		t.Errorf("netguard_service_conflict_denials_total = %v", n)
	}
}
