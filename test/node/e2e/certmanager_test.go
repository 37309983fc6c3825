package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	"github.com/netguard-io/netguard/policies/podpolicy"
	"github.com/netguard-io/netguard/serving/certs"
	"github.com/netguard-io/netguard/test/framework"
	"github.com/netguard-io/netguard/test/node"
)

// The chart's cert-manager objects with the node's release name.
const (
	servingCert = node.NetguardRelease           // the webhook's serving Certificate
	rootCert    = node.NetguardRelease + "-root" // the chart's own CA
	tlsSecret   = node.NetguardRelease + "-tls"  // the serving Certificate's Secret
)

// testCertManager: with the chart's defaults, cert-manager (its own
// controller and cainjector, on the node) issues netguard's CA and serving
// certificate and puts the CA in every webhook's caBundle, and the API
// server calls netguard with it. Then a re-issue forced as `cmctl renew`
// does it, in the middle of a steady stream of pod creations: both
// replicas come to serve the new certificate without a restart, and every
// pod created meanwhile is mutated, none refused.
func testCertManager(t *testing.T) {
	ctx := context.Background()
	for _, name := range []string{rootCert, servingCert} {
		if err := cluster.CertificateReady(ctx, node.NetguardNamespace, name); err != nil {
			t.Fatal(err)
		}
	}
	secret, err := cluster.Client.CoreV1().Secrets(node.NetguardNamespace).Get(ctx, tlsSecret, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ca := secret.Data["ca.crt"]
	if err := cluster.CABundleIs(ctx, sameAs(ca)); err != nil {
		t.Fatalf("%v (want the ca.crt of Secret %s)", err, tlsSecret)
	}
	ns := newNamespace(t, "cert-manager", optedIn)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "mutated"},
		Spec:       unschedulable(),
	}
	got, err := cluster.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Annotations[podpolicy.AnnotationStatus] == "" {
		t.Fatal("a pod in an opted-in namespace was not mutated")
	}
	t.Logf("Certificates %s and %s Ready; every webhook's caBundle is %s's ca.crt (%s); a pod is mutated",
		rootCert, servingCert, tlsSecret, subject(t, ca))

	t.Run("renewal under pod creations", func(t *testing.T) { testRenewal(t, ns) })
}

