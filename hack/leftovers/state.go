package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// State is what the machine holds of the kinds a run could leave behind.
type State struct {
	// Netns are the names of the named network namespaces (/run/netns).
	Netns []string `json:"netns"`
	// NetnsConfig are the directories of /etc/netns, whose files `ip netns
	// exec` bind-mounts over /etc.
	NetnsConfig []string `json:"netnsConfig"`
	// Links are the root namespace's interfaces: "name" or "name@netns"
	// for a veth whose peer is in a named namespace.
	Links []string `json:"links"`
	// Addrs are the root namespace's addresses: "link address/prefix".
	Addrs []string `json:"addrs"`
	// Rules are iptables-save and ip6tables-save, one item per chain
	// (":CHAIN POLICY") and rule ("-A CHAIN ..."), each "FAMILY TABLE LINE".
	Rules []string `json:"rules"`
	// Mounts are the mount points.
	Mounts []string `json:"mounts"`
	// Sysctls are the values of the settings the tests and a node touch;
	// "" for one the kernel does not have (yet: a module loads on first use).
	Sysctls map[string]string `json:"sysctls"`
	// Temp are the entries of the run's temporary directory.
	Temp []string `json:"temp"`
}

// sysctls are the settings the tests and a node change.
var sysctls = []string{
	"net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding",
	"net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables",
	"net.ipv4.conf.all.route_localnet", "net.ipv4.ip_unprivileged_port_start",
	"net.ipv4.ip_local_port_range", "net.netfilter.nf_conntrack_max",
	"vm.overcommit_memory", "kernel.panic", "kernel.panic_on_oops",
}

// capture reads the machine's state; tmp is the run's temporary directory.
func capture(tmp string) State {
	s := State{
		Netns:       dirNames("/run/netns"),
		NetnsConfig: dirNames("/etc/netns"),
		Links:       links(),
		Addrs:       addrs(),
		Rules:       rules(),
		Mounts:      mounts(),
		Sysctls:     map[string]string{},
		Temp:        tempEntries(tmp),
	}
	for _, name := range sysctls {
		b, err := os.ReadFile(filepath.Join("/proc/sys", strings.ReplaceAll(name, ".", "/")))
		if err == nil {
			s.Sysctls[name] = strings.Join(strings.Fields(string(b)), " ")
		} else {
			s.Sysctls[name] = ""
		}
	}
	return s
}

func dirNames(dir string) []string {
	entries, _ := os.ReadDir(dir)
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// tempEntries lists tmp, without the Go tool's own build directories,
// which come and go with every go command.
func tempEntries(tmp string) []string {
	var out []string
	for _, name := range dirNames(tmp) {
		if !strings.HasPrefix(name, "go-build") && !strings.HasPrefix(name, "go-link-") {
			out = append(out, name)
		}
	}
	return out
}

func output(name string, args ...string) string {
	if _, err := exec.LookPath(name); err != nil {
		return ""
	}
	out, _ := exec.Command(name, args...).Output()
	return string(out)
}

// linkLine is a line of `ip -o link show`: "6: NAME@if2: <...> ... link-netns NS".
var linkLine = regexp.MustCompile(`^\d+: ([^:@]+)(?:@[^:]+)?:.*?(?: link-netns (\S+))?$`)

func links() []string {
	var out []string
	for _, line := range strings.Split(output("ip", "-o", "link", "show"), "\n") {
		m := linkLine.FindStringSubmatch(strings.TrimSpace(strings.ReplaceAll(line, "\\", " ")))
		if m == nil {
			continue
		}
		if m[2] != "" {
			out = append(out, m[1]+"@"+m[2])
		} else {
			out = append(out, m[1])
		}
	}
	return out
}

func addrs() []string {
	var out []string
	for _, line := range strings.Split(output("ip", "-o", "addr", "show"), "\n") {
		// "4: eth0    inet 192.0.2.2/24 brd ..."
		f := strings.Fields(line)
		if len(f) >= 4 && (f[2] == "inet" || f[2] == "inet6") {
			out = append(out, f[1]+" "+f[3])
		}
	}
	return out
}

// counters are iptables-save's packet and byte counts, which change all
// the time.
var counters = regexp.MustCompile(`\[\d+:\d+\]`)

func rules() []string {
	var out []string
	for _, family := range []string{"iptables", "ip6tables"} {
		out = append(out, parseSave(family, output(family+"-save"))...)
	}
	return out
}

// parseSave turns iptables-save output into items "FAMILY TABLE LINE", one
// per chain declaration and rule.
func parseSave(family, save string) []string {
	var out []string
	table := ""
	sc := bufio.NewScanner(bytes.NewBufferString(save))
	for sc.Scan() {
		line := strings.TrimSpace(counters.ReplaceAllString(sc.Text(), ""))
		switch {
		case strings.HasPrefix(line, "*"):
			table = line[1:]
		case strings.HasPrefix(line, ":"), strings.HasPrefix(line, "-A "):
			out = append(out, family+" "+table+" "+line)
		}
	}
	return out
}

func mounts() []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 {
			out = append(out, f[4])
		}
	}
	return out
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}
