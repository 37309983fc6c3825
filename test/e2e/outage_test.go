package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// Addresses of the outage topology (documentation ranges only):
//
//	client ns: 192.0.2.10  nginx (127.0.0.1:8080) + netguard dns-proxy (127.0.0.1:8053)
//	   │ veth
//	node ns:   192.0.2.1   router; DNATs the DNS "Service VIP" 203.0.113.10:53;
//	   │                   HTTP backend on 198.51.100.80:8081
//	   ├── veth 198.51.100.1 ─ dnsA ns: 198.51.100.2  dnsmasq
//	   └── veth 198.51.100.5 ─ dnsB ns: 198.51.100.6  dnsmasq
const (
	clientAddr  = "192.0.2.10"
	vip         = "203.0.113.10"
	dnsA        = "198.51.100.2"
	dnsB        = "198.51.100.6"
	backendAddr = "198.51.100.80"
	backendName = "backend.upstream.test"

	rounds     = 30                     // request rounds after the outage starts
	roundEvery = 500 * time.Millisecond // so the window is 15 s
)

// TestStaleConntrackOutage reproduces outage 1 of the design: nginx's
// resolver sends every query from one UDP socket, so conntrack keeps
// DNATing them to the DNS server they first reached. When that server
// vanishes silently and the Service moves to another, nginx resolving
// through the VIP keeps failing, while nginx resolving through netguard
// dns-proxy, which sends each query from a new source port, recovers.
func TestStaleConntrackOutage(t *testing.T) {
	requireNamespaces(t)
	tools := requireTools(t, "nginx", "dnsmasq", "iptables", "curl")
	dir := t.TempDir()
	netguard := buildNetguard(t)

	prefix := uniqueName()
	client := newNetns(t, prefix+"cli")
	node := newNetns(t, prefix+"node")
	serverA := newNetns(t, prefix+"a")
	serverB := newNetns(t, prefix+"b")
	node.link("to-cli", "192.0.2.1/24", client, clientAddr+"/24")
	node.link("to-a", "198.51.100.1/30", serverA, dnsA+"/30")
	node.link("to-b", "198.51.100.5/30", serverB, dnsB+"/30")
	node.ip("addr", "add", backendAddr+"/32", "dev", "lo")
	client.ip("route", "add", "default", "via", "192.0.2.1")
	serverA.ip("route", "add", "default", "via", "198.51.100.1")
	serverB.ip("route", "add", "default", "via", "198.51.100.5")
	node.exec("sysctl", "-qw", "net.ipv4.ip_forward=1")
	dnat := func(op, server string) {
		node.exec(tools["iptables"], "-t", "nat", op, "PREROUTING", "-d", vip+"/32", "-p", "udp", "--dport", "53", "-j", "DNAT", "--to-destination", server+":53")
	}
	dnat("-A", dnsA)

	dnsmasq := func(ns *netns, addr string) *process {
		return ns.start(filepath.Join(dir, ns.name+"-dnsmasq.log"), tools["dnsmasq"],
			"--keep-in-foreground", "--no-resolv", "--no-hosts", "--user=root", "--pid-file=",
			"--port=53", "--listen-address="+addr, "--bind-interfaces",
			"--address=/"+backendName+"/"+backendAddr, "--local-ttl=1")
	}
	serverAProc := dnsmasq(serverA, dnsA)
	dnsmasq(serverB, dnsB)
	backend := startNginx(t, node, tools["nginx"], filepath.Join(dir, "backend"), fmt.Sprintf(`
  server {
    listen %s:8081;
    location / { return 200 "backend\n"; }
  }`, backendAddr))
	forwarder := client.start(filepath.Join(dir, "dns-proxy.log"), netguard, "dns-proxy",
		"--listen", "127.0.0.1:8053", "--upstream", vip,
		"--timeout", "500ms", "--deadline", "1500ms", "--metrics-bind-address", "0")
	// Two locations, same backend name, different resolvers. The variable
	// in proxy_pass makes nginx resolve at request time (valid=1s).
	frontend := startNginx(t, client, tools["nginx"], filepath.Join(dir, "frontend"), fmt.Sprintf(`
  proxy_connect_timeout 2s;
  proxy_read_timeout 2s;
  server {
    listen 127.0.0.1:8080;
    location /vip {
      resolver %[1]s valid=1s ipv6=off;
      resolver_timeout 2s;
      set $backend_name %[2]s;
      proxy_pass http://$backend_name:8081;
    }
    location /sidecar {
      resolver 127.0.0.1:8053 valid=1s ipv6=off;
      resolver_timeout 2s;
      set $backend_name %[2]s;
      proxy_pass http://$backend_name:8081;
    }
  }`, vip, backendName))

	get := func(path string) string {
		out, _ := exec.Command("ip", "netns", "exec", client.name, tools["curl"], "-s", "-o", "/dev/null",
			"-w", "%{http_code}", "--max-time", "5", "http://127.0.0.1:8080"+path).Output()
		return string(out)
	}
	// Before the outage both paths work (a broken setup must not pass as
	// a reproduced outage).
	if !waitFor(15*time.Second, func() bool { return get("/vip") == "200" && get("/sidecar") == "200" }) {
		t.Fatalf("setup: the locations never answered 200\nfrontend:\n%s\nbackend:\n%s\ndns-proxy:\n%s",
			frontend.errorLog(), backend.errorLog(), forwarder.output())
	}
	for range 3 {
		if vipCode, sidecarCode := get("/vip"), get("/sidecar"); vipCode != "200" || sidecarCode != "200" {
			t.Fatalf("setup: /vip %s, /sidecar %s before the outage, want 200", vipCode, sidecarCode)
		}
	}

	// The outage: server A's packets vanish (a blackhole route sends no
	// ICMP, as for a lost node), then A dies and the Service moves to B.
	// conntrack keeps the entries that map existing 5-tuples to A.
	node.ip("route", "add", "blackhole", dnsA+"/32")
	serverAProc.stop()
	dnat("-D", dnsA)
	dnat("-I", dnsB)
	t.Logf("outage: %s blackholed and stopped, DNAT %s:53 moved to %s", dnsA, vip, dnsB)

	type result struct{ vip, sidecar string }
	results := make([]result, rounds)
	var wg sync.WaitGroup
	tick := time.NewTicker(roundEvery)
	for i := range rounds {
		wg.Go(func() { results[i].vip = get("/vip") })
		wg.Go(func() { results[i].sidecar = get("/sidecar") })
		<-tick.C
	}
	tick.Stop()
	wg.Wait()

	var vipOK, vipLateOK, sidecarOK, sidecarLateOK int
	var vipCodes, sidecarCodes []string
	for i, r := range results {
		vipCodes, sidecarCodes = append(vipCodes, r.vip), append(sidecarCodes, r.sidecar)
		if r.vip == "200" {
			vipOK++
			if i >= rounds/2 {
				vipLateOK++
			}
		}
		if r.sidecar == "200" {
			sidecarOK++
			if i >= rounds/2 {
				sidecarLateOK++
			}
		}
	}
	t.Logf("through the VIP:       %2d/%d OK (%d/%d in the second half) %v", vipOK, rounds, vipLateOK, rounds/2, vipCodes)
	t.Logf("through the dns-proxy: %2d/%d OK (%d/%d in the second half) %v", sidecarOK, rounds, sidecarLateOK, rounds/2, sidecarCodes)
	t.Logf("conntrack DNS entries in the node:\n%s", conntrackDNS(node))

	// The VIP path may serve a few requests from nginx's cache (valid=1s)
	// right after the switch, then must fail for the rest of the window:
	// otherwise the outage was not reproduced and the test proves nothing.
	if vipLateOK > 0 || vipOK > 4 {
		t.Errorf("the outage was not reproduced: nginx resolving through the VIP answered %d/%d (%d in the second half), want it to keep failing", vipOK, rounds, vipLateOK)
	}
	// The forwarder may lose a request while the switch happens, no more.
	if sidecarLateOK < rounds/2-1 || sidecarOK < rounds-3 {
		t.Errorf("nginx resolving through dns-proxy answered %d/%d (%d/%d in the second half), want it to recover", sidecarOK, rounds, sidecarLateOK, rounds/2)
	}
	if forwarder.exited() {
		t.Errorf("dns-proxy exited during the test:\n%s", forwarder.output())
	}
	if t.Failed() {
		t.Logf("frontend error log:\n%s\ndns-proxy log:\n%s", frontend.errorLog(), forwarder.output())
	}
}