// testRenewal forces a re-issue of the serving certificate while pods are
// created at a steady 10 per second, and measures when each replica serves
// the new certificate (a TLS handshake from the host to each pod's
// webhook port). The stream runs at least 20 seconds and until both
// replicas have switched, 3 seconds past that; the kubelet refreshes a
// mounted Secret on its pod sync (a minute by default), so the switch
// comes up to about a minute after cert-manager writes the Secret.
func testRenewal(t *testing.T, ns string) {
	ctx := context.Background()
	pods := readyPods(t, node.NetguardNamespace, "app.kubernetes.io/name=netguard", 2)
	var replicas []*replica
	for _, p := range pods {
		r := &replica{name: p.Name, uid: string(p.UID), restarts: restarts(p), addr: net.JoinHostPort(p.Status.PodIP, strconv.Itoa(webhookPort(p)))}
		var err error
		if r.before, err = servedSerial(r.addr); err != nil {
			t.Fatalf("TLS handshake with %s (%s): %v", r.name, r.addr, err)
		}
		replicas = append(replicas, r)
	}
	oldSerial, err := secretSerial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range replicas {
		if r.before != oldSerial {
			t.Fatalf("replica %s serves serial %s, the Secret holds %s", r.name, r.before, oldSerial)
		}
	}

	// The stream: a create every 100 ms, each in its own goroutine so that
	// a slow answer does not slow the rate (at most 50 in flight).
	const (
		every     = 100 * time.Millisecond
		minStream = 20 * time.Second
		maxStream = 150 * time.Second
		tail      = 3 * time.Second
	)
	type result struct {
		name    string
		err     error
		mutated bool
	}
	var (
		mu      sync.Mutex
		results []result
		wg      sync.WaitGroup
	)
	stop := make(chan struct{})
	streamDone := make(chan struct{})
	began := time.Now()
	go func() {
		defer close(streamDone)
		tick := time.NewTicker(every)
		defer tick.Stop()
		inflight := make(chan struct{}, 50)
		for i := 0; time.Since(began) < maxStream; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			inflight <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-inflight }()
				p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("stream-%04d", i)}, Spec: unschedulable()}
				got, err := cluster.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
				r := result{name: p.Name, err: err}
				if err == nil {
					r.mutated = got.Annotations[podpolicy.AnnotationStatus] != ""
				}
				mu.Lock()
				results = append(results, r)
				mu.Unlock()
			}()
		}
	}()
	end := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-streamDone
		wg.Wait()
	}
	defer end()

	time.Sleep(5 * time.Second) // the stream in its stride
	triggered := time.Now()
	if err := renew(ctx, servingCert); err != nil {
		t.Fatal(err)
	}

	// The Secret cert-manager writes, then what each replica serves.
	var newSerial string
	var secretChanged time.Time
	framework.Eventually(t, time.Minute, "cert-manager writing a new certificate into "+tlsSecret, func() (bool, string) {
		s, err := secretSerial(ctx)
		if err != nil {
			return false, err.Error()
		}
		if s == oldSerial {
			return false, "serial " + s + " unchanged; " + fmt.Sprint(cluster.CertificateReady(ctx, node.NetguardNamespace, servingCert))
		}
		newSerial, secretChanged = s, time.Now()
		return true, ""
	})
	framework.Eventually(t, 3*time.Minute, "both replicas serving serial "+newSerial, func() (bool, string) {
		var states []string
		done := true
		for _, r := range replicas {
			if r.switched.IsZero() {
				s, err := servedSerial(r.addr)
				switch {
				case err != nil:
					t.Errorf("TLS handshake with %s (%s) during the renewal: %v", r.name, r.addr, err)
				case s == newSerial:
					r.switched = time.Now()
				case s != oldSerial:
					t.Errorf("replica %s serves serial %s, neither the old %s nor the new %s", r.name, s, oldSerial, newSerial)
				}
			}
			done = done && !r.switched.IsZero()
			states = append(states, fmt.Sprintf("%s switched: %v", r.name, !r.switched.IsZero()))
		}
		return done, fmt.Sprint(states)
	})
	allSwitched := replicas[0].switched
	for _, r := range replicas[1:] {
		if r.switched.After(allSwitched) {
			allSwitched = r.switched
		}
	}
	time.Sleep(max(time.Until(allSwitched.Add(tail)), time.Until(began.Add(minStream))))
	end()
	streamed := time.Since(began)

	// Every create answered, and mutated.
	var failed, unmutated []string
	for _, r := range results {
		switch {
		case r.err != nil:
			failed = append(failed, r.name+": "+r.err.Error())
		case !r.mutated:
			unmutated = append(unmutated, r.name)
		}
	}
	if len(failed) > 0 {
		t.Errorf("%d of %d pod creations failed during the renewal: %q", len(failed), len(results), failed)
	}
	if len(unmutated) > 0 {
		t.Errorf("%d of %d pods created during the renewal lack %s: %v", len(unmutated), len(results), podpolicy.AnnotationStatus, unmutated)
	}
	list, err := cluster.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stored := 0
	for _, p := range list.Items {
		if p.Annotations[podpolicy.AnnotationStatus] != "" {
			stored++
		}
	}
	if want := len(results) - len(failed) + 1; len(list.Items) != want || stored != want {
		t.Errorf("the namespace holds %d pods, %d of them mutated; want %d, all mutated", len(list.Items), stored, want)
	}

	// Same pods, no restart; the CA, and so caBundle, unchanged.
	after := readyPods(t, node.NetguardNamespace, "app.kubernetes.io/name=netguard", 2)
	for _, r := range replicas {
		i := -1
		for j, p := range after {
			if string(p.UID) == r.uid {
				i = j
			}
		}
		switch {
		case i < 0:
			t.Errorf("replica %s (uid %s) is gone after the renewal", r.name, r.uid)
		case restarts(after[i]) != r.restarts:
			t.Errorf("replica %s restarted during the renewal: %d restarts, %d before", r.name, restarts(after[i]), r.restarts)
		}
	}
	if err := cluster.CertificateReady(ctx, node.NetguardNamespace, servingCert); err != nil {
		t.Error(err)
	}
	secret, err := cluster.Client.CoreV1().Secrets(node.NetguardNamespace).Get(ctx, tlsSecret, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := cluster.CABundleIs(ctx, sameAs(secret.Data["ca.crt"])); err != nil {
		t.Errorf("after the renewal: %v", err)
	}

	t.Logf("serial before %s, after %s (both replicas, same pods, no restart)", oldSerial, newSerial)
	t.Logf("renewal: Secret rewritten %s after the trigger; every replica serving the new certificate %s after the Secret changed (%s)",
		secretChanged.Sub(triggered).Round(100*time.Millisecond), allSwitched.Sub(secretChanged).Round(100*time.Millisecond), switchTimes(replicas, secretChanged))
	t.Logf("stream: %d pods created in %s (%.1f/s), %d mutated, %d errors",
		len(results), streamed.Round(100*time.Millisecond), float64(len(results))/streamed.Seconds(), len(results)-len(failed)-len(unmutated), len(failed))
}

