package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// Down takes the node apart and leaves the machine as it was: pods are
// deleted while the kubelet still runs (so that the CNI plugin releases
// their network), kube-proxy's rules are cleaned, every process the node
// started is stopped by its recorded PID, leftover containers are killed,
// then the network namespaces, mounts, the bridge, the node address, the
// iptables chains, the directories and the sysctls are put back. It reads
// what to undo from the state Up wrote, does what it can and reports what
// failed. Without a state there is nothing to do.
func Down() error {
	st, err := loadState()
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	step := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	byName := func(name string) (proc, bool) {
		i := slices.IndexFunc(st.Procs, func(p proc) bool { return p.Name == name })
		if i < 0 {
			return proc{}, false
		}
		return st.Procs[i], true
	}
	stop := func(name string, grace time.Duration) {
		if p, ok := byName(name); ok {
			step(p.stop(grace))
		}
	}

	// No new pods, then none at all while the kubelet can still tear
	// their sandboxes down.
	stop("kube-controller-manager", 10*time.Second)
	stop("kube-scheduler", 10*time.Second)
	stop("cert-manager-controller", 10*time.Second)
	stop("cert-manager-cainjector", 10*time.Second)
	if k, ok := byName("kubelet"); ok && k.alive() {
		step(deletePods())
	}
	stop("kube-proxy", 10*time.Second)
	if _, ok := byName("kube-proxy"); ok {
		if assets := filepath.Dir(procExe(st, "kube-proxy")); assets != "." {
			_ = run(filepath.Join(assets, "kube-proxy"), "--cleanup")
		}
	}
	stop("kubelet", 20*time.Second)
	if c, ok := byName("containerd"); ok && c.alive() {
		step(removeContainers())
	}
	stop("containerd", 10*time.Second)
	step(killShims())
	stop("kube-apiserver", 10*time.Second)
	stop("etcd", 10*time.Second)
	for _, p := range st.Procs { // anything else recorded
		step(p.stop(5 * time.Second))
	}

	for _, ns := range netnsList() {
		if strings.HasPrefix(ns, "cni-") && !slices.Contains(st.NetnsBefore, ns) {
			step(run("ip", "netns", "delete", ns))
		}
	}
	step(unmountBelow(BaseDir, RunDir))
	if err := run("ip", "link", "delete", Bridge); err != nil && !strings.Contains(err.Error(), "Cannot find device") {
		step(err)
	}
	if err := run("ip", "addr", "del", NodeIP+"/32", "dev", "lo"); err != nil && !strings.Contains(err.Error(), "Cannot assign") {
		step(err)
	}
	step(removeChains())
	for name, value := range st.Sysctls {
		step(writeSysctl(name, value))
	}
	for _, d := range st.CreatedDirs {
		step(os.RemoveAll(d))
	}
	step(os.RemoveAll(RunDir))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("taking the node down (state kept in %s; run again): %w", dirs.state(), err)
	}
	return os.RemoveAll(BaseDir)
}

// procExe is the executable a recorded process ran, while it still runs
// or from the assets it was started from.
func procExe(st *state, name string) string {
	for _, p := range st.Procs {
		if p.Name == name {
			if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", p.PID)); err == nil {
				return exe
			}
		}
	}
	if b, err := os.ReadFile(filepath.Join(BaseDir, "assets")); err == nil {
		return filepath.Join(strings.TrimSpace(string(b)), name)
	}
	return ""
}

// deletePods deletes every pod and waits (bounded) until the kubelet has
// stopped them.
func deletePods() error {
	cfg, err := clientcmd.BuildConfigFromFlags("", dirs.admin())
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	nss, err := client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, ns := range nss.Items {
		_ = client.CoreV1().Pods(ns.Name).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}, metav1.ListOptions{})
	}
	// The kubelet stops each pod's containers and sandbox (CNI DEL).
	return waitFor(ctx, 45*time.Second, "pods stopped by the kubelet", func() error {
		out, err := output("ctr", "--address", ContainerdSocket, "-n", "k8s.io", "tasks", "ls", "-q")
		if err != nil {
			return err
		}
		if n := len(strings.Fields(out)); n > 0 {
			return fmt.Errorf("%d containers still run", n)
		}
		return nil
	})
}

