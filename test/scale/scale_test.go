// Package scale measures the memory of `netguard serve` against a real
// kube-apiserver holding many pods, beside a baseline measured the same
// way in the same run: a plain controller-runtime cache with one full Pod
// informer over the same pods (./baseline).
//
//	make bench-scale                              # 25k, 100k, 150k pods
//	NETGUARD_SCALE_PODS=25000 make bench-scale    # one size
//
// The cluster is 100 namespaces of 50 Deployments each, every Deployment
// with one ReplicaSet whose pods carry four labels (three shared by the
// workload's pods, pod-template-hash) and a typical spec. Pods are created
// once and the cluster grows from one size to the next. For each size,
// netguard serve starts with the default configuration and is measured
// from /proc/PID/status once /readyz passes and a settle period has
// passed: VmHWM (peak RSS), VmRSS (steady RSS) and RssAnon (anonymous
// memory); then the baseline, likewise. Nothing is asserted on the
// figures; they are reported.
//
// NETGUARD_SCALE_PROFILES=DIR also saves netguard's heap profile of each
// size there (go tool pprof -top DIR/netguard-heap-100000.pb.gz).
// NETGUARD_SCALE_MEMORY_LIMIT=BYTES gives netguard a container memory
// limit the way the chart does (NETGUARD_MEMORY_LIMIT, from which it sets
// Go's soft memory limit); e.g. 268435456 for the chart's default 256Mi.
// The baseline runs with the Go runtime's defaults either way.
package scale

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/netguard-io/netguard/internal/memlimit"
	"github.com/netguard-io/netguard/internal/testlog"
	"github.com/netguard-io/netguard/test/framework"
)

func init() { testlog.Discard() }

const (
	namespaces = 100
	apps       = 50 // Deployments per namespace
	// workers create pods concurrently; more only queue in the API server.
	workers = 24
	// settle is how long a process runs after it is ready before it is
	// measured: informers have drained their queues, and the collector
	// has run on what the initial sync left.
	settle = 20 * time.Second
	// readyTimeout bounds the wait for a process to sync.
	readyTimeout = 10 * time.Minute
	// etcdQuota holds 150k pods and their history with room to spare.
	etcdQuota = 8 << 30
)

// memory is what /proc/PID/status says of a process, in bytes.
type memory struct{ hwm, rss, anon int64 }

// measurement is one process at one size.
type measurement struct {
	mem  memory
	sync time.Duration // start to ready
}

func TestServeMemoryAtScale(t *testing.T) {
	h := newHarness(t, "make bench-scale")
	sizes, cp, netguard, baseline, ctx := h.sizes, h.cp, h.netguard, h.baseline, context.Background()
	c := newCluster(h.cs)
	if err := c.createWorkloads(ctx); err != nil {
		t.Fatal(err)
	}

	type row struct {
		pods               int
		netguard, baseline measurement
	}
	var rows []row
	for _, n := range sizes {
		c.grow(ctx, t, n)

		ng, err := measureNetguard(ctx, t, cp, netguard, n)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("pods=%d: netguard serve %s", n, ng)
		base, err := measureBaseline(ctx, t, baseline, cp.Kubeconfig, n)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("pods=%d: baseline       %s", n, base)
		rows = append(rows, row{n, ng, base})
	}

	mib := func(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }
	var b strings.Builder
	b.WriteString("\n| pods | netguard peak (VmHWM) | steady (VmRSS) | anonymous | peak B/pod | sync | baseline peak | baseline steady | baseline B/pod | baseline sync |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %d | %s | %s | %s | %d | %s | %s | %s | %d | %s |\n", r.pods,
			mib(r.netguard.mem.hwm), mib(r.netguard.mem.rss), mib(r.netguard.mem.anon), r.netguard.mem.hwm/int64(r.pods), r.netguard.sync.Round(time.Second),
			mib(r.baseline.mem.hwm), mib(r.baseline.mem.rss), r.baseline.mem.hwm/int64(r.pods), r.baseline.sync.Round(time.Second))
	}
	t.Log(b.String())
}

