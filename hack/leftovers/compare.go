package main

import (
	"fmt"
	"slices"
	"strings"
)

// What a run makes, by name. The check judges only these: a namespace,
// chain, mount or file of any other name belongs to another program (or to
// the system: iproute2 mounts /run/netns for whoever adds the first
// namespace; the kernel creates iptables' built-in tables empty on first
// use), and is neither blamed on the run nor expected back.
var (
	// ownNetns are the prefixes of the network namespaces the tests create
	// (ng-) and of the pod sandboxes of the node's containerd (cni-).
	ownNetns = []string{"ng-", "cni-"}
	// ownLinks are the root namespace's interfaces a run creates: the
	// node's bridge, and test links; veths whose peer is in an own
	// namespace count too.
	ownLinks = []string{"ngnode", "ng-"}
	// ownChains are the iptables chains of the node: kube-proxy's and the
	// kubelet's (KUBE-), its guard (NETGUARD-), the CNI plugins' (CNI-).
	ownChains = []string{"KUBE-", "NETGUARD-", "CNI-"}
	// ownAddrs are the address ranges the tests and the node use.
	ownAddrs = []string{"198.18.", "198.19.", "192.0.2.", "198.51.100.", "203.0.113.", "2001:db8:"}
	// ownMounts are the directories under which a run mounts (the node's
	// data and run directories; the run's temporary directory is added).
	ownMounts = []string{"/var/lib/netguard-node", "/run/netguard-node"}
)

// Finding is one thing the run left behind, or took away.
type Finding struct {
	Kind, What string
	Removed    bool
}

func (f Finding) String() string {
	if f.Removed {
		return "removed " + f.Kind + ": " + f.What
	}
	return "leftover " + f.Kind + ": " + f.What
}

// compare returns what the run, whose temporary directory is tmp, left
// behind between before and after: objects of its own names that are new
// (or gone: the run removed what it did not make), settings it changed,
// and every entry of its temporary directory.
func compare(before, after State, tmp string) []Finding {
	var out []Finding
	diff := func(kind string, b, a []string, own func(string) bool) {
		for _, x := range a {
			if own(x) && !slices.Contains(b, x) {
				out = append(out, Finding{Kind: kind, What: x})
			}
		}
		for _, x := range b {
			if own(x) && !slices.Contains(a, x) {
				out = append(out, Finding{Kind: kind, What: x, Removed: true})
			}
		}
	}
	ownNetnsName := func(n string) bool { return hasPrefix(n, ownNetns) }
	diff("network namespace", before.Netns, after.Netns, ownNetnsName)
	diff("network namespace file", before.NetnsConfig, after.NetnsConfig, ownNetnsName)
	diff("network interface", before.Links, after.Links, ownLink)
	diff("address", before.Addrs, after.Addrs, func(a string) bool {
		_, addr, _ := strings.Cut(a, " ")
		return hasPrefix(addr, ownAddrs)
	})
	diff("iptables rule", ruleLines(before.Rules), ruleLines(after.Rules), ownRule)
	out = append(out, policyChanges(before.Rules, after.Rules)...)
	mountDirs := append(slices.Clone(ownMounts), tmp)
	for _, p := range ownNetns {
		mountDirs = append(mountDirs, "/run/netns/"+p)
	}
	diff("mount", before.Mounts, after.Mounts, func(m string) bool { return under(m, mountDirs) })
	for _, name := range sysctls {
		// A setting the kernel gained during the run came with a module
		// loaded on first use; only a value that changed was changed.
		if b, a := before.Sysctls[name], after.Sysctls[name]; b != "" && a != "" && a != b {
			out = append(out, Finding{Kind: "sysctl", What: fmt.Sprintf("%s = %s (was %s)", name, a, b)})
		}
	}
	for _, e := range after.Temp {
		if !slices.Contains(before.Temp, e) {
			out = append(out, Finding{Kind: "temporary file", What: e})
		}
	}
	return out
}

func hasPrefix(s string, prefixes []string) bool {
	return slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(s, p) })
}

// under reports whether path is one of dirs or below one; a dir ending in
// "-" or "/" is a name prefix.
func under(path string, dirs []string) bool {
	return slices.ContainsFunc(dirs, func(d string) bool {
		if strings.HasSuffix(d, "-") || strings.HasSuffix(d, "/") {
			return strings.HasPrefix(path, d)
		}
		return path == d || strings.HasPrefix(path, d+"/")
	})
}

// ownLink: "name" or "name@netns".
func ownLink(l string) bool {
	name, netns, _ := strings.Cut(l, "@")
	return hasPrefix(name, ownLinks) || hasPrefix(netns, ownNetns)
}

// ruleLines are the rule items and the user chains' declarations; the
// built-in chains' policy lines are judged by policyChanges.
func ruleLines(items []string) []string {
	var out []string
	for _, it := range items {
		if _, policy := builtinPolicy(it); policy == "" {
			out = append(out, it)
		}
	}
	return out
}

// builtinPolicy splits "FAMILY TABLE :CHAIN POLICY" of a built-in chain
// into its key and policy; policy is "" for anything else (a user chain's
// policy is "-").
func builtinPolicy(item string) (key, policy string) {
	f := strings.Fields(item)
	if len(f) < 4 || !strings.HasPrefix(f[2], ":") || f[3] == "-" {
		return "", ""
	}
	return f[0] + " " + f[1] + " " + f[2][1:], f[3]
}

// ownRule: a chain of own name, a rule in or to one, or one that names an
// own address or netguard.
func ownRule(item string) bool {
	f := strings.Fields(item)
	if len(f) < 3 {
		return false
	}
	line := strings.Join(f[2:], " ")
	words := f[2:]
	if strings.HasPrefix(words[0], ":") {
		return hasPrefix(words[0][1:], ownChains)
	}
	for i, w := range words {
		if (w == "-A" || w == "-j" || w == "-g") && i+1 < len(words) && hasPrefix(words[i+1], ownChains) {
			return true
		}
	}
	return containsAny(line, ownAddrs) || strings.Contains(strings.ToLower(line), "netguard")
}

func containsAny(s string, subs []string) bool {
	return slices.ContainsFunc(subs, func(sub string) bool { return strings.Contains(s, sub) })
}

// policyChanges reports the built-in chains whose policy the run changed. A
// table that did not exist before had every built-in chain at ACCEPT: the
// kernel creates it so on first use, which changes nothing.
func policyChanges(before, after []string) []Finding {
	was := map[string]string{}
	for _, it := range before {
		if k, p := builtinPolicy(it); p != "" {
			was[k] = p
		}
	}
	var out []Finding
	for _, it := range after {
		k, p := builtinPolicy(it)
		if p == "" {
			continue
		}
		prev, ok := was[k]
		if !ok {
			prev = "ACCEPT"
		}
		if p != prev {
			out = append(out, Finding{Kind: "iptables policy", What: fmt.Sprintf("%s %s (was %s)", k, p, prev)})
		}
	}
	return out
}
