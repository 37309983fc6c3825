// Command demo runs netguard end to end on this machine: a real
// kube-apiserver and etcd, `netguard serve` with generated certificates,
// the webhook configuration the chart installs, and sample pods whose DNS
// settings and resolv.conf are shown before and after. Run it with
// `make demo`.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/netguard-io/netguard/internal/testlog"
	"github.com/netguard-io/netguard/policies/podpolicy"
	"github.com/netguard-io/netguard/test/framework"
)

// nodeResolvConf is a node's resolv.conf with a search domain leaked from
// DHCP, the setting behind NXDOMAIN storms.
const nodeResolvConf = "nameserver 192.0.2.53\nsearch example.org\n"

const clusterDNS = framework.ClusterDNSIP

func main() {
	testlog.Discard() // the demo prints what matters itself
	// Ctrl-C, or a reader that goes away (| head), must not skip the
	// cleanup: the control plane runs in its own process group.
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// warnings collects the admission warnings the API server relays.
type warnings struct{ list []string }

func (w *warnings) HandleWarningHeaderWithContext(_ context.Context, _ int, _ string, text string) {
	w.list = append(w.list, text)
}

func run(ctx context.Context) error {
	step("Starting kube-apiserver and etcd")
	cp, err := framework.StartControlPlane()
	if err != nil {
		return err
	}
	defer cp.Stop()
	dir, err := os.MkdirTemp("", "netguard-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	step("Building netguard and starting `netguard serve`")
	bin, err := framework.BuildNetguard(dir)
	if err != nil {
		return err
	}
	if err := cp.CreateClusterDNS(ctx); err != nil {
		return err
	}
	if _, err := cp.CreateNamespace(ctx, "netguard", nil); err != nil {
		return err
	}
	step("Installing the Helm chart (helm template charts/netguard, no cert-manager) into the local control plane")
	objects, err := renderChart()
	if err != nil {
		return err
	}
	webhooks, configYAML, err := applyChart(ctx, cp, objects)
	if err != nil {
		return err
	}
	configFile := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(configFile, configYAML, 0o600); err != nil {
		return err
	}
	server, err := cp.StartServer(ctx, bin, configFile)
	if err != nil {
		return err
	}
	defer server.Stop()
	// No kubelet runs here, so netguard runs as a local process with the
	// chart's settings, and the chart's webhook configurations point at it.
	for _, obj := range webhooks {
		wh, _, err := localWebhook(server, cp.CAData, obj)
		if err != nil {
			return err
		}
		if err := cp.Client.Create(ctx, wh); err != nil {
			return fmt.Errorf("creating %s: %w", wh.GetName(), err)
		}
		fmt.Printf("  created %s %s, pointed at the local server\n", obj.GetKind(), obj.GetName())
		if err := cp.WaitCalled(ctx, server, obj.GetKind()); err != nil {
			return err
		}
	}
	fmt.Printf("  netguard serve runs locally with the chart's config.yaml; webhooks at %s, cluster DNS %s discovered from kube-system/kube-dns\n", server.WebhookURL(""), clusterDNS)

	step("Creating namespace team (label netguard.io/inject=enabled) and namespace legacy (no label)")
	if _, err := cp.CreateNamespace(ctx, "team", map[string]string{"netguard.io/inject": "enabled"}); err != nil {
		return err
	}
	if _, err := cp.CreateNamespace(ctx, "legacy", nil); err != nil {
		return err
	}
	fmt.Printf("  the node's resolv.conf, as the kubelet sees it:\n%s", indent(nodeResolvConf, "    | "))

	// One pod per resolver netguard tells apart: glibc (an official
	// Debian-based image), musl (Alpine), and an image it cannot classify.
	pods := []*corev1.Pod{
		samplePod("team", "api", "python:3.12"),
		samplePod("team", "worker", "alpine:3.20"),
		samplePod("team", "billing", "registry.example/billing:1.4"),
		samplePod("team", "gateway", "nginxinc/nginx-unprivileged:1.27"),
		samplePod("legacy", "api", "python:3.12"),
	}
	for _, pod := range pods {
		if err := showPod(ctx, cp, pod); err != nil {
			return err
		}
	}
	if err := showServiceGuard(ctx, cp); err != nil {
		return err
	}
	step("Done: pods in opted-in namespaces lose the leaked search domains; glibc pods also get single-request-reopen and ndots:2, while musl pods and pods of unknown resolver keep ndots:5 so that names like svc.ns.svc keep resolving; nginx pods get the fresh-port DNS sidecar; a Service selector that matches one rollout revision is denied")
	return nil
}

func samplePod(ns, name, image string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: name, Image: image}}},
	}
}

func showPod(ctx context.Context, cp *framework.ControlPlane, pod *corev1.Pod) error {
	step(fmt.Sprintf("Creating pod %s/%s (image %s)", pod.Namespace, pod.Name, pod.Spec.Containers[0].Image))
	before, err := podpolicy.RenderResolvConf(pod, []byte(nodeResolvConf), clusterDNS, "cluster.local")
	if err != nil {
		return err
	}
	w := &warnings{}
	cfg := rest.CopyConfig(cp.Config)
	cfg.WarningHandlerWithContext = w
	c, err := client.New(cfg, client.Options{Scheme: cp.Env.Scheme})
	if err != nil {
		return err
	}
	if err := c.Create(ctx, pod.DeepCopy()); err != nil {
		return err
	}
	stored := &corev1.Pod{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(pod), stored); err != nil {
		return err
	}
	after, err := podpolicy.RenderResolvConf(stored, []byte(nodeResolvConf), clusterDNS, "cluster.local")
	if err != nil {
		return err
	}
	fmt.Printf("  resolv.conf without netguard:\n%s", indent(before, "    | "))
	if stored.Annotations[podpolicy.AnnotationStatus] == "" {
		fmt.Println("  netguard left this pod alone (namespace not opted in): same resolv.conf")
		return nil
	}
	fmt.Printf("  stored pod: dnsPolicy %s, dnsConfig:\n%s", stored.Spec.DNSPolicy, indent(toYAML(stored.Spec.DNSConfig), "    "))
	fmt.Printf("  resolv.conf with netguard:\n%s", indent(after, "    | "))
	for _, c := range append(stored.Spec.InitContainers, stored.Spec.Containers...) {
		if c.Name == podpolicy.DNSProxyContainerName {
			fmt.Printf("  sidecar %s: %s %s\n", c.Name, c.Image, strings.Join(c.Args, " "))
		}
	}
	fmt.Printf("  annotation %s: %s\n", podpolicy.AnnotationStatus, stored.Annotations[podpolicy.AnnotationStatus])
	for _, text := range w.list {
		fmt.Printf("  admission warning: %s\n", text)
	}
	return nil
}

func toYAML(v any) string {
	b, err := yaml.Marshal(v)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

func indent(s, prefix string) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString(prefix + line + "\n")
	}
	return b.String()
}

func step(s string) { fmt.Printf("\n==> %s\n", s) }
