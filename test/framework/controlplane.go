// Package framework runs netguard against a real kube-apiserver and etcd
// (controller-runtime envtest) for the integration tests and the demo.
package framework

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	admissionregv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/netguard-io/netguard/serve"
	"github.com/netguard-io/netguard/test/ports"
	"github.com/netguard-io/netguard/webhook"
	"github.com/netguard-io/netguard/webhook/services"
)

// apiServerStopTimeout bounds a graceful kube-apiserver stop.
const apiServerStopTimeout = 5 * time.Second

// AssetsHint tells how to get the control plane binaries.
const AssetsHint = "set KUBEBUILDER_ASSETS=$(hack/envtest-assets.sh), or run 'make test'"

// ControlPlane is a running kube-apiserver and etcd, plus the serving
// certificate the webhook server uses.
type ControlPlane struct {
	Env    *envtest.Environment
	Config *rest.Config
	Client client.Client
	// Kubeconfig is a file for an admin user, for `netguard serve --kubeconfig`.
	Kubeconfig string
	// CertDir holds tls.crt and tls.key for the webhook server (for
	// 127.0.0.1 and localhost); CAData signed them and goes into the
	// webhook configurations' caBundle.
	CertDir string
	CAData  []byte

	apiDir       string
	releasePorts func()
	// installed are the kinds of netguard's webhook configurations the
	// framework created; StartServer points them at each new server.
	installed map[string]bool
}

// ControlPlaneOptions change how StartControlPlaneWith starts the control
// plane.
type ControlPlaneOptions struct {
	// EtcdQuotaBytes raises etcd's storage quota (--quota-backend-bytes)
	// for tests that store many objects; 0 keeps etcd's default (2 GiB).
	EtcdQuotaBytes int64
}

// StartControlPlane starts kube-apiserver and etcd from KUBEBUILDER_ASSETS,
// on ports no other process takes (see package ports).
func StartControlPlane() (cp *ControlPlane, err error) {
	return StartControlPlaneWith(ControlPlaneOptions{})
}

// StartControlPlaneWith is StartControlPlane with options.
func StartControlPlaneWith(opts ControlPlaneOptions) (cp *ControlPlane, err error) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		return nil, fmt.Errorf("KUBEBUILDER_ASSETS is not set: %s", AssetsHint)
	}
	env := &envtest.Environment{
		Scheme:                   serve.Scheme(),
		ErrorIfCRDPathMissing:    true,
		WebhookInstallOptions:    envtest.WebhookInstallOptions{LocalServingHost: "127.0.0.1"},
		ControlPlaneStopTimeout:  0,
		ControlPlaneStartTimeout: 0,
	}
	api := env.ControlPlane.GetAPIServer()
	// A fixed directory for the API server's certificates, so that
	// StartAPIServer after StopAPIServer brings it back with the same ones and every client
	// (netguard's included) reconnects as before.
	apiDir, err := os.MkdirTemp("", "netguard-apiserver-")
	if err != nil {
		return nil, err
	}
	api.CertDir = apiDir
	// kube-apiserver waits for open watches to end before it exits on
	// SIGTERM; past this it is killed (see StopAPIServer).
	api.StopTimeout = apiServerStopTimeout
	cp = &ControlPlane{apiDir: apiDir, Env: env, installed: map[string]bool{}}
	defer func() {
		if err != nil {
			_ = cp.Stop()
		}
	}()
	// Certificates for the webhook server, without installing anything:
	// the webhook configurations are created once netguard serves and has
	// told its port. (A port other than 0 keeps envtest from picking one.)
	env.WebhookInstallOptions.LocalServingPort = -1
	if err := env.WebhookInstallOptions.PrepWithoutInstalling(); err != nil {
		return nil, fmt.Errorf("preparing webhook certificates: %w", err)
	}
	cp.CertDir = env.WebhookInstallOptions.LocalServingCertDir
	cp.CAData = env.WebhookInstallOptions.LocalServingCAData
	configureEtcd := func(e *envtest.Etcd) {
		if opts.EtcdQuotaBytes > 0 {
			e.Configure().Set("quota-backend-bytes", strconv.FormatInt(opts.EtcdQuotaBytes, 10))
		}
	}
	if cp.Config, cp.releasePorts, err = ports.StartEnvtest(env, configureEtcd); err != nil {
		return nil, fmt.Errorf("starting kube-apiserver and etcd (%s): %w", AssetsHint, err)
	}
	if cp.Client, err = client.New(cp.Config, client.Options{Scheme: env.Scheme}); err != nil {
		return nil, err
	}
	user, err := env.AddUser(envtest.User{Name: "netguard-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, fmt.Errorf("adding user: %w", err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return nil, err
	}
	cp.Kubeconfig = filepath.Join(cp.CertDir, "kubeconfig")
	if err := os.WriteFile(cp.Kubeconfig, kc, 0o600); err != nil {
		return nil, err
	}
	return cp, nil
}

// Stop stops the control plane and removes its files.
func (cp *ControlPlane) Stop() error {
	err := cp.Env.Stop()
	os.RemoveAll(cp.apiDir)
	os.RemoveAll(cp.CertDir)
	if cp.releasePorts != nil {
		cp.releasePorts()
	}
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

// InstallPodWebhook creates (or replaces) the MutatingWebhookConfiguration
// for pods, configured the way the chart configures it, pointing at s, and,
// unless s has exited, waits until the API server calls s through it. Every server StartServer
// starts later is given it too.
func (cp *ControlPlane) InstallPodWebhook(ctx context.Context, s *Server, mode NamespaceMode) error {
	cfg := PodWebhookConfiguration(s.WebhookURL(webhook.MutatePodPath), cp.CAData, mode)
	if err := createOrReplace(ctx, cp.Client, cfg); err != nil {
		return err
	}
	cp.installed[KindMutating] = true
	if !s.Running() {
		return nil // a test of netguard being down
	}
	return cp.WaitCalled(ctx, s, KindMutating)
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
// for Services in the namespaces of mode, pointing at s, and, unless s has
// exited, waits until the API server calls s through it. Every server
// StartServer starts later is given it too.
func (cp *ControlPlane) InstallServiceWebhook(ctx context.Context, s *Server, failure admissionregv1.FailurePolicyType, mode NamespaceMode) error {
	cfg := ServiceWebhookConfiguration(s.WebhookURL(services.ServicePath), cp.CAData, failure, mode)
	if err := createOrReplace(ctx, cp.Client, cfg); err != nil {
		return err
	}
	cp.installed[KindValidating] = true
	if !s.Running() {
		return nil // a test of netguard being down
	}
	return cp.WaitCalled(ctx, s, KindValidating)
}
