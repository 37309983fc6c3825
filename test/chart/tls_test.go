package chart

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	b64 "encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	admissionregv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/netguard-io/netguard/policies/podpolicy"
	"github.com/netguard-io/netguard/test/framework"
)

// serverNamespace is the namespace framework.StartServer runs netguard in
// (its POD_NAMESPACE).
const serverNamespace = "netguard"

// localInstall applies the chart rendered with values as release name in
// serverNamespace, except the Deployment: the tests run netguard serve
// themselves, and launchServer points the webhooks at it. caBundle, when
// not nil, goes into every webhook (otherwise netguard writes it). Every
// object, and the CA Secret netguard makes, is deleted when t ends. It
// returns the rendered chart.
func localInstall(t *testing.T, ctx context.Context, name string, values map[string]any, caBundle []byte) rendered {
	t.Helper()
	rel := release{name: name, namespace: serverNamespace}
	r := renderCase(t, rel, values)
	var objs objects
	for _, obj := range r.objs {
		obj = obj.DeepCopy()
		switch obj.GetKind() {
		case "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration":
			if caBundle != nil {
				setBundle(t, obj, caBundle)
			}
		case "Deployment":
			continue // nothing runs it here; the test runs netguard serve itself
		}
		objs = append(objs, obj)
	}
	if _, err := cp.CreateNamespace(ctx, serverNamespace, nil); err != nil && !strings.Contains(err.Error(), "already exists") {
		t.Fatal(err)
	}
	if slices.ContainsFunc(r.container.Args, func(a string) bool { return strings.HasPrefix(a, "--tls-secret") }) {
		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: serverNamespace, Name: r.flag(t, "--tls-secret")}}
		t.Cleanup(func() {
			if err := cp.Client.Delete(context.Background(), secret); err != nil && !apierrors.IsNotFound(err) {
				t.Errorf("deleting the CA Secret: %v", err)
			}
		})
	}
	applyObjects(t, ctx, objs)
	return r
}

// setBundle sets caBundle of every webhook in a webhook configuration.
func setBundle(t *testing.T, obj *unstructured.Unstructured, caBundle []byte) {
	t.Helper()
	webhooks, _, _ := unstructured.NestedSlice(obj.Object, "webhooks")
	for _, w := range webhooks {
		w.(map[string]any)["clientConfig"].(map[string]any)["caBundle"] = b64.StdEncoding.EncodeToString(caBundle)
	}
	if err := unstructured.SetNestedSlice(obj.Object, webhooks, "webhooks"); err != nil {
		t.Fatal(err)
	}
}

// serverArgs are the rendered Deployment's arguments for `netguard serve`
// minus those framework.StartServer sets for a local run.
func serverArgs(r rendered) []string {
	local := []string{"--config", "--port", "--metrics-bind-address", "--health-probe-bind-address", "--graceful-shutdown-timeout", "--shutdown-delay", "--cert-dir"}
	var args []string
	for _, a := range r.container.Args[1:] { // [0] is "serve"
		name, _, _ := strings.Cut(a, "=")
		if !slices.Contains(local, name) {
			args = append(args, a)
		}
	}
	return args
}

