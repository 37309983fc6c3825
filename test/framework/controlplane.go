// Package framework runs netguard against a real kube-apiserver and etcd
// (controller-runtime envtest) for the integration tests and the demo.
package framework

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	admissionregv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/netguard-io/netguard/webhook"
	"github.com/netguard-io/netguard/webhook/serviceguard"
)

// apiServerStopTimeout bounds a graceful kube-apiserver stop.
const apiServerStopTimeout = 5 * time.Second

// AssetsHint tells how to get the control plane binaries.
const AssetsHint = "set KUBEBUILDER_ASSETS=$(hack/envtest-assets.sh), or run 'make test'"

// ControlPlane is a running kube-apiserver and etcd, plus the serving
// certificate and address the webhook server uses.
type ControlPlane struct {
	Env    *envtest.Environment
	Config *rest.Config
	Client client.Client
	// Kubeconfig is a file for an admin user, for `netguard serve --kubeconfig`.
	Kubeconfig string
	// WebhookHost and WebhookPort are where the API server calls netguard.
	WebhookHost string
	WebhookPort int
	// CertDir holds tls.crt and tls.key for the webhook server; CAData
	// signed them and goes into the webhook configurations' caBundle.
	CertDir string
	CAData  []byte

	apiDir string
}

// StartControlPlane starts kube-apiserver and etcd from KUBEBUILDER_ASSETS.
func StartControlPlane() (*ControlPlane, error) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		return nil, fmt.Errorf("KUBEBUILDER_ASSETS is not set: %s", AssetsHint)
	}
	env := &envtest.Environment{
		Scheme:                   webhook.Scheme(),
		ErrorIfCRDPathMissing:    true,
		WebhookInstallOptions:    envtest.WebhookInstallOptions{LocalServingHost: "127.0.0.1"},
		ControlPlaneStopTimeout:  0,
		ControlPlaneStartTimeout: 0,
	}
	// A fixed directory for the API server's certificates, so that
	// StartAPIServer after StopAPIServer brings it back with the same ones and every client
	// (netguard's included) reconnects as before.
	apiDir, err := os.MkdirTemp("", "netguard-apiserver-")
	if err != nil {
		return nil, err
	}
	env.ControlPlane.GetAPIServer().CertDir = apiDir
	// kube-apiserver waits for open watches to end before it exits on
	// SIGTERM; past this it is killed (see StopAPIServer).
	env.ControlPlane.GetAPIServer().StopTimeout = apiServerStopTimeout
	// Certificates and a free port for the webhook server, without
	// installing anything: the webhook configurations are created here, as
	// the chart does.
	if err := env.WebhookInstallOptions.PrepWithoutInstalling(); err != nil {
		os.RemoveAll(apiDir)
		return nil, fmt.Errorf("preparing webhook certificates: %w", err)
	}
	cfg, err := env.Start()
	if err != nil {
		os.RemoveAll(apiDir)
		return nil, fmt.Errorf("starting kube-apiserver and etcd (%s): %w", AssetsHint, err)
	}
	cp := &ControlPlane{
		apiDir:      apiDir,
		Env:         env,
		Config:      cfg,
		WebhookHost: env.WebhookInstallOptions.LocalServingHost,
		WebhookPort: env.WebhookInstallOptions.LocalServingPort,
		CertDir:     env.WebhookInstallOptions.LocalServingCertDir,
		CAData:      env.WebhookInstallOptions.LocalServingCAData,
	}
	if cp.Client, err = client.New(cfg, client.Options{Scheme: env.Scheme}); err != nil {
		_ = env.Stop()
		return nil, err
	}
	user, err := env.AddUser(envtest.User{Name: "netguard-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		_ = env.Stop()
		return nil, fmt.Errorf("adding user: %w", err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		_ = env.Stop()
		return nil, err
	}
	cp.Kubeconfig = filepath.Join(cp.CertDir, "kubeconfig")
	if err := os.WriteFile(cp.Kubeconfig, kc, 0o600); err != nil {
		_ = env.Stop()
		return nil, err
	}
	return cp, nil
}

// Stop stops the control plane and removes its files.
func (cp *ControlPlane) Stop() error {
	err := cp.Env.Stop()
	os.RemoveAll(cp.apiDir)
	return err
}

// StopAPIServer stops kube-apiserver; etcd, and what it stores, stay.
// With clients watching (netguard's informers), it does not exit on
// SIGTERM until those watches end, so it is killed after
// apiServerStopTimeout, as a crashed control plane node would be.
func (cp *ControlPlane) StopAPIServer() error {
	s := cp.Env.ControlPlane.GetAPIServer()
	err := s.Stop()
	if err != nil && !strings.Contains(err.Error(), "timeout waiting for process") {
		return err
	}
	// Wait until the killed process has let go of its port.
	addr := net.JoinHostPort(s.SecureServing.Address, s.SecureServing.Port)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return nil
		}
		c.Close()
	}
	return fmt.Errorf("kube-apiserver still listens on %s after it was stopped", addr)
}

