package bench

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/netguard-io/netguard/clusterview"
	"github.com/netguard-io/netguard/config"
	"github.com/netguard-io/netguard/serve"
	"github.com/netguard-io/netguard/serving"
	ngwebhook "github.com/netguard-io/netguard/webhook"
	"github.com/netguard-io/netguard/webhook/services"
)

// TestAdmissionLatency measures Pod CREATE admission over TLS: netguard's
// pod handler against a no-op handler on the same controller-runtime
// webhook server, in the same run, taking turns so both see the same
// machine. It reports p50/p99/p99.9 and the ratios; it asserts no timing.
// Run with NETGUARD_BENCH=1 (make bench).
func TestAdmissionLatency(t *testing.T) {
	if os.Getenv("NETGUARD_BENCH") == "" {
		t.Skip("benchmark: set NETGUARD_BENCH=1 (make bench)")
	}
	base, client := startServer(t, nil)
	body := podReview(t)
	paths := []string{"/noop", ngwebhook.MutatePodPath}
	compare(t, client, base, paths, body)
}

// TestServiceAdmissionLatency is the same comparison for Service
// validation, with 100k pods in the Service guard's cache (the production
// stores and indexes): a Service CREATE whose selector spans both
// revisions of the 140-pod Deployment (admitted, the common case) and the
// outage's selector change (denied, the case the guard exists for).
func TestServiceAdmissionLatency(t *testing.T) {
	if os.Getenv("NETGUARD_BENCH") == "" {
		t.Skip("benchmark: set NETGUARD_BENCH=1 (make bench)")
	}
	w := cachedWorld(100_000, false)
	add(w.stores.Namespaces, clusterview.TransformNamespace, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "loki", Labels: map[string]string{"netguard.io/inject": "enabled"}}})
	cfg, err := config.Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	base, client := startServer(t, func(srv webhook.Server) {
		srv.Register(services.ServicePath, &webhook.Admission{Handler: services.NewServiceHandler(w.view, cfg)})
	})
	t.Logf("cache: %d pods", w.pods)
	for _, c := range []struct {
		name    string
		body    []byte
		allowed bool
	}{
		{"Service CREATE selecting both revisions (admitted)", serviceReview(t, admissionv1.Create, oldSelector, nil), true},
		{"the outage's selector change (denied)", serviceReview(t, admissionv1.Update, newSelector, oldSelector), false},
	} {
		resp, err := review(client, base+services.ServicePath, c.body)
		if err != nil || resp.Allowed != c.allowed {
			t.Fatalf("%s: allowed=%v err=%v, want allowed=%v", c.name, resp != nil && resp.Allowed, err, c.allowed)
		}
		t.Logf("== %s", c.name)
		compare(t, client, base, []string{"/noop", services.ServicePath}, c.body)
	}
}

// compare runs the same load against each path (the first is the
// baseline), the paths taking turns, closed loop then open loop, and
// reports.
func compare(t *testing.T, client *http.Client, base string, paths []string, body []byte) {
	t.Helper()
	urls := make([]string, len(paths))
	for i, p := range paths {
		urls[i] = base + p
	}
	byPath := func(byURL map[string][]time.Duration) map[string][]time.Duration {
		out := map[string][]time.Duration{}
		for i, p := range paths {
			out[p] = byURL[urls[i]]
		}
		return out
	}
	// Warm up connections and code paths.
	closedLoop(t, client, urls, body, 4, 1000)

	t.Log("closed loop, 4 concurrent clients, 24,000 requests per handler, the handlers taking turns:")
	report(t, byPath(closedLoop(t, client, urls, body, 4, 24000)), paths)

	t.Log("open loop, 200 requests/s per handler for 24 s, the handlers taking turns, latency from the scheduled send time:")
	open := byPath(openLoop(t, client, urls, body, 200, 24*time.Second))
	report(t, open, paths)
}

func report(t *testing.T, lat map[string][]time.Duration, paths []string) {
	t.Helper()
	q := func(d []time.Duration, p float64) time.Duration {
		s := slices.Clone(d)
		slices.Sort(s)
		return s[min(len(s)-1, int(float64(len(s))*p))]
	}
	noop := lat[paths[0]]
	for _, p := range paths {
		d := lat[p]
		t.Logf("  %-16s n=%5d  p50 %8v  p99 %8v  p99.9 %8v   ratio to no-op: p50 %.2fx  p99 %.2fx  p99.9 %.2fx",
			p, len(d), q(d, .5).Round(time.Microsecond), q(d, .99).Round(time.Microsecond), q(d, .999).Round(time.Microsecond),
			float64(q(d, .5))/float64(q(noop, .5)), float64(q(d, .99))/float64(q(noop, .99)), float64(q(d, .999))/float64(q(noop, .999)))
	}
}

// post sends one review and times it until the response is decoded. The
// verdict is not checked here (the no-op admits what netguard denies); the
// tests check it once before timing.
func post(client *http.Client, url string, body []byte) (time.Duration, error) {
	start := time.Now()
	_, err := review(client, url, body)
	return time.Since(start), err
}

func review(client *http.Client, url string, body []byte) (*admissionv1.AdmissionResponse, error) {
	resp, err := client.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var review admissionv1.AdmissionReview
	err = json.NewDecoder(resp.Body).Decode(&review)
	_, _ = io.Copy(io.Discard, resp.Body)
	if err == nil && (review.Response == nil || review.Response.UID != "bench") {
		err = fmt.Errorf("no response for the review: %+v", review.Response)
	}
	if err == nil && review.Response.Result != nil && review.Response.Result.Code >= 500 {
		err = fmt.Errorf("handler error: %s", review.Response.Result.Message)
	}
	return review.Response, err
}

