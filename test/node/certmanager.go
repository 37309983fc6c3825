package node

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// cert-manager runs on the node as two host processes, as the control
// plane does: cert-manager-controller (Issuers, Certificates and their
// CertificateRequests) and cert-manager-cainjector (caBundle), built by
// hack/cert-manager.sh from the cert-manager module, with the admin
// kubeconfig and their metrics on loopback. Its CRDs are applied first.
// cert-manager's admission webhook does not run: it only validates and
// defaults cert-manager's objects, which the chart writes complete.
const (
	certManagerMetricsPort = 9402
	cainjectorMetricsPort  = 9412
)

// CertificateGVR is cert-manager's Certificate resource.
var CertificateGVR = schema.GroupVersionResource{Group: "cert-manager.io", Version: "v1", Resource: "certificates"}

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// startCertManager applies cert-manager's CRDs from opts.CertManager/crds,
// waits until the API server serves them, and starts the controller and
// the CA injector.
func (c *Cluster) startCertManager(ctx context.Context) error {
	files, err := filepath.Glob(filepath.Join(c.opts.CertManager, "crds", "*.yaml"))
	if err != nil || len(files) == 0 {
		return fmt.Errorf("no cert-manager CRDs in %s/crds (hack/cert-manager.sh makes them): %v", c.opts.CertManager, err)
	}
	var names []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
		for {
			crd := &unstructured.Unstructured{}
			if err := dec.Decode(&crd.Object); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				return fmt.Errorf("%s: %w", f, err)
			}
			if len(crd.Object) == 0 {
				continue
			}
			// Server-side apply, as `kubectl apply --server-side` does.
			if _, err := c.Dynamic.Resource(crdGVR).Apply(ctx, crd.GetName(), crd, metav1.ApplyOptions{FieldManager: "netguard-node", Force: true}); err != nil {
				return fmt.Errorf("applying CRD %s: %w", crd.GetName(), err)
			}
			names = append(names, crd.GetName())
		}
	}
	for _, name := range names {
		if err := waitFor(ctx, 30*time.Second, "CRD "+name+" established", func() error {
			crd, err := c.Dynamic.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if condition(crd, "Established") != "True" {
				return errors.New("not established")
			}
			return nil
		}); err != nil {
			return err
		}
	}
	if err := c.start("cert-manager-controller", filepath.Join(c.opts.CertManager, "cert-manager-controller"),
		"--kubeconfig="+dirs.admin(), fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", certManagerMetricsPort), "-v=2",
	); err != nil {
		return err
	}
	return c.start("cert-manager-cainjector", filepath.Join(c.opts.CertManager, "cert-manager-cainjector"),
		"--kubeconfig="+dirs.admin(), fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", cainjectorMetricsPort), "-v=2",
	)
}

// condition is the status of a condition of an object's
// status.conditions, or "" when it has none of that type.
func condition(obj *unstructured.Unstructured, typ string) string {
	conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if ok && m["type"] == typ {
			s, _ := m["status"].(string)
			return s
		}
	}
	return ""
}

