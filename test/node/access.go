package node

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"syscall"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"
)

// Exec runs a command in a container through the API server and the
// kubelet, as kubectl exec does.
func (c *Cluster) Exec(ctx context.Context, ns, pod, container string, command ...string) (stdout, stderr string, err error) {
	req := c.Client.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: container, Command: command, Stdout: true, Stderr: true}, scheme.ParameterCodec)
	exec, err := remotecommand.NewSPDYExecutor(c.Config, "POST", req.URL())
	if err != nil {
		return "", "", err
	}
	var out, errOut bytes.Buffer
	err = exec.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &out, Stderr: &errOut})
	return out.String(), errOut.String(), err
}

// ContainerPID is the host PID of a running container's process, from
// containerd.
func (c *Cluster) ContainerPID(ctx context.Context, ns, pod, container string) (int, error) {
	p, err := c.Client.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
	if err != nil {
		return 0, err
	}
	var id string
	for _, s := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
		if s.Name == container {
			id = strings.TrimPrefix(s.ContainerID, "containerd://")
		}
	}
	if id == "" {
		return 0, fmt.Errorf("pod %s/%s has no running container %q", ns, pod, container)
	}
	out, err := output("ctr", "--address", ContainerdSocket, "-n", "k8s.io", "tasks", "ls")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == id {
			return strconv.Atoi(f[1])
		}
	}
	return 0, fmt.Errorf("containerd runs no task for container %s of %s/%s", id, ns, pod)
}

// KillContainer sends SIGKILL to a container's process, as a crash would.
func (c *Cluster) KillContainer(ctx context.Context, ns, pod, container string) error {
	pid, err := c.ContainerPID(ctx, ns, pod, container)
	if err != nil {
		return err
	}
	return syscall.Kill(pid, syscall.SIGKILL)
}

// InNetns runs a command in the network namespace of a container's
// process (nsenter), e.g. iptables inside a pod.
func (c *Cluster) InNetns(ctx context.Context, ns, pod, container string, command ...string) error {
	pid, err := c.ContainerPID(ctx, ns, pod, container)
	if err != nil {
		return err
	}
	return run(append([]string{"nsenter", "-t", strconv.Itoa(pid), "-n"}, command...)...)
}

// Conntrack lists the kernel's UDP conntrack entries whose original
// source is src and original destination dst:port, in conntrack's
// format.
func Conntrack(src, dst string, port int) (string, error) {
	return output("conntrack", "-L", "-p", "udp", "--orig-src", src, "--orig-dst", dst, "--orig-port-dst", strconv.Itoa(port))
}
