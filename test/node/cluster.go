// Package node runs a real single-node Kubernetes cluster on this machine
// (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet,
// kube-proxy in iptables mode, containerd, runc and the bridge CNI plugin)
// with CoreDNS, cert-manager (its controller and cainjector, as host
// processes) and netguard installed from its Helm chart with the chart's
// defaults (TLS from cert-manager), and takes it
// all down again without leaving anything behind. `make node-up` and
// `make node-down` use it, and so do the tests in test/node/e2e.
//
// Everything stays on the machine: pods live in 198.18.0.0/24 on a bridge,
// Services in 198.19.0.0/24, the node's address 198.18.255.1 sits on lo,
// pods have no default route, and a FORWARD guard chain drops whatever
// would leave the bridge. One node runs at a time.
package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Options say where the node's parts come from.
type Options struct {
	// Assets holds kubelet, kube-proxy, kube-controller-manager,
	// kube-scheduler, kube-apiserver, etcd and coredns
	// (hack/node-assets.sh prints it).
	Assets string
	// CertManager holds cert-manager-controller, cert-manager-cainjector
	// and crds/ (hack/cert-manager.sh prints it).
	CertManager string
	// Helm is the helm binary.
	Helm string
	// Netguard is a static netguard binary for the image; Version its
	// version (the image tag and the chart's image.tag).
	Netguard, Version string
	// Progress, if set, is told what is happening.
	Progress func(string)
	// KeepOnFailure leaves a node that failed to come up as it is, to be
	// looked at, instead of taking it down.
	KeepOnFailure bool
	// OwnedByCaller says the calling process takes the node down when it
	// ends (a test run). If it dies first (killed, machine restarted), the
	// next Up takes that node down instead of refusing to start.
	OwnedByCaller bool
}

// Cluster is a running node.
type Cluster struct {
	// Kubeconfig is an admin kubeconfig file.
	Kubeconfig string
	Config     *rest.Config
	Client     kubernetes.Interface
	// Dynamic reaches the resources of CRDs (cert-manager's).
	Dynamic dynamic.Interface
	// Warnings are the API server's warnings to Client.
	Warnings *Warnings
	// NetguardImage is the image netguard's chart runs; NetguardNextImage
	// is the same netguard under another tag and version, for upgrades that
	// change the image.
	NetguardImage, NetguardNextImage string
	opts                             Options
	st                               *state
}

// state is what Down needs to take the node apart, written to disk as the
// node comes up so that `make node-down` finds it and a node that failed
// half way is taken down as well.
type state struct {
	Procs []proc `json:"procs"`
	// Owner is the process that takes the node down, when one does.
	Owner *proc `json:"owner,omitempty"`
	// Sysctls are the values before the node changed them.
	Sysctls map[string]string `json:"sysctls"`
	// NetnsBefore are the network namespaces that existed before.
	NetnsBefore []string `json:"netnsBefore"`
	// CreatedDirs did not exist before the node made them.
	CreatedDirs []string `json:"createdDirs"`
}

// loadState reads the state Up wrote; os.ErrNotExist when there is none.
func loadState() (*state, error) {
	b, err := os.ReadFile(dirs.state())
	if err != nil {
		return nil, err
	}
	st := &state{}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("%s: %w", dirs.state(), err)
	}
	return st, nil
}

// abandoned reports whether no one will take the node down: its owner has
// died, or none of its processes runs any more.
func (s *state) abandoned() bool {
	if s.Owner != nil && !s.Owner.alive() {
		return true
	}
	return !slices.ContainsFunc(s.Procs, proc.alive)
}

func (s *state) save() error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(dirs.state(), b, 0o600)
}

// sysctls are the settings the kubelet and the bridge plugin change; they
// are put back by Down.
var sysctls = []string{
	"vm.overcommit_memory", "vm.panic_on_oom", "kernel.panic", "kernel.panic_on_oops",
	"kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes",
	"net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding",
	"net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables",
	"net.ipv4.conf.all.route_localnet",
}

// dirsOutside are directories the node's parts create outside BaseDir and
// RunDir when they are missing; Down removes those it created.
var dirsOutside = []string{"/var/lib/cni", "/etc/cni", "/opt/cni", "/var/log/pods", "/var/log/containers", "/var/run/netns"}

