package dnsproxy

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestParseUpstreams(t *testing.T) {
	dir := t.TempDir()
	resolvConf := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(resolvConf, []byte("# written by the kubelet\nsearch default.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\nnameserver fd00::a\noptions ndots:5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.conf")
	if err := os.WriteFile(empty, []byte("search example.org\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.conf")
	if err := os.WriteFile(bad, []byte("nameserver not-an-ip\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		spec, resolvConf string
		want             []string
		wantErr          error
	}{
		"bare IPv4 means port 53":   {spec: "10.96.0.10", want: []string{"10.96.0.10:53"}},
		"IPv4 with port":            {spec: "10.96.0.10:5353", want: []string{"10.96.0.10:5353"}},
		"list with spaces":          {spec: "192.0.2.1, 192.0.2.2:54", want: []string{"192.0.2.1:53", "192.0.2.2:54"}},
		"bare IPv6":                 {spec: "2001:db8::1", want: []string{"[2001:db8::1]:53"}},
		"bracketed IPv6":            {spec: "[2001:db8::1]", want: []string{"[2001:db8::1]:53"}},
		"bracketed IPv6 with port":  {spec: "[2001:db8::1]:5353", want: []string{"[2001:db8::1]:5353"}},
		"resolv.conf":               {spec: "resolv.conf", resolvConf: resolvConf, want: []string{"10.96.0.10:53", "[fd00::a]:53"}},
		"empty means resolv.conf":   {spec: "", resolvConf: resolvConf, want: []string{"10.96.0.10:53", "[fd00::a]:53"}},
		"hostname rejected":         {spec: "kube-dns.kube-system", wantErr: ErrInvalidUpstream},
		"port 0 rejected":           {spec: "192.0.2.1:0", wantErr: ErrInvalidUpstream},
		"only commas":               {spec: ",,", wantErr: ErrNoUpstreams},
		"resolv.conf without any":   {spec: "resolv.conf", resolvConf: empty, wantErr: ErrNoUpstreams},
		"resolv.conf with a bad IP": {spec: "resolv.conf", resolvConf: bad, wantErr: ErrInvalidUpstream},
		"missing resolv.conf":       {spec: "resolv.conf", resolvConf: filepath.Join(dir, "none"), wantErr: os.ErrNotExist},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := ParseUpstreams(tc.spec, tc.resolvConf)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("error %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var s []string
			for _, ap := range got {
				s = append(s, ap.String())
			}
			if !slices.Equal(s, tc.want) {
				t.Fatalf("got %v, want %v", s, tc.want)
			}
		})
	}
}

func TestNewValidatesConfig(t *testing.T) {
	up := []netip.AddrPort{netip.MustParseAddrPort("192.0.2.53:53")}
	tests := map[string]struct {
		cfg     Config
		wantErr error
	}{
		"defaults":                  {cfg: Config{Upstreams: up}},
		"no upstreams":              {cfg: Config{}, wantErr: ErrNoUpstreams},
		"upstream is the listener":  {cfg: Config{Listen: "127.0.0.1:53", Upstreams: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:53")}}, wantErr: ErrUpstreamLoop},
		"wildcard listener loops":   {cfg: Config{Listen: ":8053", Upstreams: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:8053")}}, wantErr: ErrUpstreamLoop},
		"hostname listener":         {cfg: Config{Listen: "localhost:8053", Upstreams: up}, wantErr: ErrInvalidConfig},
		"deadline below timeout":    {cfg: Config{Upstreams: up, Timeout: 3e9, Deadline: 1e9}, wantErr: ErrInvalidConfig},
		"negative cache size":       {cfg: Config{Upstreams: up, CacheSize: -1}, wantErr: ErrInvalidConfig},
		"negative in-flight":        {cfg: Config{Upstreams: up, MaxInFlight: -1}, wantErr: ErrInvalidConfig},
		"zero port upstream":        {cfg: Config{Upstreams: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.53:0")}}, wantErr: ErrInvalidUpstream},
		"metrics without gathering": {cfg: Config{Upstreams: up, MetricsAddr: "127.0.0.1:0"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := New(tc.cfg, testLogger(t), nil)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
		})
	}
}