// removeContainers kills and deletes whatever containerd still runs.
func removeContainers() error {
	ctr := func(args ...string) (string, error) {
		return output(append([]string{"ctr", "--address", ContainerdSocket, "-n", "k8s.io"}, args...)...)
	}
	tasks, err := ctr("tasks", "ls", "-q")
	if err != nil {
		return err
	}
	for _, id := range strings.Fields(tasks) {
		_, _ = ctr("tasks", "kill", "-s", "SIGKILL", id)
	}
	for _, id := range strings.Fields(tasks) {
		_ = waitFor(context.Background(), 10*time.Second, "task "+id, func() error {
			_, err := ctr("tasks", "delete", id)
			return err
		})
	}
	containers, err := ctr("containers", "ls", "-q")
	if err != nil {
		return err
	}
	for _, id := range strings.Fields(containers) {
		_, _ = ctr("containers", "delete", id)
	}
	return nil
}

// killShims stops containerd shims of the node's containerd that outlived
// it (shims run on their own by design).
func killShims() error {
	entries, _ := os.ReadDir("/proc")
	var errs []error
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !strings.Contains(string(cmdline), "containerd-shim") || !strings.Contains(string(cmdline), ContainerdSocket) {
			continue
		}
		st, err := startTime(pid)
		if err != nil {
			continue
		}
		errs = append(errs, proc{Name: "containerd-shim", PID: pid, Start: st}.stop(5*time.Second))
	}
	return errors.Join(errs...)
}

// unmountBelow detaches every mount under the given directories, deepest
// first.
func unmountBelow(roots ...string) error {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var points []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := strings.ReplaceAll(f[4], `\040`, " ")
		for _, r := range roots {
			if mp == r || strings.HasPrefix(mp, r+"/") {
				points = append(points, mp)
			}
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	var errs []error
	for _, mp := range points {
		if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmounting %s: %w", mp, err))
		}
	}
	return errors.Join(errs...)
}

// removeChains removes the node's FORWARD guard and every KUBE-* chain
// (kube-proxy's and the kubelet's), with the rules that jump to them, in
// every table, for IPv4 and IPv6.
func removeChains() error {
	var errs []error
	for _, family := range []string{"iptables", "ip6tables"} {
		for _, table := range []string{"filter", "nat", "mangle", "raw"} {
			out, err := output(family+"-save", "-t", table)
			if err != nil {
				continue // table or family not there
			}
			var chains []string
			for _, line := range strings.Split(out, "\n") {
				switch {
				case strings.HasPrefix(line, ":KUBE-") || strings.HasPrefix(line, ":"+GuardChain+" "):
					chains = append(chains, strings.Fields(line[1:])[0])
				case strings.HasPrefix(line, "-A ") && (strings.Contains(line, " -j KUBE-") || strings.Contains(line, " -j "+GuardChain)):
					chain := strings.Fields(line)[1]
					if !strings.HasPrefix(chain, "KUBE-") && chain != GuardChain {
						rule := append([]string{family, "-w", "-t", table, "-D"}, splitRule(line[3:])...)
						errs = append(errs, run(rule...))
					}
				}
			}
			for _, ch := range chains {
				errs = append(errs, run(family, "-w", "-t", table, "-F", ch))
			}
			for _, ch := range chains {
				errs = append(errs, run(family, "-w", "-t", table, "-X", ch))
			}
		}
	}
	return errors.Join(errs...)
}

// splitRule splits an iptables-save rule into arguments, keeping quoted
// comments whole.
func splitRule(rule string) []string {
	var args []string
	var cur strings.Builder
	quoted := false
	for _, r := range rule {
		switch {
		case r == '"':
			quoted = !quoted
		case r == ' ' && !quoted:
			if cur.Len() > 0 {
				args = append(args, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteRune(r)
		}
	}
	if cur.Len() > 0 {
		args = append(args, cur.String())
	}
	return args
}
