// Package resolvers checks netguard's pod DNS rules against real stub
// resolvers: glibc's getaddrinfo (getent), musl's (a static musl-gcc
// build, as in Alpine images), Go's own and BIND's dig +search. Each runs
// in a network namespace (ip netns exec bind-mounts the resolv.conf under
// test) whose only DNS server stands in for the cluster DNS and counts
// questions. The resolv.conf files are the ones `netguard resolv` renders
// for a pod, with and without netguard, on a node that leaked a search
// domain.
package resolvers

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// goLookupEnv makes the test binary look a name up with Go's resolver and
// exit, instead of running tests: "A NAME" or "SRV NAME".
const goLookupEnv = "NETGUARD_TEST_GO_LOOKUP"

func TestMain(m *testing.M) {
	if q := os.Getenv(goLookupEnv); q != "" {
		os.Exit(goLookup(q))
	}
	os.Exit(m.Run())
}

// goLookup looks a name up with Go's resolver (GODEBUG=netdns=go) and
// prints what it found; exit status 2 when it found nothing.
func goLookup(q string) int {
	qtype, name, _ := strings.Cut(q, " ")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r := &net.Resolver{PreferGo: true}
	if qtype == "SRV" {
		_, srvs, err := r.LookupSRV(ctx, "", "", name)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		for _, s := range srvs {
			fmt.Printf("SRV %s %d\n", s.Target, s.Port)
		}
		return 0
	}
	addrs, err := r.LookupHost(ctx, name)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	fmt.Println(strings.Join(addrs, "\n"))
	return 0
}

// The cluster in these tests: the pod runs in namespace team on a node
// whose resolv.conf leaked `search example.org`.
const (
	podNamespace   = "team"
	nodeResolvConf = "nameserver 192.0.2.53\nsearch example.org\n"
)

// name is one name a pod looks up, relative to namespace team.
type name struct {
	text  string
	qtype uint16
}

// names are the shapes pods use: a Service in their namespace, in another
// (svc.ns, svc.ns.svc), a StatefulSet pod (pod.svc.ns.svc), full names
// with and without the trailing dot, external names of 1 to 3 dots, and
// the SRV name Kubernetes' DNS conformance tests probe (4 dots).
var names = []name{
	{"web", dns.TypeA},
	{"db.data", dns.TypeA},
	{"db.data.svc", dns.TypeA},
	{"kubernetes.default.svc", dns.TypeA},
	{"web-0.web.team.svc", dns.TypeA},
	{"db.data.svc.cluster.local", dns.TypeA},
	{"db.data.svc.cluster.local.", dns.TypeA},
	{"example.net", dns.TypeA},
	{"api.example.net", dns.TypeA},
	{"eu.api.example.net", dns.TypeA},
	{"eu.api.example.net.", dns.TypeA},
	{"_http._tcp.web.team.svc", dns.TypeSRV},
}

func (n name) String() string {
	if n.qtype == dns.TypeA {
		return n.text
	}
	return n.text + " " + dns.TypeToString[n.qtype]
}

func newClusterDNS() *clusterDNS {
	return &clusterDNS{
		a: map[string]string{
			"web.team.svc.cluster.local.":           "192.0.2.21",
			"web-0.web.team.svc.cluster.local.":     "192.0.2.30",
			"db.data.svc.cluster.local.":            "192.0.2.22",
			"kubernetes.default.svc.cluster.local.": "192.0.2.1",
			"example.net.":                          "198.51.100.1",
			"api.example.net.":                      "198.51.100.2",
			"eu.api.example.net.":                   "198.51.100.3",
		},
		srv: map[string]string{"_http._tcp.web.team.svc.cluster.local.": "web.team.svc.cluster.local."},
	}
}

// podShape is a pod as netguard sees it at admission.
type podShape struct {
	name, yaml string
	// glibcDeclared: the image or an annotation says glibc, so netguard
	// lowers ndots; resolvers that never search a name with ndots dots
	// (musl, dig +search) lose names there, by that declaration.
	glibcDeclared bool
}

