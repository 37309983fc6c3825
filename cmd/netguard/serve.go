package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/netguard-io/netguard/config"
	"github.com/netguard-io/netguard/internal/version"
	"github.com/netguard-io/netguard/serve"
	"github.com/netguard-io/netguard/serving/certs"
)

// serveOptions are the flags of `netguard serve`.
type serveOptions struct {
	*rootOptions
	server     serve.Options
	kubeconfig string
	zap        zap.Options
	// selfManagedTLS is the CA and serving certificate netguard keeps
	// itself when cert-manager is not installed.
	selfManagedTLS selfManagedTLSOptions
}

// runServeFunc runs the server; tests pass their own to check flag and file
// merging without starting one.
type runServeFunc func(ctx context.Context, opts *serveOptions, cfg *config.Config) error

func newServeCommand(root *rootOptions, run runServeFunc) *cobra.Command {
	opts := &serveOptions{rootOptions: root}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the admission webhook server",
		Long: `Serve the admission webhooks:
  /mutate-v1-pod        pod DNS hardening and the DNS sidecar (Pod CREATE)
  /validate-v1-service  the Service selector guard (Service CREATE, UPDATE)

TLS certificates are read from --cert-dir (tls.crt, tls.key) and reloaded
when they change (cert-manager renews them). Without cert-manager,
--self-managed-tls keeps a CA in a Secret, issues and renews the serving
certificate itself, and writes the caBundle of netguard's own webhook
configurations. Metrics are served on --metrics-bind-address, /healthz
and /readyz on --health-probe-bind-address. All three are opened before
anything else starts; with port 0 the kernel picks a free port, and the
"Starting netguard" log line gives the bound addresses.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := opts.loadConfig()
			if err != nil {
				return err
			}
			return run(cmd.Context(), opts, cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.server.CertDir, "cert-dir", "", "directory with tls.crt and tls.key (default <tmp>/k8s-webhook-server/serving-certs)")
	f.IntVar(&opts.server.Port, "port", 9443, "port the webhook server listens on; 0 picks a free port")
	f.StringVar(&opts.server.MetricsBindAddress, "metrics-bind-address", ":8080", `address of the metrics endpoint; "0" disables it, port 0 picks a free port`)
	f.StringVar(&opts.server.HealthProbeBindAddress, "health-probe-bind-address", ":8081", `address of the /healthz and /readyz endpoints; "0" disables them, port 0 picks a free port`)
	f.StringVar(&opts.server.PprofBindAddress, "pprof-bind-address", "0", `address of Go's profiler (/debug/pprof/) for memory and CPU profiles; "0" disables it; it has no authentication, so bind it to localhost`)
	f.DurationVar(&opts.server.GracefulShutdownTimeout, "graceful-shutdown-timeout", 30*time.Second, "how long netguard may take to stop after SIGTERM: the shutdown delay, then in-flight requests")
	f.DurationVar(&opts.server.ShutdownDelay, "shutdown-delay", 5*time.Second, "after SIGTERM, how long the webhook server keeps serving, closing each connection after its next response, before it closes its socket: the API server then never writes a review to a connection being closed (a lost review is admitted unchecked under failurePolicy Ignore)")
	f.StringVar(&opts.kubeconfig, "kubeconfig", "", "kubeconfig file; in-cluster configuration when empty")
	f.BoolVar(&opts.server.LeaderElection, "leader-elect", true, "elect one replica, on a Lease in netguard's namespace, to record Events (every replica answers admission reviews)")
	f.StringVar(&opts.server.LeaderElectionID, "leader-elect-id", "netguard", "name of the Lease the replicas elect their leader on")
	f.DurationVar(&opts.server.LeaseDuration, "leader-elect-lease-duration", 15*time.Second, "how long a leader's Lease holds without renewal: the longest a replica waits to take over")
	f.DurationVar(&opts.server.RenewDeadline, "leader-elect-renew-deadline", 10*time.Second, "how long the leader keeps trying to renew its Lease before it steps down")
	f.DurationVar(&opts.server.RetryPeriod, "leader-elect-retry-period", 2*time.Second, "how often replicas try to take or renew the Lease")
	addSelfManagedTLSFlags(f, &opts.selfManagedTLS)
	bindZapFlags(f, &opts.zap)
	return cmd
}

// bindZapFlags adds controller-runtime's logging flags (--zap-log-level,
// --zap-devel, ...) to a command.
func bindZapFlags(f *pflag.FlagSet, o *zap.Options) {
	gfs := flag.NewFlagSet("zap", flag.ContinueOnError)
	o.BindFlags(gfs)
	f.AddGoFlagSet(gfs)
}

func runServe(ctx context.Context, opts *serveOptions, cfg *config.Config) error {
	logger := zap.New(zap.UseFlagOptions(&opts.zap))
	ctrl.SetLogger(logger)
	// client-go (informers, leader election, TLS reloads) logs through klog:
	// send it to the same structured log, so that losing the API server is
	// visible there.
	klog.SetLogger(logger)
	log := ctrl.Log.WithName("serve")
	if err := applyMemoryLimit(log); err != nil {
		return err
	}
	restCfg, err := restConfig(opts.kubeconfig)
	if err != nil {
		return err
	}
	opts.server.Version = version.Get()
	mgr, view, err := serve.NewManager(restCfg, opts.server, cfg)
	if err != nil {
		return err
	}
	if opts.selfManagedTLS.enabled {
		err = opts.selfManagedTLS.setup(mgr, cfg)
	} else {
		err = certs.WatchCertDir(mgr)
	}
	if err != nil {
		return err
	}
	if err := serve.SetupReports(mgr, view, cfg, opts.server.Version); err != nil {
		return err
	}
	// The bound addresses, also when a port was 0: scripts and tests that
	// start netguard read them from this line.
	log.Info("Starting netguard", append([]any{"version", opts.server.Version, "namespaceMode", cfg.Namespaces.Mode}, mgr.Listeners().Bound()...)...)
	return mgr.Start(ctx)
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("no --kubeconfig and not running in a cluster: %w", err)
		}
		return cfg, nil
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("reading --kubeconfig %s: %w", kubeconfig, err)
	}
	return cfg, nil
}
