package node

import (
	"fmt"
	"os"
	"path/filepath"
)

// The node's fixed names and addresses. Pods and Services use ranges that
// are neither private nor public and never leave the machine; the node's
// address sits on lo.
const (
	// BaseDir holds everything the node keeps on disk; RunDir its sockets.
	BaseDir = "/var/lib/netguard-node"
	RunDir  = "/run/netguard-node"

	NodeName     = "netguard-node"
	NodeIP       = "198.18.255.1"
	PodCIDR      = "198.18.0.0/24"
	PodGateway   = "198.18.0.1"
	ServiceCIDR  = "198.19.0.0/24"
	APIServiceIP = "198.19.0.1"
	// ClusterDNSIP is the kube-dns Service's ClusterIP, the kubelet's clusterDNS.
	ClusterDNSIP  = "198.19.0.10"
	ClusterDomain = "cluster.local"
	// Bridge connects the pods (bridge CNI plugin).
	Bridge = "ngnode0"
	// GuardChain in the filter table's FORWARD chain keeps pod traffic on
	// the bridge.
	GuardChain = "NETGUARD-NODE-FORWARD"

	APIPort      = 6443
	etcdPort     = 12379
	etcdPeerPort = 12380

	// NodeResolvConf is the node's resolv.conf as the kubelet reads it, with
	// a search domain leaked from DHCP.
	NodeResolvConf = "nameserver 192.0.2.53\nsearch example.org\n"

	adminToken = "netguard-node-admin"
	nodeToken  = "netguard-node-kubelet"
)

// ports are the TCP ports the node's parts listen on; all must be free.
var ports = []struct {
	addr string
	port int
	what string
}{
	{NodeIP, APIPort, "kube-apiserver"},
	{"127.0.0.1", etcdPort, "etcd"},
	{"127.0.0.1", etcdPeerPort, "etcd (peers)"},
	{NodeIP, 10250, "kubelet"},
	{"127.0.0.1", 10248, "kubelet healthz"},
	{"127.0.0.1", 10249, "kube-proxy metrics"},
	{"127.0.0.1", 10256, "kube-proxy healthz"},
	{"127.0.0.1", 10257, "kube-controller-manager"},
	{"127.0.0.1", 10259, "kube-scheduler"},
	{"127.0.0.1", certManagerMetricsPort, "cert-manager-controller metrics"},
	{"127.0.0.1", cainjectorMetricsPort, "cert-manager-cainjector metrics"},
}

// paths of the node's files.
type paths struct{}

func (paths) pki() string            { return filepath.Join(BaseDir, "pki") }
func (paths) logs() string           { return filepath.Join(BaseDir, "logs") }
func (paths) images() string         { return filepath.Join(BaseDir, "images") }
func (paths) tokens() string         { return filepath.Join(BaseDir, "tokens.csv") }
func (paths) admin() string          { return filepath.Join(BaseDir, "admin.kubeconfig") }
func (paths) kubeletKC() string      { return filepath.Join(BaseDir, "kubelet.kubeconfig") }
func (paths) kubeletConfig() string  { return filepath.Join(BaseDir, "kubelet.yaml") }
func (paths) proxyConfig() string    { return filepath.Join(BaseDir, "kube-proxy.yaml") }
func (paths) containerdConf() string { return filepath.Join(BaseDir, "containerd.toml") }
func (paths) cniConf() string        { return filepath.Join(BaseDir, "cni") }
func (paths) resolvConf() string     { return filepath.Join(BaseDir, "node-resolv.conf") }
func (paths) state() string          { return filepath.Join(BaseDir, "state.json") }

// ContainerdSocket is the node's containerd endpoint.
var ContainerdSocket = filepath.Join(RunDir, "containerd", "containerd.sock")

var dirs paths

func kubeconfig(token string, caFile string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: netguard-node
  cluster:
    server: https://%s:%d
    certificate-authority: %s
users:
- name: user
  user:
    token: %s
contexts:
- name: netguard-node
  context: {cluster: netguard-node, user: user}
current-context: netguard-node
`, NodeIP, APIPort, caFile, token)
}

// writeConfigs writes the token file, kubeconfigs and the configuration
// of containerd, the CNI plugin, the kubelet and kube-proxy.
func writeConfigs(p *pki) error {
	ca := p.path("ca.crt")
	files := map[string]string{
		dirs.tokens(): fmt.Sprintf("%s,admin,admin,system:masters\n%s,system:node:%s,kubelet,system:nodes\n",
			adminToken, nodeToken, NodeName),
		dirs.admin():      kubeconfig(adminToken, ca),
		dirs.kubeletKC():  kubeconfig(nodeToken, ca),
		dirs.resolvConf(): NodeResolvConf,
		// containerd 1.6 from Debian. restrict_oom_score_adj: root may lack
		// CAP_SYS_RESOURCE (in a VM or container), and then every sandbox
		// fails to start; cgroup v1 with cgroupfs; Debian's runc.
		dirs.containerdConf(): fmt.Sprintf(`version = 2
root = %q
state = %q
[grpc]
  address = %q
[plugins."io.containerd.internal.v1.opt"]
  path = %q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "/usr/sbin/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %q
`, filepath.Join(BaseDir, "containerd"), filepath.Join(RunDir, "containerd"), ContainerdSocket,
			filepath.Join(BaseDir, "containerd-opt"), PauseImage, dirs.cniConf()),
		// Pods get routes to the pod and Service ranges only: no default
		// route, nothing leaves the machine.
		filepath.Join(dirs.cniConf(), "10-netguard-node.conflist"): fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": "netguard-node",
  "plugins": [{
    "type": "bridge",
    "bridge": %q,
    "isGateway": true,
    "ipMasq": false,
    "hairpinMode": true,
    "ipam": {
      "type": "host-local",
      "dataDir": %q,
      "ranges": [[{"subnet": %q, "gateway": %q}]],
      "routes": [{"dst": %q}, {"dst": %q}]
    }
  }]
}
`, Bridge, filepath.Join(BaseDir, "cni-ipam"), PodCIDR, PodGateway, PodCIDR, ServiceCIDR),
		// cgroup v1 here: failCgroupV1 off, cgroupfs, no QoS cgroups, no
		// node allocatable enforcement. Eviction and image GC off: the
		// images are imported, not pulled, and cannot come back.
		dirs.kubeletConfig(): fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
containerRuntimeEndpoint: unix://%s
address: %s
healthzBindAddress: 127.0.0.1
healthzPort: 10248
readOnlyPort: 0
clusterDNS: [%s]
clusterDomain: %s
resolvConf: %s
podLogsDir: %s
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: %s}
authorization:
  mode: AlwaysAllow
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "1%%"
  nodefs.inodesFree: "1%%"
  imagefs.available: "1%%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
maxPods: 110
`, ContainerdSocket, NodeIP, ClusterDNSIP, ClusterDomain, dirs.resolvConf(), filepath.Join(BaseDir, "pod-logs"), ca),
		// iptables mode; conntrack limits zero so that kube-proxy changes no
		// sysctl; everything on loopback.
		dirs.proxyConfig(): fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection:
  kubeconfig: %s
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
clusterCIDR: %s
hostnameOverride: %s
conntrack:
  maxPerCore: 0
  min: 0
iptables:
  localhostNodePorts: false
nodePortAddresses: ["%s/32"]
`, dirs.admin(), PodCIDR, NodeName, NodeIP),
	}
	for path, content := range files {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			return err
		}
	}
	return nil
}
