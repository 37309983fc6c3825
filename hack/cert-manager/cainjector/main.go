//go:build ignore

// Command cert-manager-cainjector runs cert-manager's CA injector for
// netguard's chart: it copies the CA of the Certificate a webhook
// configuration names (annotation cert-manager.io/inject-ca-from) into the
// caBundle of each of its webhooks, for MutatingWebhookConfigurations and
// ValidatingWebhookConfigurations. The real single-node cluster
// (test/node) runs it as a host process.
//
// Why it exists: cert-manager's commands are Go modules of their own
// (cmd/controller, cmd/cainjector) that the Go module proxy does not serve,
// while the module github.com/cert-manager/cert-manager, which holds the
// injector (pkg/controller/cainjector), is served. hack/cert-manager.sh
// copies that module, puts this file in the copy and builds it there; the
// build constraint keeps it out of netguard's own builds.
//
// It follows upstream's cmd/cainjector/app/controller.go (Run, v1.21) and
// cmd/cainjector/main.go with upstream's defaults, less leader election,
// pprof, the metrics server's TLS, the config file, and the injection into
// APIServices and CustomResourceDefinitions (netguard has neither).
//
//	cert-manager-cainjector --kubeconfig FILE [--metrics-bind-address 127.0.0.1:9412] [-v 2]
package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiext "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	kscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/cert-manager/cert-manager/internal/cmd/util"
	cmscheme "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned/scheme"
	"github.com/cert-manager/cert-manager/pkg/controller/cainjector"
	logf "github.com/cert-manager/cert-manager/pkg/logs"
	cmutil "github.com/cert-manager/cert-manager/pkg/util"
)

func main() {
	// --kubeconfig is controller-runtime's flag (ctrl.GetConfig), as upstream.
	metricsAddr := flag.String("metrics-bind-address", "127.0.0.1:9412", `address of the Prometheus metrics server ("0" for none)`)
	klog.InitFlags(nil) // -v: cert-manager logs what it does at 2
	flag.Parse()

	ctx, exit := util.SetupExitHandler(context.Background(), util.GracefulShutdown)
	defer exit() // may call os.Exit: deferred first, runs last

	logf.InitLogs()
	defer logf.FlushLogs()
	ctrl.SetLogger(logf.Log)
	ctx = logf.NewContext(ctx, logf.Log, "cainjector")

	if err := run(ctx, *metricsAddr); err != nil {
		logf.Log.Error(err, "error running the CA injector")
		util.SetExitCode(err)
	}
}

func run(ctx context.Context, metricsAddr string) error {
	log := logf.FromContext(ctx)
	v := cmutil.VersionInfo()
	log.Info("starting cert-manager ca-injector", "version", v.GitVersion, "go_version", v.GoVersion)

	cfg, err := ctrl.GetConfig()
	if err != nil {
		return err
	}
	restConfig := cmutil.RestConfigWithUserAgent(cfg, "cainjector")

	scheme := runtime.NewScheme()
	utilruntime.Must(kscheme.AddToScheme(scheme))
	utilruntime.Must(cmscheme.AddToScheme(scheme))
	utilruntime.Must(apiext.AddToScheme(scheme))

	mgr, err := ctrl.NewManager(restConfig, ctrl.Options{
		Scheme: scheme,
		Cache:  cache.Options{ReaderFailOnMissingInformer: true},
		// As upstream: Secrets are read from the API server when needed,
		// never cached whole (builder.OnlyMetadata in the injector's watches).
		Client: client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}}},
		// One CA injector on a single node: no leader election.
		LeaderElection:         false,
		Metrics:                metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress: "0",
	})
	if err != nil {
		return fmt.Errorf("error creating manager: %v", err)
	}

	// As upstream with the Certificates data source on: wait (up to 5
	// minutes) for the Certificate CRD.
	directClient, err := client.New(mgr.GetConfig(), client.Options{Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper()})
	if err != nil {
		return fmt.Errorf("failed to create client: %w", err)
	}
	err = wait.PollUntilContextTimeout(ctx, time.Second, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		err := directClient.Get(ctx, types.NamespacedName{Name: "certificates.cert-manager.io"}, &apiext.CustomResourceDefinition{})
		if apierrors.IsNotFound(err) {
			log.Info("certificates.cert-manager.io CRD not found, retrying")
			return false, nil
		}
		return err == nil, err
	})
	if err != nil {
		return fmt.Errorf("waiting for the certificates.cert-manager.io CRD: %w", err)
	}

	if err := cainjector.RegisterAllInjectors(ctx, mgr, cainjector.SetupOptions{
		EnableCertificatesDataSource: true,
		EnabledReconcilersFor: map[string]bool{
			cainjector.MutatingWebhookConfigurationName:   true,
			cainjector.ValidatingWebhookConfigurationName: true,
			cainjector.APIServiceName:                     false,
			cainjector.CustomResourceDefinitionName:       false,
		},
	}); err != nil {
		return fmt.Errorf("failed to register controllers: %w", err)
	}
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("error running manager: %v", err)
	}
	return nil
}
