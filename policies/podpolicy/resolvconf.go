package podpolicy

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/netguard-io/netguard/config"
)

// ErrLimitsExceeded marks a resolv.conf the kubelet had to cut to its
// limits; RenderResolvConf still returns the cut file, as the kubelet still
// writes it (and records a DNSConfigForming event).
var ErrLimitsExceeded = errors.New("DNS limits exceeded")

// maxSearchDomainLength is the longest search domain the kubelet keeps:
// longer ones make some glibc versions abort().
const maxSearchDomainLength = 253

// RenderResolvConf returns the /etc/resolv.conf the kubelet (through a CRI
// runtime such as containerd) writes for pod, given the node's resolv.conf
// contents, the cluster DNS IP(s, comma-separated) and the cluster domain.
// It follows the kubelet's pkg/kubelet/network/dns GetPodDNS:
//
//   - ClusterFirst, and ClusterFirstWithHostNet: nameservers are the cluster
//     DNS IPs, searches are <ns>.svc.<domain> svc.<domain> <domain> followed
//     by the node's, options are ndots:5. With no cluster DNS IP the kubelet
//     falls back to Default.
//   - ClusterFirst with hostNetwork, and Default: the node's nameservers,
//     searches and options. A nil nodeResolvConf stands for a kubelet run
//     with --resolv-conf="": nameserver 127.0.0.1 and search ".".
//   - None: nothing but spec.dnsConfig.
//
// Then spec.dnsConfig's nameservers and searches are appended without
// duplicates and its options merged (the pod's value wins). Last, the lists
// are cut to the kubelet's limits: 3 nameservers, 32 search domains of at
// most 253 characters, 2048 characters of search line; the cut file is
// returned with an error that wraps ErrLimitsExceeded. The pod's namespace
// is pod.Namespace. Options keep their first position (the kubelet's order
// is random; the resolver does not care). Unlike the kubelet, which falls
// back to ClusterFirst, an unknown dnsPolicy is an error: the API server
// never admits one.
func RenderResolvConf(pod *corev1.Pod, nodeResolvConf []byte, clusterDNS, clusterDomain string) (string, error) {
	servers, searches, options, err := parseResolvConf(nodeResolvConf)
	if err != nil {
		return "", fmt.Errorf("parsing the node's resolv.conf: %w", err)
	}
	clusterIPs, err := parseClusterDNS(clusterDNS)
	if err != nil {
		return "", err
	}
	if problem := dnsConfigProblem(&pod.Spec); strings.HasPrefix(problem, "spec.dnsPolicy") {
		return "", errors.New(problem)
	}

	switch kind := podDNSKind(&pod.Spec); {
	case kind == kindNone:
		servers, searches, options = nil, nil, nil
	case kind == kindCluster && len(clusterIPs) > 0:
		servers = clusterIPs
		if clusterDomain != "" {
			clusterSearch := []string{pod.Namespace + ".svc." + clusterDomain, "svc." + clusterDomain, clusterDomain}
			searches = omitDuplicates(append(clusterSearch, searches...))
		}
		options = []string{"ndots:" + kubeletNdots}
	default: // host, or cluster without a cluster DNS IP
		if nodeResolvConf == nil {
			servers, searches = []string{"127.0.0.1"}, []string{"."}
		}
	}

	if dc := pod.Spec.DNSConfig; dc != nil {
		servers = omitDuplicates(append(servers, dc.Nameservers...))
		searches = omitDuplicates(append(searches, dc.Searches...))
		for _, o := range dc.Options {
			opt := o.Name
			if o.Value != nil && *o.Value != "" {
				opt += ":" + *o.Value
			}
			options = setOption(options, opt)
		}
	}

	servers, searches, cut := fitLimits(servers, searches)
	var b strings.Builder
	if len(searches) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(searches, " "))
	}
	for _, s := range servers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if len(options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(options, " "))
	}
	if cut != "" {
		return b.String(), fmt.Errorf("%w: %s", ErrLimitsExceeded, cut)
	}
	return b.String(), nil
}

// parseResolvConf reads nameservers (they accumulate), the last search line,
// and options (a later one of the same name wins), as the kubelet does.
func parseResolvConf(data []byte) (servers, searches, options []string, err error) {
	var errs []error
	for line := range strings.SplitSeq(string(data), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		switch fields[0] {
		case "nameserver":
			if len(fields) < 2 {
				errs = append(errs, errors.New("nameserver line without an address"))
				continue
			}
			servers = append(servers, fields[1])
		case "search":
			searches = nil
			for _, s := range fields[1:] {
				if s != "." {
					searches = append(searches, strings.TrimSuffix(s, "."))
				}
			}
		case "options":
			for _, o := range fields[1:] {
				options = setOption(options, o)
			}
		}
	}
	return servers, searches, options, errors.Join(errs...)
}

// setOption sets option "name[:value]" in options, replacing one of the
// same name in place.
func setOption(options []string, opt string) []string {
	name, _, _ := strings.Cut(opt, ":")
	for i, o := range options {
		if n, _, _ := strings.Cut(o, ":"); n == name {
			options[i] = opt
			return options
		}
	}
	return append(options, opt)
}

func parseClusterDNS(s string) ([]string, error) {
	var ips []string
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		addr, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("cluster DNS %q: %w", f, err)
		}
		ips = append(ips, addr.String())
	}
	return ips, nil
}

// fitLimits cuts the lists as the kubelet's formDNSConfigFitsLimits does and
// says what it cut.
func fitLimits(servers, searches []string) ([]string, []string, string) {
	var cuts []string
	if len(servers) > config.MaxNameservers {
		servers = servers[:config.MaxNameservers]
		cuts = append(cuts, "nameservers cut to "+strings.Join(servers, " "))
	}
	cutSearch := false
	if len(searches) > config.MaxSearchDomains {
		searches = searches[:config.MaxSearchDomains]
		cutSearch = true
	}
	kept := searches[:0:0]
	for _, s := range searches {
		if len(s) > maxSearchDomainLength {
			cutSearch = true
			continue
		}
		kept = append(kept, s)
	}
	searches = kept
	if n := len(strings.Join(searches, " ")); n > config.MaxSearchListChars {
		cut := 0
		for i := len(searches) - 1; i >= 0 && n-cut > config.MaxSearchListChars; i-- {
			cut += len(searches[i]) + 1
			searches = searches[:i]
		}
		cutSearch = true
	}
	if cutSearch {
		cuts = append(cuts, "search line cut to "+strings.Join(searches, " "))
	}
	return servers, searches, strings.Join(cuts, "; ")
}