func (m measurement) String() string {
	mib := func(b int64) float64 { return float64(b) / (1 << 20) }
	return fmt.Sprintf("ready in %s: peak %.0f MiB, steady %.0f MiB, anonymous %.0f MiB",
		m.sync.Round(100*time.Millisecond), mib(m.mem.hwm), mib(m.mem.rss), mib(m.mem.anon))
}

// podCounts parses NETGUARD_SCALE_PODS, a comma-separated list of sizes in
// ascending order.
func podCounts(t *testing.T) []int {
	var out []int
	for _, f := range strings.Split(os.Getenv("NETGUARD_SCALE_PODS"), ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 || (len(out) > 0 && n <= out[len(out)-1]) {
			t.Fatalf("NETGUARD_SCALE_PODS=%q: want ascending pod counts, e.g. 25000,100000,150000", os.Getenv("NETGUARD_SCALE_PODS"))
		}
		out = append(out, n)
	}
	return out
}

// measureNetguard runs `netguard serve` with the default configuration
// until it is ready and has settled, measures it and stops it.
func measureNetguard(ctx context.Context, t *testing.T, cp *framework.ControlPlane, binary string, pods int) (measurement, error) {
	profiles := os.Getenv("NETGUARD_SCALE_PROFILES")
	var args []string
	if profiles != "" {
		args = append(args, "--pprof-bind-address", "127.0.0.1:0")
	}
	if limit := os.Getenv("NETGUARD_SCALE_MEMORY_LIMIT"); limit != "" {
		t.Setenv(memlimit.EnvVar, limit)
	}
	start := time.Now()
	s, err := cp.LaunchServer(binary, "", args...)
	if err != nil {
		return measurement{}, err
	}
	defer func() { _ = s.Stop() }()
	if err := s.WaitReady(ctx, readyTimeout); err != nil {
		return measurement{}, fmt.Errorf("%w; log:\n%s", err, tail(s.Log(), 4000))
	}
	m := measurement{sync: time.Since(start)}
	time.Sleep(settle)
	if m.mem, err = readMemory(s.PID()); err != nil {
		return m, err
	}
	if profiles != "" {
		path := filepath.Join(profiles, fmt.Sprintf("netguard-heap-%d.pb.gz", pods))
		if err := save(path, "http://"+s.PprofAddr+"/debug/pprof/heap"); err != nil {
			return m, err
		}
		t.Logf("heap profile: %s", path)
	}
	if !s.Running() {
		return m, fmt.Errorf("netguard serve exited while measured; log:\n%s", tail(s.Log(), 4000))
	}
	return m, s.Stop()
}

// measureBaseline runs the baseline the same way.
func measureBaseline(ctx context.Context, t *testing.T, binary, kubeconfig string, pods int) (measurement, error) {
	cmd := exec.CommandContext(ctx, binary, "--kubeconfig", kubeconfig)
	cmd.Env = os.Environ()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return measurement{}, err
	}
	logFile, err := os.Create(filepath.Join(t.TempDir(), "baseline.log"))
	if err != nil {
		return measurement{}, err
	}
	defer logFile.Close()
	cmd.Stderr = logFile
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return measurement{}, err
	}
	exited := make(chan error, 1)
	synced := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		synced <- strings.TrimSpace(line)
		_, _ = io.Copy(io.Discard, stdout)
		exited <- cmd.Wait()
	}()
	stop := func() error {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case err := <-exited:
			return err
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("the baseline did not stop within 20s")
		}
	}
	var line string
	select {
	case line = <-synced:
	case <-time.After(readyTimeout):
		_ = stop()
		return measurement{}, fmt.Errorf("the baseline did not sync within %s", readyTimeout)
	}
	m := measurement{sync: time.Since(start)}
	if line != fmt.Sprintf("synced %d", pods) {
		_ = stop()
		log, _ := os.ReadFile(logFile.Name())
		return m, fmt.Errorf("the baseline said %q, want %d pods synced; log:\n%s", line, pods, tail(string(log), 4000))
	}
	time.Sleep(settle)
	if m.mem, err = readMemory(cmd.Process.Pid); err != nil {
		_ = stop()
		return m, err
	}
	return m, stop()
}