// replica is a netguard pod during the renewal.
type replica struct {
	name, uid, addr string // addr: its webhook server
	restarts        int32
	before          string    // the serial it served before
	switched        time.Time // when it first served the new one
}

// switchTimes lists when each replica switched, after the Secret changed.
func switchTimes(replicas []*replica, since time.Time) string {
	s := ""
	for i, r := range replicas {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%s +%s", r.name, r.switched.Sub(since).Round(100*time.Millisecond))
	}
	return s
}

// unschedulable is a pod spec no node matches: the pod stays Pending and
// costs the kubelet nothing.
func unschedulable() corev1.PodSpec {
	return corev1.PodSpec{
		NodeSelector:                  map[string]string{"netguard.io/e2e-node": "none"},
		TerminationGracePeriodSeconds: ptr.To[int64](0),
		Containers:                    []corev1.Container{{Name: "app", Image: node.PauseImage, ImagePullPolicy: corev1.PullNever}},
	}
}

// renew forces a re-issue of a Certificate in netguard's namespace as
// `cmctl renew` does: the condition Issuing=True, reason ManuallyTriggered,
// through the status subresource.
func renew(ctx context.Context, name string) error {
	certs := cluster.Dynamic.Resource(node.CertificateGVR).Namespace(node.NetguardNamespace)
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cert, err := certs.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		conds, _, _ := unstructured.NestedSlice(cert.Object, "status", "conditions")
		issuing := map[string]any{
			"type":               "Issuing",
			"status":             "True",
			"reason":             "ManuallyTriggered",
			"message":            "Certificate re-issuance manually triggered",
			"lastTransitionTime": time.Now().UTC().Format(time.RFC3339),
			"observedGeneration": cert.GetGeneration(),
		}
		replaced := false
		for i, c := range conds {
			if m, ok := c.(map[string]any); ok && m["type"] == "Issuing" {
				if m["status"] == "True" {
					return fmt.Errorf("Certificate %s is being issued already", name)
				}
				conds[i], replaced = issuing, true
			}
		}
		if !replaced {
			conds = append(conds, issuing)
		}
		if err := unstructured.SetNestedSlice(cert.Object, conds, "status", "conditions"); err != nil {
			return err
		}
		_, err = certs.UpdateStatus(ctx, cert, metav1.UpdateOptions{})
		return err
	})
}