// CertificateReady reports why a Certificate is not Ready=True, or nil
// once it is.
func (c *Cluster) CertificateReady(ctx context.Context, ns, name string) error {
	cert, err := c.Dynamic.Resource(CertificateGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if s := condition(cert, "Ready"); s != "True" {
		conds, _, _ := unstructured.NestedSlice(cert.Object, "status", "conditions")
		return fmt.Errorf("Certificate %s/%s is not Ready: %v", ns, name, conds)
	}
	return nil
}

// injectCAFrom is the annotation by which the chart asks cert-manager's
// cainjector for caBundle.
const injectCAFrom = "cert-manager.io/inject-ca-from"

// waitCertManagerTLS waits, when the chart runs in cert-manager mode (its
// webhook configurations ask cainjector for their caBundle), until the
// Certificate they name is Ready and every webhook's caBundle holds the
// ca.crt of that Certificate's Secret. It holds that CA and, possibly, CAs
// that were there before: cainjector merges (it keeps unexpired
// certificates it finds in caBundle, CAInjectorMerging).
func (c *Cluster) waitCertManagerTLS(ctx context.Context) error {
	m, err := c.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, NetguardRelease, metav1.GetOptions{})
	if err != nil {
		return err
	}
	from := m.Annotations[injectCAFrom]
	if from == "" {
		return nil // self-managed TLS: netguard writes caBundle itself
	}
	ns, name, ok := strings.Cut(from, "/")
	if !ok {
		return fmt.Errorf("%s: %q is not NAMESPACE/NAME", injectCAFrom, from)
	}
	ref := types.NamespacedName{Namespace: ns, Name: name}
	if err := waitFor(ctx, 2*time.Minute, "Certificate "+ref.String()+" Ready", func() error {
		return c.CertificateReady(ctx, ref.Namespace, ref.Name)
	}); err != nil {
		return fmt.Errorf("%w\ncert-manager-controller log:\n%s", err, LogTail("cert-manager-controller", 20))
	}
	err = waitFor(ctx, time.Minute, "caBundle injected from "+ref.String(), func() error {
		return c.CABundleIs(ctx, func(ca []byte) error {
			secret, err := c.certificateSecret(ctx, ref)
			if err != nil {
				return err
			}
			if !bytes.Contains(ca, bytes.TrimSpace(secret)) {
				return fmt.Errorf("(%s) lacks the ca.crt of the Certificate's Secret (%s)", subjects(ca), subjects(secret))
			}
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("%w\ncert-manager-cainjector log:\n%s", err, LogTail("cert-manager-cainjector", 30))
	}
	return nil
}

// subjects lists the subjects of the certificates in a PEM bundle.
func subjects(bundle []byte) string {
	return strings.Join(Subjects(bundle), "; ")
}

// Subjects are the subjects of the certificates in a PEM bundle.
func Subjects(bundle []byte) []string {
	var out []string
	for {
		var block *pem.Block
		block, bundle = pem.Decode(bundle)
		if block == nil {
			return out
		}
		if cert, err := x509.ParseCertificate(block.Bytes); err == nil {
			out = append(out, cert.Subject.String())
		}
	}
}

// certificateSecret is the ca.crt of the Secret a Certificate writes.
func (c *Cluster) certificateSecret(ctx context.Context, ref types.NamespacedName) ([]byte, error) {
	cert, err := c.Dynamic.Resource(CertificateGVR).Namespace(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	name, _, _ := unstructured.NestedString(cert.Object, "spec", "secretName")
	s, err := c.Client.CoreV1().Secrets(ref.Namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("Secret %s/%s not written yet", ref.Namespace, name)
	}
	if err != nil {
		return nil, err
	}
	if len(s.Data["ca.crt"]) == 0 {
		return nil, fmt.Errorf("Secret %s/%s has no ca.crt", ref.Namespace, name)
	}
	return s.Data["ca.crt"], nil
}

// CABundleIs returns nil when check accepts the caBundle of every webhook
// of netguard's Mutating- and ValidatingWebhookConfiguration, else the
// first error, naming the webhook.
func (c *Cluster) CABundleIs(ctx context.Context, check func(ca []byte) error) error {
	bundles := map[string][]byte{}
	m, err := c.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, NetguardRelease, metav1.GetOptions{})
	if err != nil {
		return err
	}
	for _, w := range m.Webhooks {
		bundles["mutating webhook "+w.Name] = w.ClientConfig.CABundle
	}
	v, err := c.Client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, NetguardRelease, metav1.GetOptions{})
	if err != nil {
		return err
	}
	for _, w := range v.Webhooks {
		bundles["validating webhook "+w.Name] = w.ClientConfig.CABundle
	}
	for name, ca := range bundles {
		if len(ca) == 0 {
			return fmt.Errorf("%s: no caBundle", name)
		}
		if err := check(ca); err != nil {
			return fmt.Errorf("%s: caBundle %w", name, err)
		}
	}
	return nil
}
