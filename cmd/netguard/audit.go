package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/netguard-io/netguard/audit"
	"github.com/netguard-io/netguard/internal/version"
)

// Output formats of `netguard audit`.
const (
	outputTable = "table"
	outputJSON  = "json"
)

type auditOptions struct {
	*rootOptions
	kubeconfig, namespace, output string
}

func newAuditCommand(root *rootOptions) *cobra.Command {
	opts := &auditOptions{rootOptions: root}
	cmd := &cobra.Command{
		Use:   "audit [--kubeconfig FILE] [-n NAMESPACE] [-o table|json]",
		Short: "Scan a live cluster for what netguard would deny, warn about or change",
		Long: `Scan the cluster, read-only, and report what netguard would do there now,
judged with the settings of --config and the code of "netguard serve", and
with the messages admission gives:

  Services  the selector guard's findings, per Service and rule, with the
            verdict admission would give: deny (enforce mode), warn,
            dry-run, or overridden (netguard.io/allow-subset-selector)
  pods      running pods netguard would change had they been created through
            it (dns-options, ndots, search-scrub, dns-proxy): pods created
            before netguard, or while it was unavailable; and nginx pods that
            run without the DNS sidecar. Pods are grouped by workload.

Only the namespaces netguard acts on are judged: for pods those that
namespaces.mode selects, for Services those that serviceGuard.namespaceMode
selects. To see what netguard would do everywhere before any namespace opts
in, pass a settings file with "namespaces: {mode: cluster-wide}".

Objects are listed 500 per request and pods are judged page by page. A scan
that takes more than a few seconds prints its progress on standard error.
The JSON output's schema is in docs/audit.md.

Exit status: 0 when nothing was found, 1 when something was (fail or warn
results; overridden Services and pods opted out of the sidecar are listed
but do not count), 2 on an error: bad flags or settings, an unreadable
kubeconfig, an API server that cannot be reached or refuses a list.`,
		Example: `  netguard audit --kubeconfig ~/.kube/config
  netguard audit --kubeconfig ~/.kube/config -n loki -o json | jq '.results[] | select(.result == "fail")'
  netguard audit --kubeconfig ~/.kube/config --config cluster-wide.yaml   # as if every namespace opted in`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.output != outputTable && opts.output != outputJSON {
				return fmt.Errorf("--output %q: want %s or %s", opts.output, outputTable, outputJSON)
			}
			cfg, err := opts.loadConfig()
			if err != nil {
				return err
			}
			restCfg, err := restConfig(opts.kubeconfig)
			if err != nil {
				return err
			}
			report, err := audit.Run(cmd.Context(), restCfg, cfg, audit.Options{
				Namespace: opts.namespace,
				Version:   version.Get(),
				Progress:  cmd.ErrOrStderr(),
			})
			if err != nil {
				return err
			}
			return writeAudit(report, opts.output, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.kubeconfig, "kubeconfig", "", "kubeconfig file; in-cluster configuration when empty")
	f.StringVarP(&opts.namespace, "namespace", "n", "", "scan only this namespace (default: all namespaces)")
	f.StringVarP(&opts.output, "output", "o", outputTable, "output format: table or json")
	return cmd
}

// writeAudit prints the report and turns findings into exit status 1.
func writeAudit(report *audit.Report, output string, out io.Writer) error {
	var err error
	if output == outputJSON {
		err = report.WriteJSON(out)
	} else {
		err = report.WriteTable(out)
	}
	if err != nil {
		return fmt.Errorf("writing the report: %w", err)
	}
	if report.Summary.Findings() > 0 {
		// The report says what was found; the status says that something was.
		return &exitError{code: 1}
	}
	return nil
}