// secretSerial is the serial number of the serving certificate in
// netguard's TLS Secret.
func secretSerial(ctx context.Context) (string, error) {
	s, err := cluster.Client.CoreV1().Secrets(node.NetguardNamespace).Get(ctx, tlsSecret, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	block, _ := pem.Decode(s.Data["tls.crt"])
	if block == nil {
		return "", errors.New("no PEM in tls.crt")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return "", err
	}
	return cert.SerialNumber.Text(16), nil
}

// servedSerial is the serial number of the certificate a webhook server
// presents.
func servedSerial(addr string) (string, error) {
	d := &net.Dialer{Timeout: 2 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // reads the certificate only
	if err != nil {
		return "", err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Text(16), nil
}

// webhookPort is the container port named webhook of a netguard pod.
func webhookPort(p corev1.Pod) int {
	for _, port := range p.Spec.Containers[0].Ports {
		if port.Name == "webhook" {
			return int(port.ContainerPort)
		}
	}
	return 9443
}

func restarts(p corev1.Pod) int32 {
	n := int32(0)
	for _, c := range p.Status.ContainerStatuses {
		n += c.RestartCount
	}
	return n
}

// sameAs accepts a caBundle equal to ca.
func sameAs(ca []byte) func([]byte) error {
	return func(got []byte) error {
		if !bytes.Equal(got, ca) {
			return errors.New("differs")
		}
		return nil
	}
}

// subject is the subject of the first certificate in a PEM bundle.
func subject(t *testing.T, bundle []byte) string {
	t.Helper()
	block, _ := pem.Decode(bundle)
	if block == nil {
		t.Fatal("no PEM in the CA bundle")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert.Subject.String()
}

// testTLSModes: a helm upgrade to self-managed TLS (certManager.enabled
// false) and back, as docs/install.md says one switches. Each way the
// webhook configurations' caBundle comes to be the new owner's CA and
// verifies what both replicas serve, and pods are mutated; in between,
// netguard serves a certificate of its own CA.
func testTLSModes(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, "tls-modes", optedIn)
	for _, mode := range []struct {
		name   string
		values []string
		issuer string // of the serving certificates
	}{
		{"self-managed", []string{"--set", "certManager.enabled=false"}, certs.CACommonName},
		{"cert-manager", nil, rootCert},
	} {
		began := time.Now()
		if err := cluster.Helm(ctx, "upgrade", append(mode.values, "--wait", "--timeout", "180s")...); err != nil {
			t.Fatal(err)
		}
		if err := cluster.WaitNetguard(ctx); err != nil {
			t.Fatalf("%s: %v", mode.name, err)
		}
		m, err := cluster.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, node.NetguardRelease, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if from, want := m.Annotations["cert-manager.io/inject-ca-from"] != "", mode.name == "cert-manager"; from != want {
			t.Errorf("%s: the webhook configuration asks cainjector for caBundle: %v, want %v", mode.name, from, want)
		}
		// The replicas of the previous mode are gone (WaitNetguard); the
		// caBundle settles once the new owner has written it.
		var served []string
		framework.Eventually(t, time.Minute, mode.name+": every caBundle verifying both replicas", func() (bool, string) {
			err := cluster.CABundleIs(ctx, func(ca []byte) error {
				var err error
				served, err = verifyReplicas(ctx, ca)
				return err
			})
			if err != nil {
				return false, err.Error()
			}
			return true, ""
		})
		for _, issuer := range served {
			if issuer != mode.issuer {
				t.Errorf("%s: a replica serves a certificate issued by %q, want %q", mode.name, issuer, mode.issuer)
			}
		}
		m, err = cluster.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, node.NetguardRelease, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		bundle := node.Subjects(m.Webhooks[0].ClientConfig.CABundle)
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: mode.name}, Spec: unschedulable()}
		got, err := cluster.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.Annotations[podpolicy.AnnotationStatus] == "" {
			t.Errorf("%s: a pod in an opted-in namespace was not mutated", mode.name)
		}
		certificates, err := cluster.Dynamic.Resource(node.CertificateGVR).Namespace(node.NetguardNamespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if n, want := len(certificates.Items), map[bool]int{true: 2, false: 0}[mode.name == "cert-manager"]; n != want {
			t.Errorf("%s: %d Certificates in %s, want %d", mode.name, n, node.NetguardNamespace, want)
		}
		// Back in cert-manager mode, caBundle keeps netguard's own CA next to
		// cert-manager's: cainjector keeps the unexpired certificates it
		// finds there (CAInjectorMerging).
		t.Logf("%s: switched in %s; both replicas serve certificates issued by %s, which every caBundle verifies (%s); pods mutated",
			mode.name, time.Since(began).Round(100*time.Millisecond), mode.issuer, strings.Join(bundle, ", "))
	}
}

// verifyReplicas checks that the certificate each netguard replica serves
// verifies against bundle for the webhook Service's name, and returns
// their issuers' common names.
func verifyReplicas(ctx context.Context, bundle []byte) ([]string, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(bundle) {
		return nil, errors.New("holds no certificate")
	}
	pods, err := cluster.Client.CoreV1().Pods(node.NetguardNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=netguard"})
	if err != nil {
		return nil, err
	}
	var issuers []string
	for _, p := range pods.Items {
		addr := net.JoinHostPort(p.Status.PodIP, strconv.Itoa(webhookPort(p)))
		d := &net.Dialer{Timeout: 2 * time.Second}
		conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{RootCAs: pool, ServerName: node.NetguardRelease + "." + node.NetguardNamespace + ".svc"})
		if err != nil {
			return nil, fmt.Errorf("does not verify %s (%s): %w", p.Name, addr, err)
		}
		issuers = append(issuers, conn.ConnectionState().PeerCertificates[0].Issuer.CommonName)
		conn.Close()
	}
	return issuers, nil
}
