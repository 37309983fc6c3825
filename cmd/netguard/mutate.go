package main

import (
	"bytes"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"

	"github.com/netguard-io/netguard/config"
	"github.com/netguard-io/netguard/internal/manifest"
	"github.com/netguard-io/netguard/internal/version"
	"github.com/netguard-io/netguard/policies/podpolicy"
)

// offlineOptions are the flags shared by the commands that read manifests.
type offlineOptions struct {
	*rootOptions
	file       string
	namespace  string
	clusterDNS string
}

func (o *offlineOptions) addFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVarP(&o.file, "filename", "f", "", `manifest file, or "-" for standard input (required)`)
	f.StringVarP(&o.namespace, "namespace", "n", "default", "namespace of objects that do not name one")
	f.StringVar(&o.clusterDNS, "cluster-dns", "", "cluster DNS Service IP, needed to scrub search domains (default: dns.search.clusterDNS from --config)")
	_ = cmd.MarkFlagRequired("filename")
}

// offlineEnv is the cluster as the offline commands assume it: the
// namespace opted in, the cluster DNS IP from the flag or the settings.
func (o *offlineOptions) offlineEnv(ns string, cfg *config.Config) podpolicy.Env {
	dns := o.clusterDNS
	if dns == "" {
		dns = cfg.DNS.Search.ClusterDNS
	}
	return podpolicy.Env{
		Namespace:  podpolicy.NamespaceInfo{Name: ns, Labels: map[string]string{podpolicy.LabelInject: podpolicy.LabelInjectEnabled}},
		ClusterDNS: dns,
		Version:    version.Get(),
	}
}

func newMutateCommand(root *rootOptions) *cobra.Command {
	opts := &offlineOptions{rootOptions: root}
	cmd := &cobra.Command{
		Use:   "mutate -f FILE|-",
		Short: "Print manifests with the pod policies applied, as the webhook would",
		Long: `Apply netguard's pod policies to the Pods and to the pod templates of
Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs and CronJobs in
FILE, and print every document in the same order. Other objects, and pods
netguard would leave alone, are printed unchanged. Namespaces are treated as
opted in; what the webhook would warn about is written to standard error.`,
		Example: `  netguard mutate -f deploy.yaml --cluster-dns 10.96.0.10
  helm template my-app ./chart | netguard mutate -f -`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := opts.loadConfig()
			if err != nil {
				return err
			}
			docs, err := manifest.ReadFile(opts.file)
			if err != nil {
				return err
			}
			return mutateDocuments(docs, opts, cfg, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	opts.addFlags(cmd)
	return cmd
}

func mutateDocuments(docs []manifest.Document, opts *offlineOptions, cfg *config.Config, out, warn io.Writer) error {
	var buf bytes.Buffer
	for i, doc := range docs {
		if i > 0 {
			buf.WriteString("---\n")
		}
		text, err := mutateDocument(doc, opts, cfg, warn)
		if err != nil {
			return err
		}
		buf.Write(text)
		if len(text) > 0 && text[len(text)-1] != '\n' {
			buf.WriteByte('\n')
		}
	}
	_, err := out.Write(buf.Bytes())
	return err
}

func mutateDocument(doc manifest.Document, opts *offlineOptions, cfg *config.Config, warn io.Writer) ([]byte, error) {
	pod, ok, err := doc.Pod(opts.namespace)
	if err != nil || !ok {
		return doc.Raw, err
	}
	result := podpolicy.Mutate(pod, opts.offlineEnv(pod.Namespace, cfg), cfg)
	for _, w := range result.Warnings {
		fmt.Fprintf(warn, "%s: warning: %s\n", doc, w)
	}
	if result.Skipped != "" {
		fmt.Fprintf(warn, "%s: unchanged: %s\n", doc, result.Skipped)
		return doc.Raw, nil
	}
	return doc.WithPod(pod, result.Pod)
}

// mutatedPod runs the pod policies on a pod the way `mutate` does.
func mutatedPod(pod *corev1.Pod, opts *offlineOptions, cfg *config.Config) podpolicy.Result {
	return podpolicy.Mutate(pod, opts.offlineEnv(pod.Namespace, cfg), cfg)
}