// requireNamespaces skips the test when it cannot create network namespaces.
func requireNamespaces(t *testing.T) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("network namespace tests need Linux")
	}
	if os.Geteuid() != 0 {
		t.Skip("network namespace tests need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("network namespace tests need `ip` (iproute2)")
	}
	probe := uniqueName() + "probe"
	if out, err := exec.Command("ip", "netns", "add", probe).CombinedOutput(); err != nil {
		t.Skipf("`ip netns add` is not available here: %v: %s", err, strings.TrimSpace(string(out)))
	}
	_ = exec.Command("ip", "netns", "del", probe).Run()
}

// requireTools finds the programs the test runs, in PATH or /usr/sbin.
func requireTools(t *testing.T, names ...string) map[string]string {
	t.Helper()
	paths := map[string]string{}
	for _, name := range names {
		path, err := exec.LookPath(name)
		if err != nil {
			if _, statErr := os.Stat("/usr/sbin/" + name); statErr == nil {
				path, err = "/usr/sbin/"+name, nil
			}
		}
		if err != nil {
			t.Fatalf("this test needs %s installed (Debian package %s)", name, name)
		}
		paths[name] = path
	}
	return paths
}

// netguardBuild is the netguard binary built once for the package's tests.
var netguardBuild struct {
	once sync.Once
	path string
	err  error
}