var shapes = []podShape{
	{name: "Alpine pod", yaml: podYAML("alpine:3.20", "")},
	{name: "Debian pod", yaml: podYAML("debian:12", ""), glibcDeclared: true},
	{name: "unclassified image", yaml: podYAML("ghcr.io/example/app:1", "")},
	{name: "annotated glibc", yaml: podYAML("ghcr.io/example/app:1", "glibc"), glibcDeclared: true},
}

func podYAML(image, resolver string) string {
	y := "apiVersion: v1\nkind: Pod\nmetadata:\n  name: app\n"
	if resolver != "" {
		y += "  annotations:\n    netguard.io/resolver: " + resolver + "\n"
	}
	return y + "spec:\n  containers:\n  - name: app\n    image: " + image + "\n"
}

// outcome is one resolver's lookups of every name under one resolv.conf.
type outcome struct {
	found   map[string]bool
	queries map[string]int
}

// TestNamesKeptForEveryResolver: for every pod shape and every resolver,
// each name that resolves with the kubelet's resolv.conf resolves with
// netguard's, with no more questions in all. Where the pod is declared
// glibc (its image, or an annotation), only resolvers that search like
// glibc (glibc, Go) are held to it: netguard lowers ndots there, which musl
// and dig +search would not survive, and the table shows what they lose.
func TestNamesKeptForEveryResolver(t *testing.T) {
	requireRoot(t)
	bin := buildNetguard(t)
	server := newClusterDNS()
	ns := newNetns(t, server)
	rs := resolvers(t)

	var report strings.Builder
	fmt.Fprintf(&report, "| pod | resolv.conf (netguard) | resolver | names kept | queries per lookup, kubelet → netguard | api.example.net |\n| --- | --- | --- | --- | --- | --- |\n")
	for _, shape := range shapes {
		before, after := render(t, bin, shape.yaml, true), render(t, bin, shape.yaml, false)
		for _, r := range rs {
			ns.setResolvConf(before)
			was := lookUpAll(ns, r, server)
			ns.setResolvConf(after)
			now := lookUpAll(ns, r, server)

			var kept, resolvable, qBefore, qAfter, lookups int
			var lost []string
			for _, n := range names {
				key := n.String()
				if _, ok := was.found[key]; !ok {
					continue // this resolver has no such lookup
				}
				lookups++
				qBefore += was.queries[key]
				qAfter += now.queries[key]
				if !was.found[key] {
					continue
				}
				resolvable++
				if now.found[key] {
					kept++
				} else {
					lost = append(lost, key)
				}
			}
			held := !shape.glibcDeclared || r.name == "glibc" || r.name == "go"
			if held && len(lost) > 0 {
				t.Errorf("%s, %s: names that resolve with the kubelet's resolv.conf fail with netguard's: %s\nkubelet:\n%s\nnetguard:\n%s", shape.name, r.name, strings.Join(lost, ", "), before, after)
			}
			// With ndots:5 kept, no name may cost a question more. A lower
			// ndots trades: a cluster name with that many dots is first
			// asked as an absolute name (2 questions more), an external one
			// skips the search list (8 fewer): the mean may not rise.
			ndotsKept := strings.Contains(after, "ndots:5")
			for _, n := range names {
				key := n.String()
				if held && ndotsKept && now.queries[key] > was.queries[key] {
					t.Errorf("%s, %s, %s: %d questions with netguard, %d without", shape.name, r.name, key, now.queries[key], was.queries[key])
				}
			}
			if held && qAfter > qBefore {
				t.Errorf("%s, %s: %d questions for all names with netguard, %d without", shape.name, r.name, qAfter, qBefore)
			}
			lostText := ""
			if len(lost) > 0 {
				lostText = " (lost: " + strings.Join(lost, ", ") + ")"
			}
			fmt.Fprintf(&report, "| %s | %s | %s | %d of %d%s | %.2f → %.2f | %d → %d |\n", shape.name, optionsLine(after), r.name,
				kept, resolvable, lostText, float64(qBefore)/float64(lookups), float64(qAfter)/float64(lookups),
				was.queries["api.example.net"], now.queries["api.example.net"])
		}
	}
	t.Logf("names kept and questions per lookup, per pod shape and resolver:\n%s", report.String())
}