// configFile writes the rendered ConfigMap's config.yaml to a file.
func configFile(t *testing.T, r rendered) string {
	t.Helper()
	var cm corev1.ConfigMap
	r.objs.get(t, "ConfigMap", r.fullname, &cm)
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(cm.Data["config.yaml"]), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// serviceAccountKubeconfig returns a kubeconfig that authenticates as the
// chart's ServiceAccount, so that netguard runs with exactly the chart's
// RBAC.
func serviceAccountKubeconfig(t *testing.T, r rendered) string {
	t.Helper()
	sa := r.deployment.Spec.Template.Spec.ServiceAccountName
	ns := r.release.namespace
	user, err := cp.Env.AddUser(envtest.User{
		Name:   "system:serviceaccount:" + ns + ":" + sa,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startServer runs netguard serve for release r and waits until it is
// ready (see launchServer).
func startServer(t *testing.T, ctx context.Context, r rendered, config string, args ...string) *framework.Server {
	t.Helper()
	s := launchServer(t, ctx, r, config, args...)
	framework.Eventually(t, time.Minute, "netguard serve ready", func() (bool, string) {
		if !s.Running() {
			t.Fatalf("netguard serve exited: %v\n%s", s.Wait(), tail(s.Log(), 40))
		}
		return s.Probe("/readyz") == http.StatusOK, "not ready"
	})
	return s
}

// launchServer runs netguard serve for release r without waiting for it to
// be ready, and points r's webhook configurations at it
// (https://localhost:<port>, a name its certificates carry). It is
// stopped when t ends, and its log shown if t failed.
func launchServer(t *testing.T, ctx context.Context, r rendered, config string, args ...string) *framework.Server {
	t.Helper()
	s, err := cp.LaunchServer(netguardBin, config, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("stopping netguard serve: %v", err)
		}
		if t.Failed() {
			t.Logf("netguard serve log:\n%s", tail(withoutHandshakeErrors(s.Log()), 60))
		}
	})
	if err := framework.PointWebhooks(ctx, cp.Client, fmt.Sprintf("https://localhost:%d", s.WebhookPort), nil, r.fullname); err != nil {
		t.Fatalf("pointing the webhooks at netguard: %v", err)
	}
	return s
}

// assertPodMutated creates pods in an opted-in namespace until one comes
// back mutated (the API server picks up a new caBundle within moments) and
// fails when none does within 30s: the API server then cannot call netguard
// and failurePolicy Ignore hides it.
func assertPodMutated(t *testing.T, ctx context.Context, when string) {
	t.Helper()
	ns := "team-" + utilrand.String(5)
	if _, err := cp.CreateNamespace(ctx, ns, map[string]string{"netguard.io/inject": "enabled"}); err != nil {
		t.Fatal(err)
	}
	i := 0
	framework.Eventually(t, 30*time.Second, when+": a pod mutated by netguard", func() (bool, string) {
		i++
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("app-%d", i)},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}},
		}
		if err := cp.Client.Create(ctx, pod); err != nil {
			return false, "creating a pod: " + err.Error()
		}
		_, ok := pod.Annotations[podpolicy.AnnotationStatus]
		return ok, fmt.Sprintf("pod %s not mutated; annotations %v", pod.Name, pod.Annotations)
	})
}

// servedCertificate is the leaf the server presents, verified against
// roots for serverName.
func servedCertificate(addr, serverName string, roots []byte) (*x509.Certificate, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(roots) {
		return nil, fmt.Errorf("no roots")
	}
	d := &net.Dialer{Timeout: 2 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{RootCAs: pool, ServerName: serverName, MinVersion: tls.VersionTLS12})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

func mutatingConfiguration(t *testing.T, ctx context.Context, name string) *admissionregv1.MutatingWebhookConfiguration {
	t.Helper()
	m := &admissionregv1.MutatingWebhookConfiguration{}
	if err := cp.Client.Get(ctx, client.ObjectKey{Name: name}, m); err != nil {
		t.Fatal(err)
	}
	return m
}

// bundleCerts are the certificates of every caBundle in the configuration.
func bundleCerts(t *testing.T, m *admissionregv1.MutatingWebhookConfiguration) [][]*x509.Certificate {
	t.Helper()
	var out [][]*x509.Certificate
	for _, w := range m.Webhooks {
		out = append(out, parsePEM(t, w.ClientConfig.CABundle))
	}
	return out
}

func parsePEM(t *testing.T, data []byte) []*x509.Certificate {
	t.Helper()
	var certs []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return certs
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, c)
	}
}

