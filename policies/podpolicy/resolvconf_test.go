package podpolicy

import (
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

const nodeResolvConf = `# written by systemd-resolved... not really
nameserver 192.0.2.53
nameserver 192.0.2.54
search first.example
search example.org. corp.example.com .
options timeout:2
options edns0 timeout:3
`

func TestRenderResolvConf(t *testing.T) {
	long254 := strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 61) + ".x"
	many := func(n int) []string {
		var s []string
		for i := range n {
			s = append(s, "s"+strings.Repeat("x", i%20)+string(rune('a'+i%26))+".example")
		}
		return s
	}
	long := func(n int) []string { // n distinct domains of 208 characters
		var s []string
		for i := range n {
			s = append(s, strings.Repeat(string(rune('a'+i)), 200)+".example")
		}
		return s
	}
	cases := map[string]struct {
		policy      corev1.DNSPolicy
		hostNetwork bool
		dnsConfig   *corev1.PodDNSConfig
		node        *string // nil: nodeResolvConf
		noNodeFile  bool    // the kubelet runs with --resolv-conf=""
		clusterDNS  string  // "-" for none
		domain      string  // "-" for none
		want        string
		wantErr     error  // errors.Is
		errText     string // substring, for other errors
	}{
		"ClusterFirst": {
			policy: corev1.DNSClusterFirst,
			want:   "search shop.svc.cluster.local svc.cluster.local cluster.local example.org corp.example.com\nnameserver 10.96.0.10\noptions ndots:5\n",
		},
		"empty dnsPolicy is ClusterFirst": {
			want: "search shop.svc.cluster.local svc.cluster.local cluster.local example.org corp.example.com\nnameserver 10.96.0.10\noptions ndots:5\n",
		},
		"ClusterFirst drops a node search equal to the cluster's": {
			policy: corev1.DNSClusterFirst, node: ptr("nameserver 192.0.2.53\nsearch cluster.local example.org\n"),
			want: "search shop.svc.cluster.local svc.cluster.local cluster.local example.org\nnameserver 10.96.0.10\noptions ndots:5\n",
		},
		"ClusterFirst with dnsConfig": {
			policy: corev1.DNSClusterFirst,
			dnsConfig: &corev1.PodDNSConfig{
				Nameservers: []string{"192.0.2.10", "10.96.0.10"},
				Searches:    []string{"example.org", "extra.example"},
				Options:     []corev1.PodDNSConfigOption{opt("edns0"), opt("ndots", "2"), opt("attempts", "")},
			},
			want: "search shop.svc.cluster.local svc.cluster.local cluster.local example.org corp.example.com extra.example\n" +
				"nameserver 10.96.0.10\nnameserver 192.0.2.10\noptions ndots:2 edns0 attempts\n",
		},
		"ClusterFirst without a cluster domain": {
			policy: corev1.DNSClusterFirst, domain: "-",
			want: "search example.org corp.example.com\nnameserver 10.96.0.10\noptions ndots:5\n",
		},
		"ClusterFirst, dual-stack cluster DNS": {
			policy: corev1.DNSClusterFirst, clusterDNS: "10.96.0.10, fd00::10", node: ptr(""),
			want: "search shop.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\nnameserver fd00::10\noptions ndots:5\n",
		},
		"ClusterFirst without cluster DNS falls back to Default": {
			policy: corev1.DNSClusterFirst, clusterDNS: "-",
			want: "search example.org corp.example.com\nnameserver 192.0.2.53\nnameserver 192.0.2.54\noptions timeout:3 edns0\n",
		},
		"ClusterFirstWithHostNet on hostNetwork": {
			policy: corev1.DNSClusterFirstWithHostNet, hostNetwork: true,
			want: "search shop.svc.cluster.local svc.cluster.local cluster.local example.org corp.example.com\nnameserver 10.96.0.10\noptions ndots:5\n",
		},
		"hostNetwork with ClusterFirst falls back to Default": {
			policy: corev1.DNSClusterFirst, hostNetwork: true,
			want: "search example.org corp.example.com\nnameserver 192.0.2.53\nnameserver 192.0.2.54\noptions timeout:3 edns0\n",
		},
		"Default": {
			policy: corev1.DNSDefault,
			want:   "search example.org corp.example.com\nnameserver 192.0.2.53\nnameserver 192.0.2.54\noptions timeout:3 edns0\n",
		},
		"Default with dnsConfig": {
			policy:    corev1.DNSDefault,
			dnsConfig: &corev1.PodDNSConfig{Options: []corev1.PodDNSConfigOption{opt("timeout", "1"), opt("single-request-reopen")}},
			want:      "search example.org corp.example.com\nnameserver 192.0.2.53\nnameserver 192.0.2.54\noptions timeout:1 edns0 single-request-reopen\n",
		},
		"Default on a kubelet without a resolv.conf": {
			policy: corev1.DNSDefault, noNodeFile: true, want: "search .\nnameserver 127.0.0.1\n",
		},
		"None": {
			policy: corev1.DNSNone,
			dnsConfig: &corev1.PodDNSConfig{
				Nameservers: []string{"10.96.0.10"},
				Searches:    []string{"shop.svc.cluster.local", "svc.cluster.local", "cluster.local"},
				Options:     []corev1.PodDNSConfigOption{opt("ndots", "2"), opt("single-request-reopen")},
			},
			want: "search shop.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:2 single-request-reopen\n",
		},
		"four nameservers are cut to three": {
			policy:    corev1.DNSDefault,
			dnsConfig: &corev1.PodDNSConfig{Nameservers: []string{"192.0.2.1", "192.0.2.2"}},
			want:      "search example.org corp.example.com\nnameserver 192.0.2.53\nnameserver 192.0.2.54\nnameserver 192.0.2.1\noptions timeout:3 edns0\n",
			wantErr:   ErrLimitsExceeded,
		},
		"33 searches are cut to 32": {
			policy:    corev1.DNSNone,
			dnsConfig: &corev1.PodDNSConfig{Nameservers: []string{"192.0.2.1"}, Searches: many(33)},
			want:      "search " + strings.Join(many(32), " ") + "\nnameserver 192.0.2.1\n",
			wantErr:   ErrLimitsExceeded,
		},
		"a search domain over 253 characters is dropped": {
			policy:    corev1.DNSNone,
			dnsConfig: &corev1.PodDNSConfig{Nameservers: []string{"192.0.2.1"}, Searches: []string{"a.example", long254, "b.example"}},
			want:      "search a.example b.example\nnameserver 192.0.2.1\n",
			wantErr:   ErrLimitsExceeded,
		},
		"a search line over 2048 characters loses domains from the end": {
			// 55 + 10*209 characters: the last domain goes.
			policy:  corev1.DNSClusterFirst,
			node:    ptr("nameserver 192.0.2.53\nsearch " + strings.Join(long(10), " ") + "\n"),
			want:    "search shop.svc.cluster.local svc.cluster.local cluster.local " + strings.Join(long(9), " ") + "\nnameserver 10.96.0.10\noptions ndots:5\n",
			wantErr: ErrLimitsExceeded,
		},
		"a search line of exactly 2048 characters is kept": {
			// 9*208 + 9 spaces + 167.
			policy:    corev1.DNSNone,
			dnsConfig: &corev1.PodDNSConfig{Nameservers: []string{"192.0.2.1"}, Searches: append(long(9), strings.Repeat("z", 165)+".x")},
			want:      "search " + strings.Join(long(9), " ") + " " + strings.Repeat("z", 165) + ".x\nnameserver 192.0.2.1\n",
		},
		"a search line of 2049 characters loses its last domain": {
			policy:    corev1.DNSNone,
			dnsConfig: &corev1.PodDNSConfig{Nameservers: []string{"192.0.2.1"}, Searches: append(long(9), strings.Repeat("z", 166)+".x")},
			want:      "search " + strings.Join(long(9), " ") + "\nnameserver 192.0.2.1\n",
			wantErr:   ErrLimitsExceeded,
		},
		"a bad node resolv.conf is an error": {
			policy: corev1.DNSNone, node: ptr("nameserver\n"), errText: "nameserver line without an address",
			dnsConfig: &corev1.PodDNSConfig{Nameservers: []string{"192.0.2.1"}},
		},
		"a bad cluster DNS IP is an error": {policy: corev1.DNSClusterFirst, clusterDNS: "kube-dns", errText: `cluster DNS "kube-dns"`},
		"an unknown dnsPolicy is an error": {policy: "Cluster", errText: `spec.dnsPolicy "Cluster"`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			pod := testPod("shop")
			pod.Spec.DNSPolicy = tc.policy
			pod.Spec.HostNetwork = tc.hostNetwork
			pod.Spec.DNSConfig = tc.dnsConfig
			node := []byte(nodeResolvConf)
			if tc.noNodeFile {
				node = nil
			} else if tc.node != nil {
				node = []byte(*tc.node)
			}
			clusterDNS, domain := "10.96.0.10", "cluster.local"
			if tc.clusterDNS == "-" {
				clusterDNS = ""
			} else if tc.clusterDNS != "" {
				clusterDNS = tc.clusterDNS
			}
			if tc.domain == "-" {
				domain = ""
			}
			got, err := RenderResolvConf(pod, node, clusterDNS, domain)
			switch {
			case tc.errText != "":
				if err == nil || !strings.Contains(err.Error(), tc.errText) {
					t.Fatalf("error = %v, want one with %q", err, tc.errText)
				}
				return
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Errorf("error = %v, want %v", err, tc.wantErr)
				}
			case err != nil:
				t.Fatalf("error = %v", err)
			}
			if got != tc.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}
