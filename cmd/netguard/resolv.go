package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/netguard-io/netguard/internal/manifest"
	"github.com/netguard-io/netguard/policies/podpolicy"
)

type resolvOptions struct {
	offlineOptions
	nodeResolv    string
	clusterDomain string
	unmutated     bool
}

func newResolvCommand(root *rootOptions) *cobra.Command {
	opts := &resolvOptions{offlineOptions: offlineOptions{rootOptions: root}}
	cmd := &cobra.Command{
		Use:   "resolv -f POD.yaml --cluster-dns IP",
		Short: "Print the /etc/resolv.conf the kubelet would write for a pod after mutation",
		Long: `Apply the pod policies to the first Pod (or pod template) in FILE and print
the /etc/resolv.conf the kubelet would write for it, given the node's
resolv.conf (--node-resolv), the cluster DNS IP and the cluster domain.
On standard error: the resolver the rules were chosen for (glibc, musl,
go or unknown, from the netguard.io/resolver annotation or the images),
and the admission warnings. With --unmutated, print the file the pod gets
without netguard.`,
		Example: `  netguard resolv -f pod.yaml --namespace team --cluster-dns 10.96.0.10 --node-resolv node-resolv.conf`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := opts.loadConfig()
			if err != nil {
				return err
			}
			if opts.clusterDNS == "" {
				opts.clusterDNS = cfg.DNS.Search.ClusterDNS
			}
			if opts.clusterDNS == "" {
				return fmt.Errorf("--cluster-dns is required (or dns.search.clusterDNS in --config)")
			}
			if opts.clusterDomain == "" {
				opts.clusterDomain = cfg.DNS.Search.ClusterDomain
			}
			node, err := os.ReadFile(opts.nodeResolv)
			if err != nil {
				return fmt.Errorf("--node-resolv: %w", err)
			}
			docs, err := manifest.ReadFile(opts.file)
			if err != nil {
				return err
			}
			for _, doc := range docs {
				pod, ok, err := doc.Pod(opts.namespace)
				if err != nil {
					return err
				}
				if !ok {
					continue
				}
				if !opts.unmutated {
					result := mutatedPod(pod, &opts.offlineOptions, cfg)
					if result.Resolver != "" {
						fmt.Fprintf(cmd.ErrOrStderr(), "%s: resolver %s (%s)\n", doc, result.Resolver, result.ResolverFrom)
					}
					for _, w := range result.Warnings {
						fmt.Fprintf(cmd.ErrOrStderr(), "%s: warning: %s\n", doc, w)
					}
					pod = result.Pod
				}
				text, err := podpolicy.RenderResolvConf(pod, node, opts.clusterDNS, opts.clusterDomain)
				if errors.Is(err, podpolicy.ErrLimitsExceeded) {
					// The kubelet writes the file cut to its limits, and an event.
					fmt.Fprintf(cmd.ErrOrStderr(), "%s: warning: %v\n", doc, err)
				} else if err != nil {
					return fmt.Errorf("%s: %w", doc, err)
				}
				_, err = fmt.Fprint(cmd.OutOrStdout(), text)
				return err
			}
			return fmt.Errorf("%s: no Pod or pod template found", opts.file)
		},
	}
	opts.addFlags(cmd)
	f := cmd.Flags()
	f.StringVar(&opts.nodeResolv, "node-resolv", "/etc/resolv.conf", "the node's resolv.conf, whose search domains the kubelet appends")
	f.StringVar(&opts.clusterDomain, "cluster-domain", "", "cluster DNS domain (default: dns.search.clusterDomain from --config, cluster.local)")
	f.BoolVar(&opts.unmutated, "unmutated", false, "print the resolv.conf the pod gets without netguard")
	return cmd
}