// TestGlibcQueriesForExternalName is the figure the README gives: with the
// kubelet's resolv.conf glibc asks 10 questions for an external name (5
// names × A and AAAA, 8 of them NXDOMAIN), with netguard's 2, for a pod
// netguard knows to use glibc; a pod whose resolver it cannot tell keeps
// ndots:5 and loses only the node's search domain.
func TestGlibcQueriesForExternalName(t *testing.T) {
	requireRoot(t)
	bin := buildNetguard(t)
	server := newClusterDNS()
	ns := newNetns(t, server)
	glibc := resolvers(t)[0]
	const external = "api.example.net"

	count := func(resolvConf string) []string {
		ns.setResolvConf(resolvConf)
		found, queries := ns.lookup(glibc, server, external, dns.TypeA)
		if !found {
			t.Fatalf("getent did not resolve %s with\n%s", external, resolvConf)
		}
		return queries
	}
	debian := shapes[1].yaml
	kubelet := count(render(t, bin, debian, true))
	hardened := count(render(t, bin, debian, false))
	unclassified := count(render(t, bin, shapes[2].yaml, false))
	t.Logf("glibc questions for %s: kubelet default %d %v; netguard, glibc pod %d %v; netguard, unclassified image %d %v",
		external, len(kubelet), kubelet, len(hardened), hardened, len(unclassified), unclassified)
	if len(kubelet) != 10 {
		t.Errorf("kubelet default: %d questions, want 10 (5 names × A and AAAA); the test no longer reproduces the search-list amplification", len(kubelet))
	}
	if len(hardened) != 2 || slices.ContainsFunc(hardened, func(q string) bool { return !strings.HasSuffix(q, " "+external+".") }) {
		t.Errorf("netguard, glibc pod: %v, want A and AAAA of %s only", hardened, external)
	}
	if len(unclassified) != 8 || slices.ContainsFunc(unclassified, func(q string) bool { return strings.Contains(q, "example.org") }) {
		t.Errorf("netguard, unclassified image: %v, want 8 questions (4 names × A and AAAA), none for the node's example.org", unclassified)
	}
}

func lookUpAll(ns *netns, r resolver, server *clusterDNS) outcome {
	o := outcome{found: map[string]bool{}, queries: map[string]int{}}
	for _, n := range names {
		if r.command(n.text, n.qtype) == nil {
			continue
		}
		found, queries := ns.lookup(r, server, n.text, n.qtype)
		o.found[n.String()] = found
		o.queries[n.String()] = len(queries)
	}
	return o
}

// render returns the resolv.conf `netguard resolv` prints for the pod, in
// namespace team, with the kubelet's default when unmutated.
func render(t *testing.T, bin, podYAML string, unmutated bool) string {
	t.Helper()
	dir := t.TempDir()
	pod, node := filepath.Join(dir, "pod.yaml"), filepath.Join(dir, "node-resolv.conf")
	for path, text := range map[string]string{pod: podYAML, node: nodeResolvConf} {
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"resolv", "-f", pod, "--namespace", podNamespace, "--node-resolv", node, "--cluster-dns", dnsIP, "--cluster-domain", "cluster.local"}
	if unmutated {
		args = append(args, "--unmutated")
	}
	return run(t, bin, args...)
}

// optionsLine is the options line of a resolv.conf, for the report.
func optionsLine(resolvConf string) string {
	for line := range strings.Lines(resolvConf) {
		if strings.HasPrefix(line, "options ") {
			return strings.TrimSpace(line)
		}
	}
	return "-"
}

func buildNetguard(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "netguard")
	run(t, "go", "build", "-o", bin, "github.com/netguard-io/netguard/cmd/netguard")
	return bin
}