// readMemory reads VmHWM, VmRSS and RssAnon from /proc/PID/status.
func readMemory(pid int) (memory, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memory{}, err
	}
	var m memory
	fields := map[string]*int64{"VmHWM:": &m.hwm, "VmRSS:": &m.rss, "RssAnon:": &m.anon}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[2] == "kB" && fields[f[0]] != nil {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return memory{}, fmt.Errorf("/proc/%d/status: %q: %w", pid, line, err)
			}
			*fields[f[0]] = kb << 10
		}
	}
	if m.hwm == 0 || m.rss == 0 || m.anon == 0 {
		return memory{}, fmt.Errorf("/proc/%d/status has no VmHWM, VmRSS or RssAnon:\n%s", pid, data)
	}
	return m, nil
}

func save(path, url string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// cluster creates the benchmark's namespaces, workloads and pods.
type cluster struct {
	cs   kubernetes.Interface
	rs   []*appsv1.ReplicaSet // namespace-major
	pods int
}

func newCluster(cs kubernetes.Interface) *cluster { return &cluster{cs: cs} }

func appName(i int) string { return fmt.Sprintf("app-%02d", i) }

// createWorkloads creates the namespaces, and in each a Deployment and its
// ReplicaSet per app. No controller runs: they only give the pods real
// owners, as the guard expects.
func (c *cluster) createWorkloads(ctx context.Context) error {
	for n := range namespaces {
		ns := fmt.Sprintf("team-%03d", n)
		if _, err := c.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			return err
		}
		for a := range apps {
			labels := map[string]string{
				"app.kubernetes.io/name":      appName(a),
				"app.kubernetes.io/instance":  ns,
				"app.kubernetes.io/component": "web",
			}
			hash := fmt.Sprintf("%08x", n*apps+a)[:8]
			template := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: podSpec(appName(a))}
			d, err := c.cs.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
				ObjectMeta: metav1.ObjectMeta{Name: appName(a), Labels: labels},
				Spec: appsv1.DeploymentSpec{
					Replicas: ptr.To(int32(1)),
					Selector: &metav1.LabelSelector{MatchLabels: labels},
					Template: template,
				},
			}, metav1.CreateOptions{})
			if err != nil {
				return err
			}
			rsLabels := withLabel(labels, "pod-template-hash", hash)
			template.Labels = rsLabels
			rs, err := c.cs.AppsV1().ReplicaSets(ns).Create(ctx, &appsv1.ReplicaSet{
				ObjectMeta: metav1.ObjectMeta{
					Name: appName(a) + "-" + hash, Labels: rsLabels,
					Annotations:     map[string]string{"deployment.kubernetes.io/revision": "1"},
					OwnerReferences: []metav1.OwnerReference{controllerRef("Deployment", d.Name, d.UID)},
				},
				Spec: appsv1.ReplicaSetSpec{
					Replicas: ptr.To(int32(1)),
					Selector: &metav1.LabelSelector{MatchLabels: rsLabels},
					Template: template,
				},
			}, metav1.CreateOptions{})
			if err != nil {
				return err
			}
			c.rs = append(c.rs, rs)
		}
	}
	return nil
}

func controllerRef(kind, name string, uid types.UID) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: "apps/v1", Kind: kind, Name: name, UID: uid, Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}
}

func withLabel(in map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for k, v := range in {
		out[k] = v
	}
	return out
}

// podSpec is a typical application pod: one container with ports, env,
// resources, probes and a config volume.
func podSpec(app string) corev1.PodSpec {
	c := corev1.Container{
		Name:  app,
		Image: "registry.example/" + app + ":1.4.2",
		Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}, {Name: "metrics", ContainerPort: 9090}},
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
		},
		ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromString("http")}}},
		LivenessProbe:  &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http")}}},
		VolumeMounts:   []corev1.VolumeMount{{Name: "config", MountPath: "/etc/" + app}},
	}
	for i := range 8 {
		c.Env = append(c.Env, corev1.EnvVar{Name: fmt.Sprintf("SETTING_%d", i), Value: "value-" + strconv.Itoa(i)})
	}
	return corev1.PodSpec{
		Containers: []corev1.Container{c},
		Volumes:    []corev1.Volume{{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: app}}}}},
	}
}