// Up starts a node. It refuses when not root, when a node is up already,
// or when a port it needs is taken. On failure it takes down what it
// started and returns the error with the log of the part that failed.
func Up(ctx context.Context, opts Options) (c *Cluster, err error) {
	if os.Geteuid() != 0 {
		return nil, errNotRoot
	}
	if opts.CertManager == "" {
		return nil, errors.New("the node needs cert-manager: Options.CertManager is the directory hack/cert-manager.sh prints")
	}
	progress := opts.Progress
	if progress == nil {
		progress = func(string) {}
	}
	if err := takeDownAbandoned(progress); err != nil {
		return nil, err
	}
	if err := preflight(); err != nil {
		return nil, err
	}
	st := &state{Sysctls: map[string]string{}}
	if opts.OwnedByCaller {
		self, err := startTime(os.Getpid())
		if err != nil {
			return nil, err
		}
		st.Owner = &proc{Name: "owner", PID: os.Getpid(), Start: self}
	}
	for _, d := range dirsOutside {
		if _, err := os.Stat(d); errors.Is(err, os.ErrNotExist) {
			st.CreatedDirs = append(st.CreatedDirs, d)
		}
	}
	for _, s := range sysctls {
		if v, err := readSysctl(s); err == nil {
			st.Sysctls[s] = v
		}
	}
	st.NetnsBefore = netnsList()
	for _, d := range []string{BaseDir, RunDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	if err := st.save(); err != nil {
		return nil, err
	}
	// For kube-proxy --cleanup when the node is taken down.
	if err := os.WriteFile(filepath.Join(BaseDir, "assets"), []byte(opts.Assets), 0o644); err != nil {
		return nil, err
	}
	c = &Cluster{Kubeconfig: dirs.admin(), opts: opts, st: st,
		NetguardImage:     "ghcr.io/netguard-io/netguard:" + opts.Version,
		NetguardNextImage: "ghcr.io/netguard-io/netguard:" + opts.Version + nextSuffix,
	}
	defer func() {
		if err != nil && !opts.KeepOnFailure {
			if derr := Down(); derr != nil {
				err = fmt.Errorf("%w; taking the node down: %v", err, derr)
			}
		}
	}()
	bin := func(name string) string { return filepath.Join(opts.Assets, name) }

	progress("certificates, configuration and images")
	p, err := newPKI(dirs.pki())
	if err != nil {
		return nil, err
	}
	if err := writeConfigs(p); err != nil {
		return nil, err
	}
	archives, err := buildImages(dirs.images(), opts.Netguard, c.NetguardImage, opts.Version)
	if err != nil {
		return nil, err
	}

	progress("node address, bridge guard")
	if err := setupNetwork(); err != nil {
		return nil, err
	}

	progress("etcd")
	if err := c.start("etcd", bin("etcd"),
		"--name=netguard-node", "--data-dir="+filepath.Join(BaseDir, "etcd"),
		fmt.Sprintf("--listen-client-urls=http://127.0.0.1:%d", etcdPort),
		fmt.Sprintf("--advertise-client-urls=http://127.0.0.1:%d", etcdPort),
		fmt.Sprintf("--listen-peer-urls=http://127.0.0.1:%d", etcdPeerPort),
		fmt.Sprintf("--initial-advertise-peer-urls=http://127.0.0.1:%d", etcdPeerPort),
		fmt.Sprintf("--initial-cluster=netguard-node=http://127.0.0.1:%d", etcdPeerPort),
	); err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, fmt.Sprintf("http://127.0.0.1:%d/health", etcdPort), "etcd"); err != nil {
		return nil, err
	}

	progress("kube-apiserver")
	if err := c.start("kube-apiserver", bin("kube-apiserver"),
		fmt.Sprintf("--etcd-servers=http://127.0.0.1:%d", etcdPort),
		"--bind-address="+NodeIP, "--advertise-address="+NodeIP, fmt.Sprintf("--secure-port=%d", APIPort),
		"--service-cluster-ip-range="+ServiceCIDR,
		"--endpoint-reconciler-type=none",
		"--kubelet-preferred-address-types=InternalIP",
		"--authorization-mode=Node,RBAC",
		"--token-auth-file="+dirs.tokens(),
		"--client-ca-file="+p.path("ca.crt"),
		"--tls-cert-file="+p.path("apiserver.crt"), "--tls-private-key-file="+p.path("apiserver.key"),
		"--kubelet-client-certificate="+p.path("apiserver-kubelet-client.crt"),
		"--kubelet-client-key="+p.path("apiserver-kubelet-client.key"),
		"--service-account-issuer=https://kubernetes.default.svc."+ClusterDomain,
		"--service-account-key-file="+p.path("sa.pub"),
		"--service-account-signing-key-file="+p.path("sa.key"),
		"--profiling=false",
	); err != nil {
		return nil, err
	}
	if c.Config, err = clientcmd.BuildConfigFromFlags("", dirs.admin()); err != nil {
		return nil, err
	}
	c.Config.QPS, c.Config.Burst = 50, 100
	c.Warnings = &Warnings{}
	c.Config.WarningHandler = c.Warnings
	if c.Client, err = kubernetes.NewForConfig(c.Config); err != nil {
		return nil, err
	}
	if c.Dynamic, err = dynamic.NewForConfig(c.Config); err != nil {
		return nil, err
	}
	if err := c.waitAPIServer(ctx); err != nil {
		return nil, err
	}
	if err := c.apiServerEndpoints(ctx); err != nil {
		return nil, err
	}

	progress("kube-controller-manager, kube-scheduler")
	if err := c.start("kube-controller-manager", bin("kube-controller-manager"),
		"--kubeconfig="+dirs.admin(), "--leader-elect=false", "--bind-address=127.0.0.1",
		"--service-account-private-key-file="+p.path("sa.key"), "--root-ca-file="+p.path("ca.crt"),
		"--use-service-account-credentials=false", "--allocate-node-cidrs=false",
		"--profiling=false",
	); err != nil {
		return nil, err
	}
	if err := c.start("kube-scheduler", bin("kube-scheduler"),
		"--kubeconfig="+dirs.admin(), "--leader-elect=false", "--bind-address=127.0.0.1", "--profiling=false",
	); err != nil {
		return nil, err
	}

	progress("cert-manager (CRDs, controller, cainjector)")
	if err := c.startCertManager(ctx); err != nil {
		return nil, err
	}

	progress("containerd, images")
	if err := c.start("containerd", "/usr/bin/containerd", "--config", dirs.containerdConf()); err != nil {
		return nil, err
	}
	if err := waitFor(ctx, 30*time.Second, "containerd", func() error {
		return run("ctr", "--address", ContainerdSocket, "version")
	}); err != nil {
		return nil, err
	}
	if err := c.ImportImages(archives...); err != nil {
		return nil, err
	}

	progress("kubelet, kube-proxy")
	if err := c.start("kubelet", bin("kubelet"),
		"--config="+dirs.kubeletConfig(), "--kubeconfig="+dirs.kubeletKC(),
		"--hostname-override="+NodeName, "--node-ip="+NodeIP,
		"--root-dir="+filepath.Join(BaseDir, "kubelet"), "--cert-dir="+filepath.Join(BaseDir, "kubelet-pki"),
	); err != nil {
		return nil, err
	}
	if err := c.start("kube-proxy", bin("kube-proxy"), "--config="+dirs.proxyConfig()); err != nil {
		return nil, err
	}
	if err := c.waitNodeReady(ctx); err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, "http://127.0.0.1:10256/healthz", "kube-proxy"); err != nil {
		return nil, err
	}

	progress("CoreDNS (2 replicas behind kube-system/kube-dns " + ClusterDNSIP + ")")
	if err := c.installCoreDNS(ctx); err != nil {
		return nil, err
	}

	progress("netguard (helm install charts/netguard, 2 replicas, TLS from cert-manager)")
	if err := c.Helm(ctx, "install"); err != nil {
		return nil, err
	}
	if err := c.WaitNetguard(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// start launches a component and records it.
func (c *Cluster) start(name string, args ...string) error {
	p, err := launch(name, args...)
	if err != nil {
		return err
	}
	c.st.Procs = append(c.st.Procs, p)
	return c.st.save()
}

// takeDownAbandoned takes down a node that an earlier run started and
// could not take down itself: a test run that was killed, or a node whose
// processes are all gone (a restarted machine). A node someone still
// runs is left alone; preflight refuses to start over it.
func takeDownAbandoned(progress func(string)) error {
	st, err := loadState()
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil || !st.abandoned() {
		return nil // preflight names the state file
	}
	progress("over a node an earlier run left behind: taking it down first (state in " + dirs.state() + ")")
	if err := Down(); err != nil {
		return fmt.Errorf("a node an earlier run left behind: %w", err)
	}
	return nil
}

// preflight refuses to start over a node that is up, a port in use, or
// another cluster's iptables chains.
func preflight() error {
	if _, err := os.Stat(dirs.state()); err == nil {
		return fmt.Errorf("a node is up already (or was not taken down): run `make node-down` first (state in %s)", dirs.state())
	}
	listening, err := listeningPorts()
	if err != nil {
		return err
	}
	for _, p := range ports {
		for _, addr := range []string{p.addr, "0.0.0.0", "::", "*"} {
			if listening[net.JoinHostPort(addr, strconv.Itoa(p.port))] {
				return fmt.Errorf("port %d (%s) is in use: stop what listens on it, or run `make node-down` if it is an earlier node", p.port, p.what)
			}
		}
	}
	if out, err := output("iptables-save"); err == nil && strings.Contains(out, ":KUBE-") {
		return errors.New("iptables holds KUBE-* chains: another Kubernetes node runs on this machine, or one was not taken down (`make node-down`)")
	}
	if _, err := net.InterfaceByName(Bridge); err == nil {
		return fmt.Errorf("interface %s exists: run `make node-down`", Bridge)
	}
	return nil
}

// listeningPorts are the TCP addresses something listens on.
func listeningPorts() (map[string]bool, error) {
	out, err := output("ss", "-Htln")
	if err != nil {
		return nil, err
	}
	m := map[string]bool{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		host, port, err := net.SplitHostPort(f[3])
		if err != nil {
			continue
		}
		host = strings.Trim(strings.SplitN(host, "%", 2)[0], "[]")
		m[net.JoinHostPort(host, port)] = true
	}
	return m, nil
}

func readSysctl(name string) (string, error) {
	b, err := os.ReadFile("/proc/sys/" + strings.ReplaceAll(name, ".", "/"))
	return strings.TrimSpace(string(b)), err
}

func writeSysctl(name, value string) error {
	return os.WriteFile("/proc/sys/"+strings.ReplaceAll(name, ".", "/"), []byte(value), 0o644)
}

func netnsList() []string {
	entries, _ := os.ReadDir("/var/run/netns")
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// setupNetwork puts the node address on lo and the FORWARD guard in place:
// traffic may move between pods on the bridge, never off it.
func setupNetwork() error {
	if err := run("ip", "addr", "add", NodeIP+"/32", "dev", "lo"); err != nil && !strings.Contains(err.Error(), "File exists") {
		return err
	}
	for _, args := range [][]string{
		{"-N", GuardChain},
		{"-A", GuardChain, "-i", Bridge, "-o", Bridge, "-j", "ACCEPT"},
		{"-A", GuardChain, "-i", Bridge, "-j", "DROP"},
		{"-A", GuardChain, "-o", Bridge, "-j", "DROP"},
		{"-I", "FORWARD", "1", "-j", GuardChain},
	} {
		if err := run(append([]string{"iptables", "-w"}, args...)...); err != nil {
			return err
		}
	}
	return nil
}

func waitFor(ctx context.Context, limit time.Duration, what string, check func() error) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var last error
	for {
		if last = check(); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waited %s for %s: %v", limit, what, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func waitHTTP(ctx context.Context, url, what string) error {
	client := http.Client{Timeout: 2 * time.Second}
	return waitFor(ctx, 60*time.Second, what, func() error {
		resp, err := client.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", url, resp.Status)
		}
		return nil
	})
}

// Procs are the running components, by name.
func (c *Cluster) Procs() map[string]int {
	m := map[string]int{}
	for _, p := range c.st.Procs {
		m[p.Name] = p.PID
	}
	return m
}