// closedLoop runs workers clients, each sending its next request when the
// last one is answered, the paths taking turns request by request (see
// openLoop), until each path has had n requests.
func closedLoop(t *testing.T, client *http.Client, urls []string, body []byte, workers, n int) map[string][]time.Duration {
	t.Helper()
	var mu sync.Mutex
	var wg sync.WaitGroup
	out := map[string][]time.Duration{}
	per := n * len(urls) / workers
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				url := urls[(w+i)%len(urls)]
				d, err := post(client, url, body)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				out[url] = append(out[url], d)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return out
}

// openLoop sends at a fixed rate per path regardless of answers, the paths
// taking turns request by request, and measures each request from when it
// was due, so a slow server cannot hide its queue. Taking turns gives every
// path the same machine: a collector cycle or a scheduling hiccup lands on
// both alike instead of on whichever block it happened to fall in.
func openLoop(t *testing.T, client *http.Client, urls []string, body []byte, rate int, dur time.Duration) map[string][]time.Duration {
	t.Helper()
	n := int(dur.Seconds()*float64(rate)) * len(urls)
	interval := time.Second / time.Duration(rate*len(urls))
	var mu sync.Mutex
	var wg sync.WaitGroup
	out := map[string][]time.Duration{}
	start := time.Now()
	for i := 0; i < n; i++ {
		due := start.Add(time.Duration(i) * interval)
		url := urls[i%len(urls)]
		time.Sleep(time.Until(due))
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := post(client, url, body); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			out[url] = append(out[url], time.Since(due))
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

// startServer runs controller-runtime's webhook server over TLS with
// netguard's pod handler, a no-op handler and what register adds. The
// namespace is read from controller-runtime's in-memory client, standing in
// for the informer cache the server reads in a cluster.
func startServer(t *testing.T, register func(webhook.Server)) (string, *http.Client) {
	t.Helper()
	dir := t.TempDir()
	pool := writeCert(t, dir)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port

	scheme := serve.Scheme()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team", Labels: map[string]string{"netguard.io/inject": "enabled"}}}
	reader := fake.NewClientBuilder().WithScheme(scheme).WithObjects(ns).Build()
	cfg := config.Default()
	cfg.DNS.Search.ClusterDNS = "10.96.0.10"
	srv := serving.NewWebhookServer(l, dir)
	srv.Register(ngwebhook.MutatePodPath, &webhook.Admission{Handler: ngwebhook.NewPodMutator(cfg, reader, clusterview.NewClusterDNS(cfg, reader), "bench")})
	srv.Register("/noop", &webhook.Admission{Handler: admission.HandlerFunc(func(context.Context, admission.Request) admission.Response {
		return admission.Allowed("")
	})})
	if register != nil {
		register(srv)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { _ = srv.Start(ctx) }()

	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: 64,
	}, Timeout: 10 * time.Second}
	base := fmt.Sprintf("https://127.0.0.1:%d", port)
	for i := 0; ; i++ {
		if _, err := post(client, base+"/noop", podReview(t)); err == nil {
			break
		} else if i > 100 {
			t.Fatalf("webhook server not up: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return base, client
}

func writeCert(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "netguard-bench"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	return pool
}

// podReview is a Pod CREATE review of a typical application pod: two
// containers with env, probes and volumes (about 3 KiB).
func podReview(t *testing.T) []byte {
	t.Helper()
	pod := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{GenerateName: "api-7d9f8c-", Namespace: "team", Labels: map[string]string{"app": "api", "pod-template-hash": "7d9f8c"}},
		Spec: corev1.PodSpec{
			Volumes: []corev1.Volume{{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "api"}}}}},
		},
	}
	for _, name := range []string{"api", "nginx"} {
		c := corev1.Container{Name: name, Image: "registry.example/" + name + ":1.4.2",
			Ports:          []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
			VolumeMounts:   []corev1.VolumeMount{{Name: "config", MountPath: "/etc/" + name}},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready"}}},
		}
		for i := 0; i < 12; i++ {
			c.Env = append(c.Env, corev1.EnvVar{Name: fmt.Sprintf("SETTING_%d", i), Value: strings.Repeat("v", 24)})
		}
		pod.Spec.Containers = append(pod.Spec.Containers, c)
	}
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	review := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: "bench", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"}, Operation: admissionv1.Create,
			Namespace: "team", Object: runtime.RawExtension{Raw: raw},
		},
	}
	out, err := json.Marshal(review)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// serviceReview is a review of Service loki/distributor with selector;
// an UPDATE also carries the old selector.
func serviceReview(t *testing.T, op admissionv1.Operation, selector, old map[string]string) []byte {
	t.Helper()
	raw := func(sel map[string]string) runtime.RawExtension {
		svc := service(sel)
		svc.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: 3100}}
		j, err := json.Marshal(svc)
		if err != nil {
			t.Fatal(err)
		}
		return runtime.RawExtension{Raw: j}
	}
	req := &admissionv1.AdmissionRequest{
		UID: "bench", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Service"},
		Resource: metav1.GroupVersionResource{Version: "v1", Resource: "services"}, Operation: op,
		Namespace: "loki", Name: "distributor", Object: raw(selector),
	}
	if old != nil {
		req.OldObject = raw(old)
	}
	out, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request:  req,
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