// grow is growTo for a test: it logs the rate and ends the test on error.
func (c *cluster) grow(ctx context.Context, t *testing.T, n int) {
	t.Helper()
	start := time.Now()
	created, err := c.growTo(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	t.Logf("pods=%d: created %d pods in %s (%.0f/s)", n, created, took.Round(time.Second), float64(created)/took.Seconds())
}

// growTo creates pods, spread evenly over the ReplicaSets, until there
// are n, and returns how many it created.
func (c *cluster) growTo(ctx context.Context, n int) (int, error) {
	from := c.pods
	next := atomic.Int64{}
	next.Store(int64(from))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := c.createPod(ctx, i); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return 0, firstErr
	}
	c.pods = n
	return n - from, nil
}

// createPod creates pod i: pods go round-robin over the ReplicaSets, so
// every size has the same shape.
func (c *cluster) createPod(ctx context.Context, i int) error {
	rs := c.rs[i%len(c.rs)]
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:            fmt.Sprintf("%s-%06d", rs.Name, i/len(c.rs)),
			Namespace:       rs.Namespace,
			Labels:          rs.Spec.Template.Labels,
			OwnerReferences: []metav1.OwnerReference{controllerRef("ReplicaSet", rs.Name, rs.UID)},
		},
		Spec: rs.Spec.Template.Spec,
	}
	for attempt := 0; ; attempt++ {
		_, err := c.cs.CoreV1().Pods(rs.Namespace).Create(ctx, pod, metav1.CreateOptions{})
		switch {
		case err == nil || apierrors.IsAlreadyExists(err):
			return nil
		case attempt < 5 && (apierrors.IsTooManyRequests(err) || apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err)):
			time.Sleep(time.Duration(attempt+1) * 200 * time.Millisecond)
		default:
			return fmt.Errorf("creating pod %s/%s: %w", pod.Namespace, pod.Name, err)
		}
	}
}

// harness is what the scale benchmarks start from: the sizes asked for, a
// control plane with room for them and a fast client to it, and netguard,
// the baseline and peakrss built.
type harness struct {
	sizes                   []int
	cp                      *framework.ControlPlane
	cs                      kubernetes.Interface
	dir, netguard, baseline string
	peakrss                 string
}

// newHarness skips t unless NETGUARD_SCALE_PODS asks for sizes (target is
// the make target that sets it, for the message).
func newHarness(t *testing.T, target string) *harness {
	t.Helper()
	h := &harness{sizes: podCounts(t)}
	if len(h.sizes) == 0 {
		t.Skip("benchmark: set NETGUARD_SCALE_PODS (" + target + ")")
	}
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Fatalf("KUBEBUILDER_ASSETS is not set: %s", framework.AssetsHint)
	}
	var err error
	if h.cp, err = framework.StartControlPlaneWith(framework.ControlPlaneOptions{EtcdQuotaBytes: etcdQuota}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.cp.Stop() })
	h.dir = t.TempDir()
	if h.netguard, err = framework.BuildNetguard(h.dir); err != nil {
		t.Fatal(err)
	}
	h.baseline, h.peakrss = filepath.Join(h.dir, "baseline"), filepath.Join(h.dir, "peakrss")
	if out, err := exec.Command("go", "build", "-o", h.dir, "./baseline", "./peakrss").CombinedOutput(); err != nil {
		t.Fatalf("building the baseline and peakrss: %v\n%s", err, out)
	}
	cfg := rest.CopyConfig(h.cp.Config)
	cfg.QPS, cfg.Burst = 5000, 10000
	if h.cs, err = kubernetes.NewForConfig(cfg); err != nil {
		t.Fatal(err)
	}
	return h
}