// StartAPIServer starts kube-apiserver again after StopAPIServer, on the
// same address with the same certificates and users, and waits until it
// serves.
func (cp *ControlPlane) StartAPIServer() error {
	return cp.Env.ControlPlane.GetAPIServer().Start()
}

// WebhookURL is the URL the API server calls for path.
func (cp *ControlPlane) WebhookURL(path string) string {
	return fmt.Sprintf("https://%s:%d%s", cp.WebhookHost, cp.WebhookPort, path)
}

// InstallPodWebhook creates (or replaces) the MutatingWebhookConfiguration
// for pods, configured the way the chart configures it, pointing at the
// local webhook server.
func (cp *ControlPlane) InstallPodWebhook(ctx context.Context, mode NamespaceMode) error {
	cfg := PodWebhookConfiguration(cp.WebhookURL(webhook.MutatePodPath), cp.CAData, mode)
	return createOrReplace(ctx, cp.Client, cfg)
}

// ClusterDNSIP is the ClusterIP of the kube-dns Service CreateClusterDNS
// makes; it lies in envtest's service range 10.0.0.0/24.
const ClusterDNSIP = "10.0.0.10"

// CreateClusterDNS creates what every cluster has before netguard:
// namespace kube-system and in it the kube-dns Service, from which netguard
// learns the cluster DNS IP. Either may exist already.
func (cp *ControlPlane) CreateClusterDNS(ctx context.Context) error {
	if _, err := cp.CreateNamespace(ctx, "kube-system", nil); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	dns := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "kube-dns"},
		Spec: corev1.ServiceSpec{
			ClusterIP: ClusterDNSIP,
			Selector:  map[string]string{"k8s-app": "kube-dns"},
			Ports:     []corev1.ServicePort{{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}},
		},
	}
	if err := cp.Client.Create(ctx, dns); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating kube-dns Service: %w", err)
	}
	return nil
}

// CreateNamespace creates a namespace with labels.
func (cp *ControlPlane) CreateNamespace(ctx context.Context, name string, labels map[string]string) (*corev1.Namespace, error) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	return ns, cp.Client.Create(ctx, ns)
}

func createOrReplace(ctx context.Context, c client.Client, obj client.Object) error {
	err := c.Create(ctx, obj)
	if apierrors.IsAlreadyExists(err) {
		existing := obj.DeepCopyObject().(client.Object)
		if err := c.Get(ctx, client.ObjectKeyFromObject(obj), existing); err != nil {
			return err
		}
		obj.SetResourceVersion(existing.GetResourceVersion())
		return c.Update(ctx, obj)
	}
	return err
}

// InstallServiceWebhook creates (or replaces) the ValidatingWebhookConfiguration
// for Services, pointing at the local webhook server.
func (cp *ControlPlane) InstallServiceWebhook(ctx context.Context, failure admissionregv1.FailurePolicyType) error {
	cfg := ServiceWebhookConfiguration(cp.WebhookURL(serviceguard.ServicePath), cp.CAData, failure)
	return createOrReplace(ctx, cp.Client, cfg)
}
