package main

import (
	"context"
	"flag"
	"fmt"
	"os/signal"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/netguard-io/netguard/dnsproxy"
)

// dnsProxyRunFunc runs the forwarder with a checked configuration. The
// command takes it as a parameter so tests can check flag parsing without
// binding sockets.
type dnsProxyRunFunc func(ctx context.Context, cfg dnsproxy.Config, log logr.Logger) error

// newDNSProxyCommand returns `netguard dns-proxy`.
func newDNSProxyCommand() *cobra.Command {
	return dnsProxyCommand(runDNSProxy)
}

// dnsProxyOptions holds the flags of `netguard dns-proxy`.
type dnsProxyOptions struct {
	listen      string
	upstream    string
	resolvConf  string
	timeout     time.Duration
	deadline    time.Duration
	hedgeMin    time.Duration
	hedgeMax    time.Duration
	parallel    int
	hedgeBudget float64
	maxInFlight int
	warmAge     time.Duration
	cacheSize   int
	listeners   int
	metricsAddr string
	zap         zap.Options
}

func dnsProxyCommand(run dnsProxyRunFunc) *cobra.Command {
	opts := dnsProxyOptions{}
	cmd := &cobra.Command{
		Use:   "dns-proxy",
		Short: "Run the DNS forwarder sidecar (never pinned to a DNS server that stopped answering)",
		Long: `Run the DNS forwarder that netguard injects next to nginx.

It listens on a loopback address and forwards each query to the upstream
DNS servers, never twice from a source port that got no answer: conntrack
makes a new NAT decision for each new port, and a client that sends all
its queries from one socket (nginx's resolver) is no longer pinned to a
DNS server pod that disappeared. Point nginx at it with

    resolver 127.0.0.1:8053 valid=10s ipv6=off;

A query's first attempt leaves from a port a backend answered within
--warm-port-age (so it reaches a backend that answers), or from a new one.
While a query has no answer, another attempt leaves from a new port every
hedge delay (the upstream's 99th percentile latency, between
--hedge-delay-min and --hedge-delay-max), the earlier ones still waiting:
with one silent backend in two behind a Service, a lookup fails only if
every attempt reaches it. A SERVFAIL or REFUSED ends the attempt, not the
query. Extra attempts are paid from a budget that answers refill
(--hedge-budget per answer, plus 10 per second), so a DNS that answers
nothing gets one attempt per query and few more, and from each query's
share of 3 attempts, so a DNS that drops most packets gets at most 3 per
query.

Truncated UDP answers are retried over TCP; EDNS0 is passed through; the
number of queries in flight is bounded (over the bound: SERVFAIL at once).
Prometheus metrics, /healthz and /readyz are served on
--metrics-bind-address. SIGTERM or SIGINT stops it after in-flight queries
finish.`,
		Example: `  # Forward to the nameservers of /etc/resolv.conf (the default)
  netguard dns-proxy

  # Forward to the cluster DNS Service, listening where nginx expects it
  netguard dns-proxy --listen 127.0.0.1:8053 --upstream 10.96.0.10`,
		Args:         cobra.NoArgs,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := opts.config()
			if err != nil {
				return err
			}
			return run(cmd.Context(), cfg, zap.New(zap.UseFlagOptions(&opts.zap)))
		},
	}

	fs := cmd.Flags()
	fs.StringVar(&opts.listen, "listen", dnsproxy.DefaultListen,
		"IP:port to serve DNS on, over UDP and TCP.")
	fs.StringVar(&opts.upstream, "upstream", dnsproxy.UpstreamsFromResolvConf,
		`Upstream DNS servers: IP, IP:PORT or [IPv6]:PORT, comma-separated (port 53 when left out), or "resolv.conf" to use the nameservers of --resolv-conf.`)
	fs.StringVar(&opts.resolvConf, "resolv-conf", dnsproxy.DefaultResolvConf,
		`resolv.conf file read when --upstream is "resolv.conf".`)
	fs.DurationVar(&opts.timeout, "timeout", dnsproxy.DefaultTimeout,
		"How long one upstream attempt waits for its answer. Later attempts do not wait for it to time out (see --hedge-delay-min).")
	fs.DurationVar(&opts.deadline, "deadline", dnsproxy.DefaultDeadline,
		"Time allowed for all attempts of one query; then the client gets SERVFAIL.")
	fs.DurationVar(&opts.hedgeMin, "hedge-delay-min", dnsproxy.DefaultHedgeDelayMin,
		"Least time a query waits for an answer before it sends another attempt, to the next upstream from a new source port, keeping the earlier ones open. The delay is the upstream's 99th percentile latency, within these bounds.")
	fs.DurationVar(&opts.hedgeMax, "hedge-delay-max", dnsproxy.DefaultHedgeDelayMax,
		"Most time a query waits for an answer before it sends another attempt; also the delay until the first answer gives a latency to go by.")
	fs.IntVar(&opts.parallel, "max-parallel-attempts", dnsproxy.DefaultMaxParallelAttempts,
		"Most attempts of one query waiting for an answer at once; a query makes at most this many times ⌈deadline/timeout⌉ attempts. 1 turns hedging off.")
	fs.Float64Var(&opts.hedgeBudget, "hedge-budget", dnsproxy.DefaultHedgeBudget,
		"Extra attempts (every attempt after a query's first) earned by each answered query, on top of 10 per second and with at most 100 saved: what bounds the load on a DNS that stops answering.")
	fs.IntVar(&opts.maxInFlight, "max-in-flight", dnsproxy.DefaultMaxInFlight,
		"Most queries forwarded at once; further queries are answered SERVFAIL at once.")
	fs.DurationVar(&opts.warmAge, "warm-port-age", dnsproxy.DefaultWarmPortAge,
		"How long after an upstream socket got its source port a query's first attempt may leave from it again, if its last attempt was answered: behind a Service VIP the port reaches a backend that answers, so first attempts avoid a silent one. Hedges and retries always leave from new ports. 0 turns it off: every attempt from a new port.")
	fs.IntVar(&opts.cacheSize, "cache-size", 0,
		"Answers kept in a TTL-honouring cache (negative answers per RFC 2308). 0, the default, disables it: the sidecar exists for fresh answers and the cluster DNS caches already.")
	fs.IntVar(&opts.listeners, "listeners", dnsproxy.DefaultListeners,
		"UDP sockets bound to --listen, each served by its own loop; raise it only when one core is not enough. One socket holds the address alone; several share it (SO_REUSEPORT) and the kernel steers queries to them only, never to another socket that joins.")
	fs.StringVar(&opts.metricsAddr, "metrics-bind-address", dnsproxy.DefaultMetricsAddr,
		`Address serving /metrics, /healthz and /readyz; "0" disables it.`)

	goFlags := flag.NewFlagSet("zap", flag.ContinueOnError)
	opts.zap.BindFlags(goFlags)
	fs.AddGoFlagSet(goFlags)
	return cmd
}

