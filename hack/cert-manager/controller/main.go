//go:build ignore

// Command cert-manager-controller runs cert-manager's own controllers for
// what netguard's chart asks of cert-manager: Issuers (selfSigned and CA),
// Certificates, and CertificateRequests signed by those two issuers. The
// real single-node cluster (test/node) runs it as a host process.
//
// Why it exists: cert-manager's commands are Go modules of their own
// (cmd/controller, cmd/cainjector) that the Go module proxy does not serve,
// while the module github.com/cert-manager/cert-manager, which holds every
// controller, is served. hack/cert-manager.sh copies that module, puts this
// file in the copy (so that its internal/ packages may be imported) and
// builds it there; the build constraint keeps it out of netguard's own
// builds.
//
// It follows upstream's cmd/controller/app/controller.go (Run and
// buildControllerContextFactory, v1.21) with upstream's default settings
// (internal/apis/config/controller/v1alpha1/defaults.go), less what a
// single node with these two issuers does not use: leader election, ACME
// (HTTP-01 and DNS-01 solvers, its DNS resolver), the ingress and Gateway
// shims, ClusterIssuers, the healthz server (leader election's), pprof and
// the config file.
//
//	cert-manager-controller --kubeconfig FILE [--metrics-bind-address 127.0.0.1:9402] [-v 2]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/klog/v2"

	"github.com/cert-manager/cert-manager/internal/cmd/util"
	"github.com/cert-manager/cert-manager/pkg/controller"
	logf "github.com/cert-manager/cert-manager/pkg/logs"
	"github.com/cert-manager/cert-manager/pkg/server"
	cmutil "github.com/cert-manager/cert-manager/pkg/util"

	// The controllers, registered by their packages (controller.Known).
	crapprover "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	crca "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	crselfsigned "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/selfsigned"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	"github.com/cert-manager/cert-manager/pkg/controller/issuers"

	// The issuer kinds the issuers controller sets up (issuer.RegisterIssuer).
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"
)

// enabled are the controllers this command runs: of upstream's
// DefaultEnabledControllers, those that selfSigned and CA Issuers and
// their Certificates need.
var enabled = []string{
	issuers.ControllerName,
	crapprover.ControllerName, // approves requests for cert-manager.io issuers
	crca.CRControllerName,
	crselfsigned.CRControllerName,
	trigger.ControllerName,
	issuing.ControllerName,
	keymanager.ControllerName,
	requestmanager.ControllerName,
	readiness.ControllerName,
	revisionmanager.ControllerName,
}

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig file (in-cluster configuration when empty)")
	metricsAddr := flag.String("metrics-bind-address", "127.0.0.1:9402", `address of the Prometheus metrics server ("0" for none)`)
	workers := flag.Int("concurrent-workers", 5, "workers per controller")
	klog.InitFlags(nil) // -v: cert-manager logs what it does at 2
	flag.Parse()

	ctx, exit := util.SetupExitHandler(context.Background(), util.GracefulShutdown)
	defer exit() // may call os.Exit: deferred first, runs last

	logf.InitLogs()
	defer logf.FlushLogs()
	ctx = logf.NewContext(ctx, logf.Log, "controller")

	if err := run(ctx, *kubeconfig, *metricsAddr, *workers); err != nil {
		logf.Log.Error(err, "error running the controller")
		util.SetExitCode(err)
	}
}

func run(rootCtx context.Context, kubeconfig, metricsAddr string, workers int) error {
	rootCtx, cancel := context.WithCancel(rootCtx)
	defer cancel()
	log := logf.FromContext(rootCtx)
	g, rootCtx := errgroup.WithContext(rootCtx)

	v := cmutil.VersionInfo()
	log.Info("starting cert-manager controller", "version", v.GitVersion, "go_version", v.GoVersion, "controllers", enabled)

	ctxFactory, err := controller.NewContextFactory(rootCtx, controller.ContextOptions{
		Kubeconfig:         kubeconfig,
		KubernetesAPIQPS:   20,
		KubernetesAPIBurst: 50,
		IssuerOptions: controller.IssuerOptions{
			ClusterResourceNamespace:        "kube-system",
			ClusterIssuerAmbientCredentials: true,
		},
		CertificateOptions: controller.CertificateOptions{
			CertificateRequestMinimumBackoffDuration: time.Hour,
			CertificateRequestMaximumBackoffDuration: 32 * time.Hour,
		},
	})
	if err != nil {
		return err
	}
	ctx, err := ctxFactory.Build()
	if err != nil {
		return err
	}

	if metricsAddr != "0" {
		ln, err := server.Listen(rootCtx, "tcp", metricsAddr)
		if err != nil {
			return fmt.Errorf("failed to listen on prometheus address %s: %v", metricsAddr, err)
		}
		ctx.Metrics.SetupCertificateCollector(ctx.SharedInformerFactory.Certmanager().V1().Certificates().Lister())
		ctx.Metrics.SetupIssuerCollector(ctx.SharedInformerFactory.Certmanager().V1().Issuers().Lister())
		metricsServer := ctx.Metrics.NewServer(ln)
		g.Go(func() error {
			<-rootCtx.Done()
			shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return metricsServer.Shutdown(shutdownCtx)
		})
		g.Go(func() error {
			if err := metricsServer.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}

	known := controller.Known()
	for _, n := range enabled {
		fn, ok := known[n]
		if !ok {
			return fmt.Errorf("controller %s is not registered", n)
		}
		iface, err := fn(ctxFactory)
		if err != nil {
			cancel()
			return errors.Join(fmt.Errorf("error starting controller %s: %v", n, err), g.Wait())
		}
		g.Go(func() error {
			log.V(logf.InfoLevel).Info("starting controller", "controller", n)
			return iface.Run(workers, rootCtx)
		})
	}

	ctx.SharedInformerFactory.Start(rootCtx.Done())
	ctx.KubeSharedInformerFactory.Start(rootCtx.Done())

	if err := g.Wait(); err != nil {
		return fmt.Errorf("error running controllers: %v", err)
	}
	log.V(logf.InfoLevel).Info("control loops exited")
	ctx.KubeSharedInformerFactory.Shutdown()
	ctx.SharedInformerFactory.Shutdown()
	return nil
}
