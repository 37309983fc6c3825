package main

import (
	"github.com/spf13/cobra"

	"github.com/netguard-io/netguard/config"
)

// rootOptions are the flags every command shares.
type rootOptions struct {
	// configFile is the settings file; empty means built-in defaults.
	configFile string
}

func (o *rootOptions) loadConfig() (*config.Config, error) {
	return config.Load(o.configFile)
}

func newRootCommand() *cobra.Command {
	opts := &rootOptions{}
	root := &cobra.Command{
		Use:   "netguard",
		Short: "Admission webhook that removes outages caused by cluster networking defaults",
		Long: `netguard hardens pod DNS (single-request-reopen, ndots, search-domain
scrubbing), injects a fresh-port DNS forwarder next to nginx, and guards
Service selectors against matching only one rollout revision.

Run "netguard serve" in the cluster (see the Helm chart), "netguard dns-proxy"
as the sidecar, "netguard audit" to see what netguard would do in a live
cluster, and "netguard mutate", "check" and "resolv" offline.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&opts.configFile, "config", "", "settings file (YAML); built-in defaults when empty")
	root.AddCommand(
		newServeCommand(opts, runServe),
		newDNSProxyCommand(),
		newMutateCommand(opts),
		newCheckCommand(opts),
		newAuditCommand(opts),
		newResolvCommand(opts),
		newVersionCommand(),
	)
	return root
}