// config turns the flags into a dnsproxy.Config.
func (o *dnsProxyOptions) config() (dnsproxy.Config, error) {
	ups, err := dnsproxy.ParseUpstreams(o.upstream, o.resolvConf)
	if err != nil {
		return dnsproxy.Config{}, fmt.Errorf("--upstream: %w", err)
	}
	metricsAddr := o.metricsAddr
	if metricsAddr == "0" {
		metricsAddr = ""
	}
	if o.listeners <= 0 {
		return dnsproxy.Config{}, fmt.Errorf("--listeners must be positive, got %d", o.listeners)
	}
	if o.maxInFlight <= 0 {
		return dnsproxy.Config{}, fmt.Errorf("--max-in-flight must be positive, got %d", o.maxInFlight)
	}
	if o.timeout <= 0 || o.deadline <= 0 {
		return dnsproxy.Config{}, fmt.Errorf("--timeout and --deadline must be positive")
	}
	if o.hedgeMin <= 0 || o.hedgeMax <= 0 {
		return dnsproxy.Config{}, fmt.Errorf("--hedge-delay-min and --hedge-delay-max must be positive")
	}
	if o.parallel <= 0 {
		return dnsproxy.Config{}, fmt.Errorf("--max-parallel-attempts must be positive, got %d", o.parallel)
	}
	if o.hedgeBudget <= 0 {
		return dnsproxy.Config{}, fmt.Errorf("--hedge-budget must be positive, got %g", o.hedgeBudget)
	}
	warmAge := o.warmAge
	switch {
	case warmAge < 0:
		return dnsproxy.Config{}, fmt.Errorf("--warm-port-age must be 0 (off) or positive, got %s", o.warmAge)
	case warmAge == 0:
		warmAge = -1 // off, in Config's terms
	}
	return dnsproxy.Config{
		Listen:              o.listen,
		Upstreams:           ups,
		Timeout:             o.timeout,
		Deadline:            o.deadline,
		HedgeDelayMin:       o.hedgeMin,
		HedgeDelayMax:       o.hedgeMax,
		MaxParallelAttempts: o.parallel,
		HedgeBudget:         o.hedgeBudget,
		MaxInFlight:         o.maxInFlight,
		WarmPortAge:         warmAge,
		CacheSize:           o.cacheSize,
		Listeners:           o.listeners,
		MetricsAddr:         metricsAddr,
	}, nil
}

// runDNSProxy serves until SIGTERM or SIGINT.
func runDNSProxy(ctx context.Context, cfg dnsproxy.Config, log logr.Logger) error {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// The sidecar's limit is small (64Mi by default): the collector must
	// work harder near it rather than let the heap grow past it.
	if err := applyMemoryLimit(log); err != nil {
		return err
	}
	p, err := dnsproxy.New(cfg, log.WithName("dns-proxy"), dnsproxy.NewRegistry())
	if err != nil {
		return err
	}
	return p.Run(ctx)
}