// TestSelfManagedTLS runs netguard as the chart runs it without
// cert-manager, with exactly the chart's RBAC: it creates its CA Secret,
// writes caBundle, and the API server calls it; after a forced CA rotation
// (the Secret deleted) and after caBundle is wiped, the API server still
// calls it; a second replica shares the CA without a caBundle tug of war.
func TestSelfManagedTLS(t *testing.T) {
	needControlPlane(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	r := localInstall(t, ctx, "netguard", map[string]any{"certManager": map[string]any{"enabled": false}}, nil)
	kubeconfig := serviceAccountKubeconfig(t, r)
	args := append(serverArgs(r), "--kubeconfig", kubeconfig, "--webhook-dns-names=localhost")
	s := startServer(t, ctx, r, configFile(t, r), args...)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(s.WebhookPort))
	secretKey := client.ObjectKey{Namespace: serverNamespace, Name: r.flag(t, "--tls-secret")}

	readCA := func() []byte {
		s := &corev1.Secret{}
		if err := cp.Client.Get(ctx, secretKey, s); err != nil {
			return nil
		}
		return s.Data["ca.crt"]
	}
	ca := readCA()
	if len(ca) == 0 {
		t.Fatalf("netguard was ready without a CA in Secret %s", secretKey)
	}
	for _, name := range []string{r.service.Name + "." + serverNamespace + ".svc", "localhost"} {
		if _, err := servedCertificate(addr, name, ca); err != nil {
			t.Errorf("serving certificate does not verify for %s against the CA in the Secret: %v", name, err)
		}
	}
	wantBundle := func(ca []byte, n int) func() (bool, string) {
		want := parsePEM(t, ca)[0]
		return func() (bool, string) {
			for _, b := range bundleCerts(t, mutatingConfiguration(t, ctx, r.fullname)) {
				if len(b) != n || !b[0].Equal(want) {
					return false, fmt.Sprintf("caBundle holds %d certificates, first %v", len(b), subjects(b))
				}
			}
			return true, ""
		}
	}
	if ok, state := wantBundle(ca, 1)(); !ok {
		t.Fatalf("netguard was ready before writing caBundle: %s", state)
	}
	assertPodMutated(t, ctx, "after install")

	// Forced rotation: delete the CA Secret.
	if err := cp.Client.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: secretKey.Namespace, Name: secretKey.Name}}); err != nil {
		t.Fatal(err)
	}
	var rotated []byte
	framework.Eventually(t, time.Minute, "a new CA in the Secret", func() (bool, string) {
		rotated = readCA()
		return len(rotated) > 0 && !bytes.Equal(rotated, ca), fmt.Sprintf("%d bytes", len(rotated))
	})
	framework.Eventually(t, time.Minute, "a serving certificate from the new CA", func() (bool, string) {
		_, err := servedCertificate(addr, "localhost", rotated)
		return err == nil, fmt.Sprint(err)
	})
	// The previous CA stays in caBundle for the grace period, behind the new one.
	framework.Eventually(t, time.Minute, "caBundle with the new CA first", wantBundle(rotated, 2))
	assertPodMutated(t, ctx, "after the CA rotation")

	// caBundle wiped (a bad upgrade, a hand edit): netguard writes it back.
	setCABundle(t, ctx, r.fullname, nil)
	framework.Eventually(t, time.Minute, "caBundle written back", wantBundle(rotated, 1))
	assertPodMutated(t, ctx, "after caBundle was rewritten")

	// A second replica: the same CA, and no caBundle writes back and forth.
	// The webhooks now point at it.
	second := startServer(t, ctx, r, configFile(t, r), args...)
	if got := readCA(); !bytes.Equal(got, rotated) {
		t.Fatal("the second replica replaced the CA instead of using the Secret")
	}
	if _, err := servedCertificate(net.JoinHostPort("127.0.0.1", strconv.Itoa(second.WebhookPort)), "localhost", rotated); err != nil {
		t.Fatalf("second replica's certificate: %v", err)
	}
	before := mutatingConfiguration(t, ctx, r.fullname).ResourceVersion
	time.Sleep(3 * time.Second)
	if after := mutatingConfiguration(t, ctx, r.fullname).ResourceVersion; after != before {
		t.Errorf("the configuration changed (resourceVersion %s -> %s) with two replicas and nothing to do", before, after)
	}
	assertPodMutated(t, ctx, "with two replicas")
}

