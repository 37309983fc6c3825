package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/netguard-io/netguard/test/framework"
	"github.com/netguard-io/netguard/test/node"
)

// optedIn labels a namespace netguard acts on.
var optedIn = map[string]string{"netguard.io/inject": "enabled"}

// restricted enforces Pod Security "restricted" on a namespace.
var restricted = map[string]string{
	"pod-security.kubernetes.io/enforce":         "restricted",
	"pod-security.kubernetes.io/enforce-version": "latest",
}

func merge(maps ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range maps {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// newNamespace creates a namespace that is deleted when t ends.
func newNamespace(t *testing.T, name string, labels map[string]string) string {
	t.Helper()
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if _, err := cluster.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		grace := int64(0)
		_ = cluster.Client.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: &grace})
	})
	return name
}

// readyPods waits until n pods match selector in ns and are all ready,
// and returns them.
func readyPods(t *testing.T, ns, selector string, n int) []corev1.Pod {
	t.Helper()
	var pods []corev1.Pod
	framework.Eventually(t, 2*time.Minute, fmt.Sprintf("%d ready pods %s in %s", n, selector, ns), func() (bool, string) {
		list, err := cluster.Client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return false, err.Error()
		}
		pods = nil
		var states []string
		for _, p := range list.Items {
			if p.DeletionTimestamp != nil {
				continue
			}
			pods = append(pods, p)
			ready := false
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
					ready = true
				}
			}
			if !ready {
				states = append(states, p.Name+" "+podState(p))
			}
		}
		return len(pods) == n && len(states) == 0, fmt.Sprintf("%d pods; not ready: %v", len(pods), states)
	})
	return pods
}

// podState says why a pod is not ready, for failure messages.
func podState(p corev1.Pod) string {
	var s []string
	for _, c := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
		switch {
		case c.State.Waiting != nil:
			s = append(s, c.Name+": "+c.State.Waiting.Reason+" "+c.State.Waiting.Message)
		case c.State.Terminated != nil:
			s = append(s, fmt.Sprintf("%s: exited %d %s", c.Name, c.State.Terminated.ExitCode, c.State.Terminated.Reason))
		case !c.Ready:
			s = append(s, c.Name+": running, not ready")
		}
	}
	return string(p.Status.Phase) + " " + strings.Join(s, "; ")
}

// restrictedContext is a container securityContext that Pod Security
// "restricted" admits.
func restrictedContext() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		RunAsNonRoot:             ptr.To(true),
		AllowPrivilegeEscalation: ptr.To(false),
		ReadOnlyRootFilesystem:   ptr.To(true),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

// nginxConf proxies every request to backend (a name nginx resolves at
// run time through resolver, every second) and answers 502 when it
// cannot resolve it within timeout.
func nginxConf(resolver, backend, timeout string) string {
	return node.NginxConf(fmt.Sprintf(`  resolver %s valid=1s ipv6=off;
  resolver_timeout %s;
  server {
    listen 8080;
    location /healthz { return 200 "ok\n"; }
    location / {
      set $backend %s;
      proxy_pass http://$backend:8080;
      proxy_connect_timeout 2s;
    }
  }
`, resolver, timeout, backend))
}

// nginx creates a Deployment of the test nginx image with conf as its
// configuration, restricted-compliant, with a writable /tmp.
func nginx(t *testing.T, ns, name, conf string, annotations map[string]string) {
	t.Helper()
	ctx := context.Background()
	labels := map[string]string{"app": name}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: map[string]string{"nginx.conf": conf}}
	if _, err := cluster.Client.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations},
				Spec: corev1.PodSpec{
					SecurityContext: &corev1.PodSecurityContext{RunAsUser: ptr.To[int64](65532), RunAsGroup: ptr.To[int64](65532)},
					Containers: []corev1.Container{{
						Name:            "nginx",
						Image:           node.NginxImage,
						ImagePullPolicy: corev1.PullNever,
						Args:            []string{"-c", "/etc/nginx/conf/nginx.conf"},
						Ports:           []corev1.ContainerPort{{ContainerPort: 8080}},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}},
							PeriodSeconds: 1,
						},
						SecurityContext: restrictedContext(),
						VolumeMounts: []corev1.VolumeMount{
							{Name: "conf", MountPath: "/etc/nginx/conf"},
							{Name: "tmp", MountPath: "/tmp"},
						},
					}},
					Volumes: []corev1.Volume{
						{Name: "conf", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: name}}}},
						{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
					},
				},
			},
		},
	}
	if _, err := cluster.Client.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// backend runs the test nginx image's own configuration ("ok" on 8080)
// behind a Service called name, and waits until it serves.
func backend(t *testing.T, ns, name string) {
	t.Helper()
	nginx(t, ns, name, node.NginxConf(`  server { listen 8080; location / { return 200 "backend\n"; } }
`), map[string]string{"netguard.io/dns-proxy": "false"})
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Port: 8080, TargetPort: intstr.FromInt32(8080)}},
		},
	}
	if _, err := cluster.Client.CoreV1().Services(ns).Create(context.Background(), svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	readyPods(t, ns, "app="+name, 1)
	if err := cluster.WaitEndpoints(context.Background(), ns, name, 1); err != nil {
		t.Fatal(err)
	}
}

// get fetches url from the host and reports whether the backend answered.
func get(url string, timeout time.Duration) (bool, string) {
	c := http.Client{Timeout: timeout}
	resp, err := c.Get(url)
	if err != nil {
		return false, err.Error()
	}
	defer resp.Body.Close()
	buf := make([]byte, 64)
	n, _ := resp.Body.Read(buf)
	body := strings.TrimSpace(string(buf[:n]))
	return resp.StatusCode == http.StatusOK && body == "backend", fmt.Sprintf("%d %q", resp.StatusCode, body)
}

// sidecarMetrics returns the forwarder's own series served by the
// netguard-dns sidecar of the pod at ip (its default metrics port), to
// show its view when a test fails: hedge delay, attempts, budget holds.
func sidecarMetrics(ip string) string {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + net.JoinHostPort(ip, "9153") + "/metrics")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err.Error()
	}
	var lines []string
	for line := range strings.SplitSeq(string(body), "\n") {
		if strings.HasPrefix(line, "netguard_dnsproxy_") && !strings.Contains(line, "_bucket{") {
			lines = append(lines, line)
		}
	}
	return strings.Join(lines, "\n")
}

// silenceCoreDNS makes CoreDNS pod name drop UDP/53 inside its network
// namespace, until t ends: no ICMP, and its readiness (HTTP) keeps
// passing, so it stays in kube-dns's endpoints, as a pod on a lost node.
func silenceCoreDNS(t *testing.T, name string) {
	t.Helper()
	drop := []string{"iptables", "-w", "-I", "INPUT", "-p", "udp", "--dport", "53", "-j", "DROP"}
	if err := cluster.InNetns(context.Background(), "kube-system", name, "coredns", drop...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		undo := append([]string{"iptables", "-w", "-D"}, drop[3:]...)
		if err := cluster.InNetns(context.Background(), "kube-system", name, "coredns", undo...); err != nil {
			t.Error(err)
		}
	})
}