// buildNetguard returns the netguard binary, building it on first use into
// a directory that TestMain removes.
func buildNetguard(t *testing.T) string {
	t.Helper()
	b := &netguardBuild
	b.once.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		b.path = filepath.Join(buildDir, "netguard")
		cmd := exec.Command(goTool, "build", "-o", b.path, "github.com/netguard-io/netguard/cmd/netguard")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("building netguard: %w\n%s", err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// nginx is an nginx started by startNginx.
type nginx struct {
	*process
	prefix string
}

func (n *nginx) errorLog() string {
	b, _ := os.ReadFile(filepath.Join(n.prefix, "error.log"))
	return string(b)
}

// startNginx runs nginx in the foreground inside ns with its own prefix
// directory, the http block's body given by httpBody.
func startNginx(t *testing.T, ns *netns, bin, prefix, httpBody string) *nginx {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(prefix, "tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	conf := writeFile(t, prefix, "nginx.conf", fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path %[1]s/tmp;
  proxy_temp_path %[1]s/tmp;
  fastcgi_temp_path %[1]s/tmp;
  uwsgi_temp_path %[1]s/tmp;
  scgi_temp_path %[1]s/tmp;
%[2]s
}
`, prefix, httpBody))
	p := ns.start(filepath.Join(prefix, "stdout.log"), bin, "-p", prefix, "-c", conf, "-e", filepath.Join(prefix, "error.log"))
	return &nginx{process: p, prefix: prefix}
}

// conntrackDNS lists the node's conntrack entries for DNS, the evidence
// of which backend each client 5-tuple is pinned to.
func conntrackDNS(node *netns) string {
	out, err := exec.Command("ip", "netns", "exec", node.name, "cat", "/proc/net/nf_conntrack").Output()
	if err != nil {
		return fmt.Sprintf("(not readable: %v)", err)
	}
	var lines []string
	for line := range strings.SplitSeq(string(out), "\n") {
		if strings.Contains(line, "dport=53 ") {
			lines = append(lines, strings.Join(strings.Fields(line), " "))
		}
	}
	if len(lines) > 12 {
		lines = append(lines[:12], fmt.Sprintf("... %d more", len(lines)-12))
	}
	return strings.Join(lines, "\n")
}