// TestServingCertificateReload runs netguard as the chart runs it with
// cert-manager (--cert-dir on the mounted Secret), with exactly the
// chart's RBAC, and rotates the certificate the way the kubelet updates a
// Secret volume (a new timestamped directory swapped in under ..data):
// netguard presents the new certificate without a restart and the API
// server keeps calling it.
func TestServingCertificateReload(t *testing.T) {
	needControlPlane(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ca := newCA(t)
	r := localInstall(t, ctx, "netguard-cm", nil, ca.pem)
	certDir := t.TempDir()
	first := ca.issue(t, "localhost")
	writeSecretVolume(t, certDir, first)

	args := append(serverArgs(r), "--kubeconfig", serviceAccountKubeconfig(t, r), "--cert-dir", certDir)
	s := startServer(t, ctx, r, configFile(t, r), args...)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(s.WebhookPort))
	if got, err := servedCertificate(addr, "localhost", ca.pem); err != nil || got.SerialNumber.Cmp(first.serial) != 0 {
		t.Fatalf("server presents %v (err %v), want the first certificate", got.SerialNumber, err)
	}
	assertPodMutated(t, ctx, "with the first certificate")

	second := ca.issue(t, "localhost")
	writeSecretVolume(t, certDir, second)
	framework.Eventually(t, time.Minute, "the renewed certificate served", func() (bool, string) {
		got, err := servedCertificate(addr, "localhost", ca.pem)
		if err != nil {
			return false, err.Error()
		}
		return got.SerialNumber.Cmp(second.serial) == 0, "serial " + got.SerialNumber.String()
	})
	assertPodMutated(t, ctx, "with the renewed certificate")
}

// testCA is a CA for the cert-manager-mode test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

type leaf struct {
	certPEM, keyPEM []byte
	serial          *big.Int
}

func newCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "netguard-test-ca"},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func (ca *testCA) issue(t *testing.T, dnsNames ...string) leaf {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: dnsNames[0]},
		DNSNames:     dnsNames,
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return leaf{
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		serial:  serial,
	}
}

// writeSecretVolume lays out l in dir as the kubelet lays out a Secret
// volume: the files in a timestamped directory, ..data pointing at it,
// and tls.crt and tls.key pointing through ..data. A later call swaps
// ..data atomically and removes the previous directory.
func writeSecretVolume(t *testing.T, dir string, l leaf) {
	t.Helper()
	previous, _ := os.Readlink(filepath.Join(dir, "..data"))
	ts := fmt.Sprintf("..%s.%d", time.Now().UTC().Format("2006_01_02_15_04_05"), time.Now().UnixNano())
	if err := os.Mkdir(filepath.Join(dir, ts), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"tls.crt": l.certPEM, "tls.key": l.keyPEM} {
		if err := os.WriteFile(filepath.Join(dir, ts, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(ts, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"tls.crt", "tls.key"} {
		link := filepath.Join(dir, name)
		if _, err := os.Lstat(link); os.IsNotExist(err) {
			if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
				t.Fatal(err)
			}
		}
	}
	if previous != "" {
		if err := os.RemoveAll(filepath.Join(dir, previous)); err != nil {
			t.Fatal(err)
		}
	}
}

func subjects(certs []*x509.Certificate) []string {
	var out []string
	for _, c := range certs {
		out = append(out, c.Subject.CommonName+"@"+c.NotBefore.Format(time.RFC3339))
	}
	return out
}

func tail(s string, lines int) string {
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

// withoutHandshakeErrors drops the Go TLS server's one-line handshake
// errors, which would otherwise hide the rest of a failing run's log.
func withoutHandshakeErrors(log string) string {
	var out []string
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, "http: TLS handshake error") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
